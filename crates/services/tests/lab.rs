//! The latency lab as a library: option checks, the probe's sample count, a short comparison of
//! every built model and peer (behaviour only, never timing thresholds).

use kernel::PreemptModel;
use services::lab::compare::{self, CompareConfig, Subject};
use services::lab::probe::{self, CpuPolicy, ProbeSet, Stop};
use services::lab::{Peer, Workload};

#[test]
fn bad_settings_name_the_option_and_the_valid_values() {
    let bad = |f: fn(&mut CompareConfig)| {
        let mut c = CompareConfig::default();
        f(&mut c);
        c.validate().unwrap_err()
    };
    assert!(bad(|c| c.probes.interval_us = 50).contains("--interval-us 50: below the timer resolution"));
    assert!(bad(|c| c.rounds = 0).contains("--rounds 0: use 1..=100"));
    assert!(bad(|c| c.seconds = 0.0).contains("--duration 0"));
    assert!(bad(|c| c.seconds = f64::NAN).contains("--duration NaN"));
    assert!(bad(|c| c.probes.prio = 99).contains("--prio 99"));
    assert!(bad(|c| c.probes.threads = 0).contains("--threads 0"));
    assert!(bad(|c| c.workloads.clear()).contains("--workload"));
    assert!(bad(|c| {
        c.models.clear();
        c.peers.clear()
    })
    .contains("at least one model or peer"));
    CompareConfig::default().validate().unwrap();
    let e = compare::run(&CompareConfig { rounds: 0, ..CompareConfig::default() }, &mut |_| {}).unwrap_err();
    assert!(e.contains("--rounds 0"), "the error comes before any kernel boots: {e}");
}

#[test]
fn bh_options_are_subjects_and_the_peers_skip_the_packet_workload() {
    use kernel::BhMode;
    use services::lab::workloads;
    assert_eq!(compare::parse_bh("all").unwrap(), BhMode::ALL.to_vec());
    assert_eq!(compare::parse_bh("threaded, threaded").unwrap(), vec![BhMode::Threaded]);
    assert!(compare::parse_bh("hard")
        .unwrap_err()
        .contains("--bh=hard: unknown bottom-half mode; choose one of classic, threaded, or all"));
    let cfg = CompareConfig {
        models: vec![PreemptModel::Full],
        workloads: workloads::parse("packet,copy", "").unwrap(),
        ..CompareConfig::default()
    };
    let (packet, copy) = (cfg.workloads[0], cfg.workloads[1]);
    assert!(packet.info().bottom_half && !copy.info().bottom_half);
    let full = |bh| Subject::Model(PreemptModel::Full, bh);
    assert_eq!(cfg.subjects_for(packet), vec![full(BhMode::Classic), full(BhMode::Threaded)]);
    assert_eq!(
        cfg.subjects_for(copy),
        vec![full(BhMode::Classic), Subject::Peer(Peer::HostFifo), Subject::Peer(Peer::Tokio)],
        "without --bh only packet runs under every option"
    );
    assert_eq!(cfg.steps(), (2 + 3) * 5 * 2);
    assert_eq!(full(BhMode::Threaded).label(true), "full/threaded");
    assert_eq!(full(BhMode::Threaded).name(), "full");
    let skipped = cfg.skipped();
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].starts_with("packet: peer:host-fifo, peer:tokio skipped"), "{skipped:?}");
    let threaded = CompareConfig { bh: Some(vec![BhMode::Threaded]), ..cfg.clone() };
    assert_eq!(threaded.subjects_for(copy)[0], full(BhMode::Threaded), "--bh applies to every workload");
    let e = CompareConfig { bh_prio: 0, ..cfg.clone() }.validate().unwrap_err();
    assert!(e.contains("--bh-prio 0"), "{e}");
    let e = CompareConfig { models: vec![], workloads: vec![packet], ..cfg }.validate().unwrap_err();
    assert!(e.contains("--workload packet: only atomkernel's models run it"), "{e}");
}

