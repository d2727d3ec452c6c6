//! `atomkernel trace` as a user runs it: files written, JSON valid, bad input refused.

mod common;
use common::atomkernel;

#[test]
fn trace_writes_a_chrome_trace_and_a_report_naming_the_long_atom() {
    let dir = std::env::temp_dir().join(format!("atomkernel-trace-test-{}", std::process::id()));
    let out = dir.to_str().unwrap();
    let args =
        ["trace", "--workload", "long-atom", "--preempt", "voluntary", "--seconds", "0.2", "--long-atom-us", "20000"];
    let (code, stdout, err) = atomkernel(&[&args[..], &["--out", out]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("tracing_max_latency"), "{stdout}");
    let report = std::fs::read_to_string(dir.join("report.txt")).unwrap();
    assert!(report.contains("deliberately_long_atom"), "{report}");
    assert!(report.contains("## wakeup_rt") && report.contains("## profile"), "{report}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("trace.json")).unwrap()).unwrap();
    let events = json["traceEvents"].as_array().unwrap();
    assert!(events.iter().any(|e| e["name"] == "sched_switch" && e["ph"] == "i"));
    assert!(std::fs::read_to_string(dir.join("trace.txt")).unwrap().contains("irq_handler_entry"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn trace_refuses_bad_input_naming_the_option() {
    let (code, _, err) = atomkernel(&["trace", "--tracers", "ftrace"]);
    assert_eq!(code, 2);
    assert!(err.contains("--tracers") && err.contains("unknown tracer 'ftrace'") && err.contains("wakeup_rt"), "{err}");
    let (code, _, err) = atomkernel(&["trace", "--workload", "nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("--workload nope: choose one of scenario, load, long-atom, torture"), "{err}");
    let (code, _, err) = atomkernel(&["trace", "--preempt", "fast"]);
    assert_eq!(code, 2);
    assert!(err.contains("--preempt") && err.contains("unknown preemption model 'fast'"), "{err}");
    let (code, _, err) = atomkernel(&["trace", "--tracers", "off"]);
    assert_eq!(code, 2);
    assert!(err.contains("name at least one of"), "{err}");
}

/// `trace --workload torture` with no `--preempt` runs under the torture's default model
/// (`full`, kernel mode) and writes its files.
#[test]
fn the_torture_runs_under_its_default_model() {
    let dir = std::env::temp_dir().join(format!("atomkernel-trace-torture-{}", std::process::id()));
    let (code, stdout, err) = atomkernel(&["trace", "--workload", "torture", "--out", dir.to_str().unwrap()]);
    let written = dir.join("report.json").is_file();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("--workload torture --preempt full"), "{stdout}");
    assert!(written, "report.json written");
}
