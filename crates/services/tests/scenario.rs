//! The seed scenario under preempt=none: the RT task runs at ret_from_syscall, after the
//! last atom, whichever atom the interrupt hit.

use kernel::PreemptModel;
use services::scenario::{self, run, ScenarioConfig};

#[test]
fn none_runs_rt_after_the_last_atom() {
    let r = run(PreemptModel::None, &ScenarioConfig::default()).unwrap();
    assert_eq!(r.irq_during_atom, 1, "{r:?}");
    assert_eq!(r.rt_ran_after_atom, 5, "{r:?}");
    assert!(r.pages > 0);
    // Order of the timeline: the interrupt comes inside atom 1, the RT task after
    // ret_from_syscall.
    let pos = |what: &str| r.timeline.iter().position(|e| e.what.starts_with(what)).unwrap();
    assert!(pos("atom 1 begins") < pos("device interrupt") && pos("device interrupt") < pos("atom 1 ends"));
    assert!(pos("ret_from_syscall") < pos("runs after the system call"));
}

#[test]
fn none_with_three_atoms() {
    let sc = ScenarioConfig { atoms: 3, atom_us: 500, irq_at_us: 100, ..ScenarioConfig::default() };
    let r = run(PreemptModel::None, &sc).unwrap();
    assert_eq!((r.irq_during_atom, r.rt_ran_after_atom), (1, 3), "{r:?}");
}

/// The detectors a scenario boots with sit above the work it asks for: the longest system call
/// the shape allows (64 atoms of 1 s) under `none` is neither a soft lockup nor a hung RT task.
#[test]
fn the_detectors_sit_above_the_longest_system_call_asked_for() {
    let d = kernel::config::WatchdogConfig::DEFAULTS;
    let longest = ScenarioConfig { atoms: 64, atom_us: 1_000_000, ..ScenarioConfig::default() };
    longest.validate().unwrap();
    let sc = [ScenarioConfig::default(), ScenarioConfig { atoms: 11, ..longest.clone() }, longest];
    for sc in &sc {
        let (w, ms) = (sc.watchdog(), sc.syscall_ns().div_ceil(1_000_000));
        assert!(ms >= sc.atoms as u64 * sc.atom_us / 1000, "{sc:?}: the whole system call");
        assert!(w.softlockup_thresh_ms >= d.softlockup_thresh_ms + ms, "{sc:?}: {w:?}");
        assert!(w.hung_task_timeout_ms >= d.hung_task_timeout_ms + ms, "{sc:?}: {w:?}");
        assert!(w.softlockup_panic && w.hung_task_panic, "a real hang still ends the run: {w:?}");
    }
}

#[test]
fn impossible_shapes_are_refused() {
    let bad = ScenarioConfig { atoms: 5, atom_us: 100, irq_at_us: 100, ..ScenarioConfig::default() };
    let e = run(PreemptModel::None, &bad).unwrap_err().to_string();
    assert!(e.contains("must fall inside atom 1"), "{e}");
    let e = services::scenario::AtomKind::parse("fast").unwrap_err();
    assert!(e.contains("unknown atom kind 'fast'") && e.contains("two-points"), "{e}");
}

#[test]
fn voluntary_runs_rt_after_atom_1() {
    let r = run(PreemptModel::Voluntary, &ScenarioConfig::default()).unwrap();
    assert_eq!((r.irq_during_atom, r.rt_ran_after_atom), (1, 1), "{r:?}");
    let pos = |what: &str| r.timeline.iter().position(|e| e.what.starts_with(what)).unwrap();
    assert!(pos("atom 1 ends") < pos("runs after atom") && pos("runs after atom") < pos("atom 2 begins"));
    // Serving the point is the time from the end of atom 1 to the RT task: between the two.
    let (end1, rt) = (r.timeline[pos("atom 1 ends")].t_ns, r.timeline[pos("runs after atom")].t_ns);
    assert_eq!(r.point_to_rt_ns, Some(rt - end1), "{r:?}");
}