#[test]
fn model_and_peer_lists_parse() {
    assert_eq!(compare::parse_models("all").unwrap(), PreemptModel::BUILT.to_vec());
    assert_eq!(compare::parse_models("none, none").unwrap(), vec![PreemptModel::None]);
    assert!(compare::parse_models("none,fastest").unwrap_err().contains("unknown preemption model 'fastest'"));
    if let Some(m) = PreemptModel::ALL.iter().find(|m| !m.is_built()) {
        assert!(compare::parse_models(m.name()).unwrap_err().contains("not built yet"));
    }
    assert_eq!(Peer::parse_list("all").unwrap(), Peer::ALL.to_vec());
    assert_eq!(Peer::parse_list("none").unwrap(), vec![]);
    assert!(Peer::parse_list("go").unwrap_err().contains("unknown peer 'go'"));
}

#[test]
fn a_probe_takes_exactly_its_count_and_the_histogram_holds_every_sample() {
    let specs = ProbeSet { threads: 2, ..ProbeSet::default() }.specs();
    assert_eq!((specs[0].prio, specs[1].prio), (80, 79));
    let w = Workload::all()[0];
    let out = probe::run_kernel(PreemptModel::Voluntary, Some(w), &specs, Stop::Loops(200), CpuPolicy::Shared).unwrap();
    assert_eq!(out.policy.as_deref(), Some("CPU thread: host default"));
    assert_eq!(out.hists.len(), 2);
    for h in &out.hists {
        assert_eq!(h.count(), 200);
        assert_eq!(h.bins().iter().map(|b| b.count).sum::<u64>(), 200);
        let l = h.summary();
        assert!(l.min <= l.p50 && l.p50 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max, "{l:?}");
    }
    assert!(out.units > 0, "the loader ran beside the probes");
}

#[test]
fn the_packet_workload_receives_packets_under_threaded_bottom_halves() {
    let w = services::lab::workloads::parse("packet", "packet=16").unwrap()[0];
    let boot = kernel::Config {
        preempt: PreemptModel::Full,
        bh: kernel::BhMode::Threaded,
        bh_prio: 40,
        ..kernel::Config::default()
    };
    let specs = ProbeSet::default().specs();
    let out = probe::run_instance(boot, Some(w), &specs, Stop::Loops(50), CpuPolicy::Shared).unwrap();
    assert!(out.units > 0, "the worker received packets in its system calls");
    assert_eq!(out.hists[0].count(), 50);
}

#[test]
fn a_short_comparison_has_a_row_for_every_model_and_peer() {
    let cfg = CompareConfig {
        workloads: services::lab::workloads::parse("checksum", "checksum=8").unwrap(),
        seconds: 0.05,
        rounds: 1,
        ..CompareConfig::default()
    };
    let mut heard = 0;
    let rows = compare::run(&cfg, &mut |_| heard += 1).unwrap();
    assert_eq!(heard, cfg.steps());
    let names: Vec<&str> = rows.iter().map(|r| r.model.as_str()).collect();
    let expected: Vec<String> = cfg.subjects().iter().map(|s| s.name()).collect();
    assert_eq!(names, expected);
    assert!(expected.contains(&"peer:host-fifo".to_string()) && expected.contains(&"peer:tokio".to_string()));
    for r in &rows {
        assert_eq!(r.workload, "checksum");
        assert!(r.samples > 0 && r.samples == r.latency_ns.count, "{r:?}");
        assert_eq!(r.histogram.iter().map(|b| b.count).sum::<u64>(), r.samples, "{r:?}");
        assert!(r.throughput_ops_s > 0.0 && r.overhead_pct.is_some_and(f64::is_finite), "{r:?}");
        assert!(!r.policy.is_empty(), "{r:?}");
        if !r.model.starts_with("peer:") {
            assert!(r.policy.starts_with("CPU thread: SCHED_OTHER nice"), "the lab's default: {r:?}");
        }
    }
    assert_eq!(rows[0].overhead_pct, Some(0.0));
    assert_eq!(Subject::Peer(Peer::Tokio).name(), "peer:tokio");
}
