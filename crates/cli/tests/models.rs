//! `atomkernel models` as a user meets it: option errors with exit code 2, and JSON lines for
//! every built model.

use kernel::PreemptModel;
mod common;
use common::atomkernel;

#[test]
fn bad_options_are_refused_with_the_option_and_the_range() {
    let (code, out, err) = atomkernel(&["models", "--interval-us", "50"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("atomkernel: --interval-us 50: use 100..=1000000"), "{err}");
    let (code, _, err) = atomkernel(&["models", "--rounds", "0"]);
    assert_eq!(code, 2);
    assert!(err.contains("--rounds 0: use 1..=100"), "{err}");
    let (code, _, err) = atomkernel(&["models", "--preempt", "none,quick"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown preemption model 'quick'") && err.contains("none, voluntary"), "{err}");
    let (code, _, err) = atomkernel(&["models", "--atoms", "5000"]);
    assert_eq!(code, 2);
    assert!(err.contains("--atoms 5000: use 1..=4096"), "{err}");
    let (code, _, err) = atomkernel(&["models", "--seconds", "0"]);
    assert_eq!(code, 2);
    assert!(err.contains("--seconds 0"), "{err}");
}

#[test]
fn json_lines_cover_every_built_model() {
    let (code, out, err) = atomkernel(&["models", "--json", "--seconds", "0.2", "--rounds", "1"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let names: Vec<&str> = lines.iter().map(|v| v["model"].as_str().unwrap()).collect();
    let built: Vec<&str> = PreemptModel::BUILT.iter().map(|m| m.name()).collect();
    assert_eq!(names, built, "{out}");
    for v in &lines {
        assert!(v["throughput_pages_s"].as_f64().unwrap() > 0.0, "{v}");
        assert!(v["overhead_pct"].as_f64().is_some(), "{v}");
        assert!(v["samples"].as_u64().unwrap() > 0, "{v}");
        for k in ["min", "p50", "p99", "p999", "max"] {
            assert!(v["latency_ns"][k].as_u64().is_some(), "{k}: {v}");
        }
        assert_eq!(
            (v["atoms"].as_u64(), v["interval_us"].as_u64(), v["rounds"].as_u64()),
            (Some(64), Some(1000), Some(1))
        );
        assert_eq!(v["seconds"].as_f64(), Some(0.2));
    }
    assert_eq!(lines[0]["overhead_pct"].as_f64(), Some(0.0));
}

#[test]
fn the_table_has_a_row_per_model() {
    let (code, out, err) = atomkernel(&["models", "--preempt", "none", "--seconds", "0.05", "--rounds", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pages/s") && out.contains("lat_p99_us"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("none ")), "{out}");
}
