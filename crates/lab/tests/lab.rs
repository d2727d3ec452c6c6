//! The latency lab as a library: option checks, the probe's sample count, a short comparison of
//! every model and peer (behaviour only, never timing thresholds).

use kernel::PreemptModel;
use lab::compare::{self, CompareConfig, Subject};
use lab::go_peer;
use lab::measure::{CpuPolicy, ProbeSet, Stop};
use lab::peers::{self, Peer};
use lab::probe;
use lab::row::PlaceRow;
use services::workloads::Workload;

/// The registered workloads `names` at their sizes.
fn sized(names: &[(&str, usize)]) -> Vec<Workload> {
    names.iter().map(|&(n, size)| Workload::named(n).unwrap().with_size(size).unwrap()).collect()
}

#[test]
fn bad_settings_name_the_option_and_the_valid_values() {
    let bad = |f: fn(&mut CompareConfig)| {
        let mut c = CompareConfig::default();
        f(&mut c);
        c.validate().unwrap_err()
    };
    assert!(bad(|c| c.probes.interval_us = 50).contains("interval_us=50: below the timer resolution"));
    assert!(bad(|c| c.rounds = 0).contains("rounds=0: use 1..=100"));
    assert!(bad(|c| c.seconds = 0.0).contains("seconds=0: use a duration above 0"));
    assert!(bad(|c| c.seconds = f64::NAN).contains("seconds=NaN"));
    assert!(bad(|c| c.probes.prio = 99).contains("prio=99: use SCHED_FIFO priority 1..=98"));
    assert!(bad(|c| c.probes.threads = 0).contains("threads=0: use 1..=16 probes"));
    assert!(bad(|c| c.workloads.clear()).contains("workloads= is empty"));
    assert!(bad(|c| {
        c.models.clear();
        c.peers.clear()
    })
    .contains("at least one model or peer"));
    CompareConfig::default().validate().unwrap();
    let e = compare::run(&CompareConfig { rounds: 0, ..CompareConfig::default() }, &mut |_| {}).unwrap_err();
    assert!(e.contains("rounds=0"), "the error comes before any kernel boots: {e}");
}

#[test]
fn bh_options_are_subjects_and_the_peers_skip_the_packet_workload() {
    use kernel::BhMode;
    let cfg = CompareConfig {
        models: vec![PreemptModel::Full],
        workloads: sized(&[("packet", 64), ("copy", 64)]),
        ..CompareConfig::default()
    };
    let (packet, copy) = (cfg.workloads[0], cfg.workloads[1]);
    assert!(packet.info().bottom_half && !copy.info().bottom_half);
    let full = |bh| Subject::Model(PreemptModel::Full, bh);
    assert_eq!(cfg.subjects_for(packet), vec![Subject::Floor, full(BhMode::Classic), full(BhMode::Threaded)]);
    let peers = Peer::ALL.iter().map(|&p| Subject::Peer(p));
    assert_eq!(
        cfg.subjects_for(copy),
        [Subject::Floor, full(BhMode::Classic)].into_iter().chain(peers).collect::<Vec<_>>(),
        "without bh= only packet runs under every option; the floor first"
    );
    // Two runs per cell and round (throughput, latency), one for each workload's floor.
    assert_eq!(cfg.steps() as usize, ((2 + 1 + Peer::ALL.len()) * 2 + 2) * 5);
    assert_eq!(full(BhMode::Threaded).label(true), "full/threaded");
    assert_eq!(full(BhMode::Threaded).name(), "full");
    let skipped = cfg.skipped();
    assert_eq!(skipped.len(), if go_peer::BUILT { 1 } else { 2 }, "{skipped:?}");
    let names: Vec<String> = Peer::ALL.iter().map(|&p| Subject::Peer(p).name()).collect();
    assert!(skipped[0].starts_with(&format!("packet: {} skipped", names.join(", "))), "{skipped:?}");
    let threaded = CompareConfig { bh: Some(vec![BhMode::Threaded]), ..cfg.clone() };
    assert_eq!(threaded.subjects_for(copy)[1], full(BhMode::Threaded), "bh= applies to every workload");
    let e = CompareConfig { bh_prio: 0, ..cfg.clone() }.validate().unwrap_err();
    assert!(e.contains("bh_prio=0"), "{e}");
    let e = CompareConfig { models: vec![], workloads: vec![packet], ..cfg }.validate().unwrap_err();
    assert!(e.contains("models= names no model, but the packet workload (in workloads=) runs only"), "{e}");
}

