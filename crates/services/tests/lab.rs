//! The models lab as a library: percentiles on known data, option checks, and a short run of
//! every built model (behaviour only, never timing thresholds).

use kernel::PreemptModel;
use services::lab::{self, percentiles, LabConfig, Latency};

#[test]
fn percentiles_are_nearest_rank_on_known_data() {
    // 1..=1000 in a scrambled order.
    let data: Vec<u64> = (0..1000u64).map(|i| (i * 7919) % 1000 + 1).collect();
    let l = percentiles(&data);
    assert_eq!(l, Latency { min: 1, p50: 500, p99: 990, p999: 999, max: 1000, count: 1000 });

    let l = percentiles(&[30, 10, 20]);
    assert_eq!((l.min, l.p50, l.p99, l.p999, l.max, l.count), (10, 20, 30, 30, 30, 3));

    assert_eq!(percentiles(&[7]), Latency { min: 7, p50: 7, p99: 7, p999: 7, max: 7, count: 1 });
    assert_eq!(percentiles(&[]), Latency::default());
    // The input is not reordered.
    let v = vec![3, 1, 2];
    let _ = percentiles(&v);
    assert_eq!(v, [3, 1, 2]);
}

#[test]
fn bad_settings_name_the_option_and_the_range() {
    let bad = |f: fn(&mut LabConfig)| {
        let mut c = LabConfig::default();
        f(&mut c);
        c.validate().unwrap_err()
    };
    assert!(bad(|c| c.interval_us = 50).contains("--interval-us 50: use 100..=1000000"));
    assert!(bad(|c| c.rounds = 0).contains("--rounds 0: use 1..=100"));
    assert!(bad(|c| c.atoms = 0).contains("--atoms 0: use 1..=4096"));
    assert!(bad(|c| c.atoms = 4097).contains("--atoms 4097"));
    assert!(bad(|c| c.seconds = 0.0).contains("--seconds 0"));
    assert!(bad(|c| c.seconds = 601.0).contains("at most 600"));
    assert!(bad(|c| c.seconds = f64::NAN).contains("--seconds NaN"));
    assert!(bad(|c| c.models.clear()).contains("--preempt"));
    LabConfig::default().validate().unwrap();
    // The error comes back from run too, before any kernel boots.
    let e = lab::run(&LabConfig { rounds: 0, ..LabConfig::default() }).unwrap_err();
    assert!(e.contains("--rounds 0"), "{e}");
}

#[test]
fn model_lists_parse() {
    assert_eq!(lab::parse_models("all").unwrap(), PreemptModel::BUILT.to_vec());
    assert_eq!(lab::parse_models("none, none").unwrap(), vec![PreemptModel::None]);
    let e = lab::parse_models("none,fastest").unwrap_err();
    assert!(e.contains("unknown preemption model 'fastest'"), "{e}");
    if let Some(m) = PreemptModel::ALL.iter().find(|m| !m.is_built()) {
        let e = lab::parse_models(m.name()).unwrap_err();
        assert!(e.contains("not built yet"), "{e}");
    }
}

#[test]
fn a_short_run_measures_every_built_model() {
    let cfg = LabConfig { seconds: 0.2, rounds: 1, ..LabConfig::default() };
    let results = lab::run(&cfg).unwrap();
    let names: Vec<&str> = results.iter().map(|r| r.model.as_str()).collect();
    let built: Vec<&str> = PreemptModel::BUILT.iter().map(|m| m.name()).collect();
    assert_eq!(names, built);
    for r in &results {
        assert!(r.samples > 0 && r.samples == r.latency_ns.count, "{r:?}");
        assert!(r.throughput_pages_s > 0.0 && r.loaded_throughput_pages_s > 0.0, "{r:?}");
        assert!(r.overhead_pct.is_some_and(f64::is_finite), "{r:?}");
        let l = r.latency_ns;
        assert!(l.min <= l.p50 && l.p50 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max, "{r:?}");
        assert_eq!(r.rounds_throughput_pages_s.len(), 1);
    }
    assert_eq!(results[0].overhead_pct, Some(0.0));
}

#[test]
fn overhead_is_omitted_without_none() {
    let Some(&other) = PreemptModel::BUILT.iter().find(|&&m| m != PreemptModel::None) else { return };
    let cfg = LabConfig { models: vec![other], seconds: 0.05, rounds: 1, ..LabConfig::default() };
    let results = lab::run(&cfg).unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].overhead_pct, None);
    assert!(results[0].samples > 0);
}