#[test]
fn full_runs_rt_before_atom_1_ends() {
    let r = run(PreemptModel::Full, &ScenarioConfig::default()).unwrap();
    assert_eq!((r.irq_during_atom, r.rt_ran_after_atom), (1, 0), "{r:?}");
    let pos = |what: &str| r.timeline.iter().position(|e| e.what.starts_with(what)).unwrap();
    assert!(pos("device interrupt") < pos("runs inside atom 1") && pos("runs inside atom 1") < pos("atom 1 ends"));
    assert_eq!(r.point_to_rt_ns, None, "it ran inside atom 1, not at a point: {r:?}");
}

#[test]
fn lazy_runs_an_rt_wakeup_like_full() {
    let r = run(PreemptModel::Lazy, &ScenarioConfig::default()).unwrap();
    assert_eq!((r.irq_during_atom, r.rt_ran_after_atom), (1, 0), "{r:?}");
}

#[test]
fn cpulock_runs_rt_after_atom_1() {
    let r = run(PreemptModel::Cpulock, &ScenarioConfig::default()).unwrap();
    assert_eq!((r.irq_during_atom, r.rt_ran_after_atom), (1, 1), "{r:?}");
}

#[test]
fn switching_none_to_voluntary_mid_syscall_moves_the_rt_task_to_atom_1() {
    let sc = ScenarioConfig { switch_to: Some(PreemptModel::Voluntary), ..ScenarioConfig::default() };
    let r = run(PreemptModel::None, &sc).unwrap();
    assert_eq!(r.model, "none->voluntary");
    assert_eq!((r.irq_during_atom, r.rt_ran_after_atom), (1, 1), "{r:?}");
    let pos = |what: &str| r.timeline.iter().position(|e| e.what.starts_with(what)).unwrap();
    assert!(pos("preemption model switched to voluntary") < pos("device interrupt"));
}

#[test]
fn switching_voluntary_to_none_mid_syscall_keeps_the_rt_task_waiting() {
    let sc = ScenarioConfig { switch_to: Some(PreemptModel::None), ..ScenarioConfig::default() };
    let r = run(PreemptModel::Voluntary, &sc).unwrap();
    assert_eq!((r.irq_during_atom, r.rt_ran_after_atom), (1, 5), "{r:?}");
}

/// The seed's scenario across CPUs: the interrupt arrives on CPU 0 and wakes the RT task bound
/// to CPU 1, where the worker is in its system call; CPU 1's model places the RT task exactly
/// as on one CPU (the patch models too), and every event names its CPU.
#[test]
fn the_scenario_across_two_cpus_places_the_rt_task_as_on_one() {
    let expect = [
        (PreemptModel::None, 5),
        (PreemptModel::Voluntary, 1),
        (PreemptModel::Full, 0),
        (PreemptModel::Lazy, 0),
        (PreemptModel::Cpulock, 1),
        (PreemptModel::PatchInt3, 1),
        (PreemptModel::PatchCall, 1),
    ];
    for (model, after) in expect {
        let config = kernel::Config { preempt: model, cpus: 2, ..kernel::Config::default() };
        let r = scenario::run_with(config, &ScenarioConfig::default()).unwrap();
        assert_eq!((r.irq_during_atom, r.rt_ran_after_atom), (1, after), "{model}: {r:?}");
        assert_eq!((r.cpus, r.irq_cpu, r.rt_cpu, r.worker_cpu), (2, 0, 1, 1), "{model}: {r:?}");
        let irq = r.timeline.iter().find(|e| e.who == "irq").unwrap();
        assert_eq!(irq.cpu, 0, "{model}");
        assert!(r.timeline.iter().filter(|e| e.who != "irq").all(|e| e.cpu == 1), "{model}: {:?}", r.timeline);
    }
}