#[test]
fn a_probe_takes_exactly_its_count_and_the_histogram_holds_every_sample() {
    let specs = ProbeSet { threads: 2, ..ProbeSet::default() }.specs();
    assert_eq!((specs[0].prio, specs[1].prio), (80, 79));
    let w = Workload::all()[0];
    let out =
        probe::run_kernel(PreemptModel::Voluntary, 1, Some(w), &specs, Stop::Loops(200), CpuPolicy::Shared).unwrap();
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
    let w = sized(&[("packet", 16)])[0];
    let boot = kernel::Config {
        preempt: PreemptModel::Full,
        bh: kernel::BhMode::Threaded,
        bh_prio: 40,
        ..kernel::Config::default()
    };
    // 50 samples 2 ms apart: 100 ms, for the wire's host thread to start and the SCHED_NORMAL
    // reader to get the CPU between the probe and ksoftirqd even on a busy host (12.5 ms, at
    // the default 250 µs, once ended before the reader had received a packet).
    let specs = ProbeSet { interval_us: 2000, ..ProbeSet::default() }.specs();
    let out = probe::run_instance(boot, Some(w), &specs, Stop::Loops(50), CpuPolicy::Shared).unwrap();
    assert!(out.units > 0, "the worker received packets in its system calls");
    assert_eq!(out.hists[0].count(), 50);
}

#[test]
fn a_short_comparison_has_a_row_for_every_model_and_peer() {
    let cfg =
        CompareConfig { workloads: sized(&[("checksum", 8)]), seconds: 0.05, rounds: 1, ..CompareConfig::default() };
    let mut heard = 0;
    let rows = compare::run(&cfg, &mut |_| heard += 1).unwrap();
    assert_eq!(heard, cfg.steps());
    let names: Vec<&str> = rows.iter().map(|r| r.model.as_str()).collect();
    let expected: Vec<String> = cfg.subjects().iter().map(|s| s.name()).collect();
    assert_eq!(names, expected);
    assert!(expected.contains(&"peer:host-fifo".to_string()) && expected.contains(&"peer:tokio".to_string()));
    for r in &rows {
        assert_eq!(r.workload, "checksum");
        if !r.model.starts_with("patch") {
            assert!(r.sites_armed_per_event.is_none() && r.handler_ns_per_event.is_none(), "{}", r.model);
        }
        assert!(r.samples > 0 && r.samples == r.latency_ns.count, "{r:?}");
        assert_eq!(r.histogram.iter().map(|b| b.count).sum::<u64>(), r.samples, "{r:?}");
        assert!(!r.policy.is_empty(), "{r:?}");
        if r.model == "floor" {
            assert!(r.throughput_ops_s.is_none() && r.overhead_pct.is_none(), "the floor does no work: {r:?}");
            assert!(r.policy.contains("hogs") || r.policy.contains("hog:"), "busy loops beside the probes: {r:?}");
            continue;
        }
        assert!(r.throughput_ops_s > Some(0.0) && r.overhead_pct.is_some_and(f64::is_finite), "{r:?}");
        if !r.model.starts_with("peer:") {
            assert!(r.policy.starts_with("CPU thread: SCHED_OTHER nice"), "the lab's default: {r:?}");
        }
    }
    assert_eq!(rows[0].model, "floor", "the floor is the first row");
    assert_eq!(rows[1].overhead_pct, Some(0.0));
    assert_eq!(Subject::Peer(Peer::Tokio).name(), "peer:tokio");
}

/// Says plainly that a Go peer test was skipped, and why; true when it was.
fn go_skipped(test: &str) -> bool {
    if !go_peer::BUILT {
        hostlab::testing::skip(&format!("{test}: {}", go_peer::not_built()));
    }
    !go_peer::BUILT
}

