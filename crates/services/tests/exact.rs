//! `ptable=exact` against the machine-code analysis: an RT event arms only sites that some
//! path from the interrupted instruction reaches first; placements stay right under both patch
//! models and both tables; every site is idle after every event.
//!
//! Only patch models run in this test binary, one test at a time (they read every site's code
//! bytes), and nothing here asserts a time.

#![cfg(feature = "trace")]

use kernel::trace::{Event, TraceOptions};
use kernel::{Config, PreemptModel, PtableMode};
use services::scenario::{run_report, AtomKind, ScenarioConfig};
use std::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
const PATCH: [PreemptModel; 2] = [PreemptModel::PatchInt3, PreemptModel::PatchCall];

/// The interrupted IP of the RT wakeup's interrupt and the sites it patched (in order).
fn armed_by_the_interrupt(ev: &[kernel::trace::Record]) -> Option<(usize, Vec<usize>)> {
    let first = ev.iter().position(|e| matches!(e.event, Event::SitePatched { .. }))?;
    let entry = ev[..first].iter().rposition(|e| matches!(e.event, Event::IrqHandlerEntry { .. }))?;
    let Event::IrqHandlerEntry { ip, .. } = ev[entry].event else { return None };
    let sites = ev[first..]
        .iter()
        .map_while(|e| if let Event::SitePatched { site } = e.event { Some(site) } else { None })
        .collect();
    Some((ip, sites))
}

#[test]
fn under_exact_an_event_arms_only_sites_first_reached_from_the_interrupted_ip() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let analysis = kernel::model::patch::exact::analyze().unwrap();
    let mut checked = 0;
    for model in PATCH {
        for kind in [AtomKind::Checksum, AtomKind::TwoPoints, AtomKind::PreemptOff] {
            let trace = TraceOptions::parse("events", 1 << 14).unwrap();
            let config = Config { preempt: model, trace, ptable: PtableMode::Exact, ..Config::default() };
            let sc = ScenarioConfig { kind, ..ScenarioConfig::default() };
            let (r, report) = run_report(config, &sc).unwrap();
            assert_eq!(r.rt_points, r.irq_points + 1, "{model} {kind:?}: {r:?}");
            assert_eq!(kernel::model::patch::sites_not_idle(), 0, "{model} {kind:?}");
            let Some((_, armed)) = armed_by_the_interrupt(&report.trace.expect("traced").events) else { continue };
            // The interrupt lands in the checksum leaf: the event armed the next points of the
            // first frame that reaches some (the look-up's IP, a return address), exactly.
            let ip = r.patch.armed_at_ip;
            if r.patch.chases == 0 {
                let next = analysis.next_points(ip).unwrap_or_else(|| panic!("{model} {kind:?}: {ip:#x} analysed"));
                let want: Vec<usize> = next.sites.iter().map(|&i| analysis.sites()[i as usize] as usize).collect();
                assert_eq!(armed, want, "{model} {kind:?}: armed at ip {ip:#x}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 1, "no interrupt landed in an analysed function");
}

#[test]
fn placements_are_right_under_both_tables_and_sites_are_idle_after_every_event() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for ptable in PtableMode::ALL {
        for model in PATCH {
            for kind in AtomKind::ALL {
                let config = Config { preempt: model, ptable, ..Config::default() };
                let sc = ScenarioConfig { kind, ..ScenarioConfig::default() };
                let (r, _) = run_report(config, &sc).unwrap();
                let what = format!("ptable={ptable} {model} {kind:?}");
                assert_eq!(r.irq_during_atom, 1, "{what}: {r:?}");
                assert_eq!(r.rt_points, r.irq_points + 1, "{what}: the first point after the interrupt: {r:?}");
                assert_eq!(r.sites_armed_at_rt, 0, "{what}: {r:?}");
                assert_eq!(kernel::model::patch::sites_not_idle(), 0, "{what}");
                assert!(r.patch.events >= 1, "{what}: {r:?}");
            }
        }
    }
}

#[test]
fn the_exact_table_arms_no_more_sites_than_the_function_table() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let sc = ScenarioConfig { kind: AtomKind::TwoPoints, atom_us: 4000, irq_at_us: 200, ..ScenarioConfig::default() };
    for model in PATCH {
        let per_event = |ptable| {
            let (r, _) = run_report(Config { preempt: model, ptable, ..Config::default() }, &sc).unwrap();
            (r.patch.sites_armed, r.patch.events)
        };
        let (exact, function) = (per_event(PtableMode::Exact), per_event(PtableMode::Function));
        assert!(exact.0 * function.1 <= function.0 * exact.1, "{model}: exact {exact:?}, function {function:?}");
    }
}