/// FNV-1a 64, as the Go program's digest (hash/fnv New64a).
fn fnv64(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3))
}

#[test]
fn the_go_peer_runs_the_same_atoms_as_the_rust_workloads() {
    use services::loader::{build_image, kernel_symbols, Loader};
    use std::sync::Arc;
    if go_skipped("the Go peer's atoms against the Rust atoms") {
        return;
    }
    let (size, kib) = (5, 12);
    let out = go_peer::selftest(size, kib).unwrap();
    let line = |key: &str| out.lines().find(|l| l.split(' ').next() == Some(key)).unwrap_or_else(|| panic!("{out}"));
    let page = [0x5au8; services::atoms::PAGE];
    let one = services::atoms::csum(&page);
    let acc = (0..size).fold(0u16, |a, _| a ^ services::atoms::csum(&page));
    assert_eq!(line("checksum"), format!("checksum {one} {acc}"), "RFC 1071 of a page of 0x5a");
    // HogAtoms::atom, `size` atoms from the seed
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..size * 2048 {
        x = (x ^ (x >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9).rotate_left(17);
    }
    assert_eq!(line("hog"), format!("hog {x}"));
    let src: Vec<u8> = (0..size * services::atoms::PAGE).map(|i| i as u8).collect();
    assert_eq!(line("copy"), format!("copy {}", fnv64(&src)), "dst holds src after one call");
    // LoaderAtoms::begin: call k loads at 0x400000 + (k % 64) * 0x100000
    let (file, ks) = (Arc::new(build_image(kib)), Arc::new(kernel_symbols()));
    let mut relocations = 0;
    let loads: Vec<&str> = out.lines().filter(|l| l.starts_with("loader ")).collect();
    assert_eq!(loads.len(), 2, "{out}");
    for (k, got) in (1u32..).zip(loads) {
        let base = 0x0040_0000 + k * 0x0010_0000;
        let m = Loader::new(file.clone(), ks.clone(), base).load().unwrap();
        relocations += m.relocations;
        assert_eq!(got, format!("loader {k} {base} {} {relocations}", fnv64(&m.image)), "call {k}");
    }
}

#[test]
fn a_short_comparison_of_the_go_peer_has_a_row_per_workload() {
    if go_skipped("a comparison with peer:go") {
        return;
    }
    let cfg = CompareConfig {
        models: vec![],
        peers: vec![Peer::Go],
        workloads: sized(&[("loader", 8), ("copy", 8), ("checksum", 8), ("hog", 8)]),
        seconds: 0.05,
        rounds: 1,
        probes: ProbeSet { threads: 2, ..ProbeSet::default() },
        ..CompareConfig::default()
    };
    assert!(cfg.skipped().is_empty(), "{:?}", cfg.skipped());
    let rows = compare::run(&cfg, &mut |_| {}).unwrap();
    let names: Vec<(&str, &str)> = rows.iter().map(|r| (r.workload.as_str(), r.model.as_str())).collect();
    let with_floor: Vec<(&str, &str)> =
        ["loader", "copy", "checksum", "hog"].into_iter().flat_map(|w| [(w, "floor"), (w, "peer:go")]).collect();
    assert_eq!(names, with_floor);
    for r in rows.iter().filter(|r| r.model == "peer:go") {
        // every deadline of each probe: 50 ms / 250 us and 50 ms / 300 us
        assert_eq!(r.samples, 200 + 166, "{r:?}");
        assert_eq!(r.probes.iter().map(|p| p.latency_ns.count).collect::<Vec<_>>(), [200, 166], "{r:?}");
        assert_eq!(r.histogram.iter().map(|b| b.count).sum::<u64>(), r.samples, "{r:?}");
        assert_eq!(r.latency_undisturbed_ns.count + r.host_disturbed, r.samples, "{r:?}");
        assert!(r.throughput_ops_s > Some(0.0) && r.loaded_throughput_ops_s > Some(0.0), "{r:?}");
        assert!(r.overhead_pct.is_none(), "no none row to compare with: {r:?}");
        assert!(r.policy.starts_with("GOMAXPROCS=1, go"), "{r:?}");
        assert!(r.policy.ends_with("process: SCHED_OTHER nice -20") || r.policy.contains("refused"), "{r:?}");
    }
}

#[test]
fn asking_for_the_go_peer_in_a_build_without_it_names_the_fix() {
    if go_peer::BUILT {
        assert!(Peer::ALL.contains(&Peer::Go));
        assert_eq!(peers::skipped_note(Peer::ALL), None);
        hostlab::testing::skip(
            "the error for --peers go without Go: this build has the Go peer (rebuild with GO=/nonexistent to test it)",
        );
        return;
    }
    assert!(!Peer::ALL.contains(&Peer::Go));
    // `--peers go` in this build: the CLI's test `values::tests::go_not_built_names_the_fix`.
    let note = peers::skipped_note(Peer::ALL).expect("--peers all says the Go peer was skipped");
    assert!(note.starts_with("peer:go skipped: ") && note.contains("apt-get install golang-go"), "{note}");
    assert_eq!(peers::skipped_note(&[Peer::Tokio]), None, "no note when the peers were named");
    assert!(CompareConfig::default().skipped().iter().any(|n| n.starts_with("peer:go skipped")));
    let e = Peer::Go.run(None, &ProbeSet::default().specs(), 1_000_000, CpuPolicy::Shared, 1).unwrap_err();
    assert!(e.contains("apt-get install golang-go"), "{e}");
}

/// On two CPUs: a worker bound to each CPU ran only there, every CPU's probes took samples
/// and ran only there, the cross-CPU probe's interrupt ran on CPU 0 and its RT task on CPU 1,
/// and every row has the per-CPU figures and the scaling against one CPU (placement and
/// counts, never times).
#[test]
fn on_two_cpus_workers_and_probes_run_on_every_cpu_and_the_rows_say_where() {
    let cfg = CompareConfig {
        models: vec![PreemptModel::None, PreemptModel::Full, PreemptModel::PatchCall],
        peers: vec![Peer::HostFifo, Peer::Tokio],
        workloads: sized(&[("checksum", 8)]),
        seconds: 0.05,
        rounds: 1,
        probes: ProbeSet { threads: 2, ..ProbeSet::default() },
        cpus: 2,
        ..CompareConfig::default()
    };
    let mut heard = Vec::new();
    let rows = compare::run(&cfg, &mut |what| heard.push(what.to_string())).unwrap();
    assert_eq!(heard.len() as u64, cfg.steps());
    assert_eq!(cfg.steps(), 5 * 3 + 1, "throughput, throughput on one CPU and latency per cell; the floor's latency");
    assert!(heard.contains(&"none/checksum throughput cpus=1".to_string()), "{heard:?}");
    let host = lab::host_peer::host_cpus(2);
    for r in &rows {
        assert_eq!(r.cpus, 2, "{r:?}");
        let floor = r.model == "floor";
        assert_eq!(r.throughput_1cpu_ops_s.is_some_and(|t| t > 0.0), !floor, "{r:?}");
        assert_eq!(r.scaling.is_some_and(f64::is_finite), !floor, "{r:?}");
        assert_eq!(r.probes.len(), 4, "2 probes on each of 2 CPUs: {r:?}");
        assert_eq!(r.probes.iter().map(|p| p.prio).collect::<Vec<_>>(), [80, 79, 80, 79]);
        if r.model == "peer:tokio" {
            assert!(r.latency_per_cpu_ns.is_none() && r.cross_cpu.is_none() && r.workers.is_none(), "{r:?}");
            assert!(r.policy.contains("multi-thread runtime, 2 worker threads"), "{r:?}");
            continue;
        }
        // the CPUs are the kernel's for a model, the host's for the host peer and the floor
        let cpu = |c: usize| if r.model == "peer:host-fifo" || floor { host[c] } else { c };
        let per = r.latency_per_cpu_ns.as_ref().expect("per-CPU latency");
        assert_eq!(per.len(), 2, "{r:?}");
        for (c, l) in per.iter().enumerate() {
            let bound: u64 = r.probes.iter().filter(|p| p.cpu == Some(cpu(c))).map(|p| p.latency_ns.count).sum();
            assert!(l.count > 0 && l.count == bound, "CPU {c}'s probes took samples: {r:?}");
        }
        assert_eq!(per.iter().map(|l| l.count).sum::<u64>(), r.samples);
        for (i, p) in r.probes.iter().enumerate() {
            assert_eq!((p.cpu, p.ran_on.clone()), (Some(cpu(i / 2)), vec![cpu(i / 2)]), "probe {i} stayed: {r:?}");
        }
        let workers = r.workers.as_ref().expect("placement of the workers");
        let want: Vec<PlaceRow> = (0..2).map(|c| PlaceRow { cpu: Some(cpu(c)), ran_on: vec![cpu(c)] }).collect();
        let mut got = workers.clone();
        got.sort_by_key(|p| p.cpu);
        let mut want = want;
        want.sort_by_key(|p| p.cpu);
        assert_eq!(got, want, "a worker bound to each CPU ran only there: {r:?}");
        let x = r.cross_cpu.as_ref().expect("the cross-CPU probe");
        assert_eq!((x.irq.cpu, x.irq.ran_on.clone()), (Some(cpu(0)), vec![cpu(0)]), "{r:?}");
        assert_eq!((x.rt.cpu, x.rt.ran_on.clone()), (Some(cpu(1)), vec![cpu(1)]), "{r:?}");
        assert_eq!(x.interval_us, 4 * 250);
        assert_eq!(x.latency_ns.count, 50, "every deadline of 50 ms every 1 ms: {r:?}");
        if !r.model.starts_with("peer:") && !floor {
            assert!(r.policy.starts_with("CPU thread: ") && r.policy.ends_with("(each of 2)"), "{r:?}");
        }
    }
}

#[test]
fn the_go_peer_on_two_cpus_runs_at_gomaxprocs_2_with_every_probe_twice() {
    if go_skipped("peer:go on two CPUs") {
        return;
    }
    let cfg = CompareConfig {
        models: vec![],
        peers: vec![Peer::Go],
        workloads: sized(&[("hog", 8)]),
        seconds: 0.05,
        rounds: 1,
        cpus: 2,
        ..CompareConfig::default()
    };
    let rows = compare::run(&cfg, &mut |_| {}).unwrap();
    assert_eq!(rows[0].model, "floor");
    let r = &rows[1];
    assert!(r.policy.starts_with("GOMAXPROCS=2, go") && r.policy.contains("2 workers"), "{r:?}");
    assert_eq!(r.probes.iter().map(|p| p.latency_ns.count).collect::<Vec<_>>(), [200, 200], "{r:?}");
    assert!(r.throughput_1cpu_ops_s.is_some_and(|t| t > 0.0) && r.scaling.is_some(), "{r:?}");
    assert!(r.latency_per_cpu_ns.is_none() && r.cross_cpu.is_none() && r.workers.is_none(), "{r:?}");
}

/// The cross-CPU probe on an instance with no workload: every deadline sampled, its interrupt
/// handled on CPU 0 and its RT task run on CPU 1 only; each CPU's probe stayed on its CPU.
#[test]
fn the_cross_cpu_probe_takes_every_deadline_with_the_interrupt_on_cpu_0_and_the_task_on_cpu_1() {
    let boot = kernel::Config { preempt: PreemptModel::Full, cpus: 2, ..kernel::Config::default() };
    let specs = ProbeSet::default().specs();
    let out = probe::run_instance(boot, None, &specs, Stop::Loops(100), CpuPolicy::Shared).unwrap();
    let x = out.cross.expect("a cross-CPU probe on two CPUs");
    assert_eq!(x.hist.count(), 100);
    assert_eq!((x.irq.cpu, x.irq.seen_cpus()), (Some(0), vec![0]));
    assert_eq!((x.rt.cpu, x.rt.seen_cpus()), (Some(1), vec![1]));
    assert_eq!(out.hists.len(), 2, "the probe on each CPU");
    for (c, p) in out.probe_places.iter().enumerate() {
        assert_eq!((p.cpu, p.seen_cpus()), (Some(c), vec![c]));
    }
}
