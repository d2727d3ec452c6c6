//! The command line as a user meets it: output, JSON, exit codes, errors.

mod common;
use common::atomkernel;

#[test]
fn demo_runs_the_seed_scenario_for_every_built_model() {
    let (code, out, err) = atomkernel(&["demo", "--timeline"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("model ") && lines[0].contains("irq_at_us"), "the table first: {out}");
    for m in kernel::PreemptModel::ALL {
        assert!(lines[1..].iter().any(|l| l.starts_with(&format!("{:<12} ", m.name()))), "{m}: {out}");
    }
    let none = lines.iter().find(|l| l.starts_with("none ")).unwrap();
    assert!(none.contains("after the system call"), "{out}");
    let full = lines.iter().find(|l| l.starts_with("full ")).unwrap();
    assert!(full.contains("inside atom 1"), "full preempts inside the atom the IRQ came in: {out}");
    assert!(out.contains("preempt=none: 5 atoms") && out.contains("ret_from_syscall"), "--timeline: {out}");
    let (code, out, err) = atomkernel(&["demo", "--preempt", "full"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("ret_from_syscall") && out.contains("--timeline"), "timelines on request: {out}");
}

/// A legal scenario longer than the detectors' defaults (an 11 s system call under `none`: 11
/// atoms of 1 s) is the scenario, not a soft lockup: it runs to its end and exits 0. (It takes
/// the 11 s it asks for.)
#[test]
fn a_system_call_longer_than_the_default_lockup_threshold_runs_to_its_end() {
    let args = ["demo", "--preempt", "none", "--atoms", "11", "--atom-us", "1000000", "--json"];
    let (code, out, err) = atomkernel(&args);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("soft lockup") && !err.contains("Kernel panic"), "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((v["atoms"].as_u64(), v["rt_ran_after_atom"].as_u64()), (Some(11), Some(11)), "{out}");
}

#[test]
fn demo_json_has_the_documented_fields() {
    let (code, out, err) = atomkernel(&["demo", "--preempt", "none", "--json"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one object per model: {out}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["model"], "none");
    assert_eq!(v["atoms"], 5);
    assert_eq!(v["irq_during_atom"], 1);
    assert_eq!(v["rt_ran_after_atom"], 5);
    assert!(v["rt_wait_ns"].as_u64().unwrap() > 0);
    assert!(v["timeline"].as_array().unwrap().len() >= 13);
    // When the interrupt came (after atom 1 began: at least the 200 µs asked), how late, and
    // whether the host held the worker's CPU meanwhile.
    let at = v["irq_at_ns"].as_u64().unwrap();
    assert!(at >= 200_000 && v["irq_late_ns"].as_u64() == Some(at - 200_000), "{v}");
    assert!(v["host_held"].is_boolean(), "{v}");
}

#[test]
fn demo_json_reports_sites_armed_and_handler_cost_per_event_under_both_tables() {
    for (ptable, redirects) in [("exact", 0), ("function", 1)] {
        let (code, out, err) =
            atomkernel(&["demo", "--preempt", "patch-call", "--ptable", ptable, "--handler-parts", "--json"]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["ptable"], ptable);
        assert!(v["sites_armed_per_event"].as_f64().unwrap() >= 1.0, "{out}");
        assert!(v["handler_ns_per_event"].as_u64().is_some(), "{out}");
        // The handler's parts are laps of its own time: together at most the whole, and taken.
        let parts: u64 =
            ["lookup_ns", "unwind_ns", "poke_ns", "redirect_ns"].iter().map(|p| v["patch"][p].as_u64().unwrap()).sum();
        assert!(parts > 0 && parts <= v["patch"]["arm_ns"].as_u64().unwrap(), "{out}");
        // The scenario's loop meets a point on every path: only the per-function table redirects.
        assert_eq!(v["patch"]["redirects"], redirects, "{ptable}: {out}");
    }
    // Without --handler-parts only the whole is timed: the parts stay zero and are not printed.
    let (code, out, err) = atomkernel(&["demo", "--preempt", "patch-int3", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["handler_ns_per_event"].as_u64().is_some_and(|ns| ns > 0), "{out}");
    assert!(v["handler_parts_ns_median"].is_null(), "{out}");
    assert!(["lookup_ns", "unwind_ns", "poke_ns", "redirect_ns"].iter().all(|p| v["patch"][p] == 0), "{out}");
    let (code, _, err) = atomkernel(&["demo", "--preempt", "none", "--handler-parts"]);
    assert_eq!(code, 2);
    assert!(err.contains("--handler-parts: sets how the patch models"), "{err}");
    let (code, _, err) = atomkernel(&["demo", "--ptable", "bogus"]);
    assert_eq!(code, 2);
    assert!(err.contains("ptable=bogus") && err.contains("exact, function"), "{err}");
}

#[test]
fn patch_sync_ipi_is_reported_with_its_rounds_and_a_bad_mode_is_refused() {
    let (code, out, err) = atomkernel(&["demo", "--preempt", "patch-call", "--patch-sync", "ipi", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["patch_sync"], "ipi");
    assert!(v["patch"]["sync_rounds"].as_u64().unwrap() >= 2, "{out}");
    for cmd in [&["demo"][..], &["compare", "--quick"], &["torture", "--patching", "--cpus", "2"]] {
        let args: Vec<&str> = cmd.iter().copied().chain(["--patch-sync", "sometimes"]).collect();
        let (code, out, err) = atomkernel(&args);
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(
            err.contains("--patch-sync sometimes") && err.contains("none") && err.contains("ipi"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn patch_leaf_is_reported_and_a_bad_value_or_one_without_a_patch_model_is_refused() {
    let (code, out, err) = atomkernel(&["demo", "--preempt", "patch-call", "--patch-leaf", "return", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["patch_leaf"], "return", "{out}");
    for cmd in [&["demo"][..], &["compare", "--quick"], &["qemu", "demo"]] {
        let args: Vec<&str> = cmd.iter().copied().chain(["--patch-leaf", "up"]).collect();
        let (code, out, err) = atomkernel(&args);
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(err.contains("--patch-leaf up") && err.contains("walk") && err.contains("return"), "{args:?}: {err}");
        let args: Vec<&str> = cmd.iter().copied().chain(["--preempt", "full", "--patch-leaf", "return"]).collect();
        let (code, out, err) = atomkernel(&args);
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(err.contains("--patch-leaf return") && err.contains("no run here uses one"), "{args:?}: {err}");
    }
}

#[test]
fn bad_input_gets_a_clear_error_and_exit_code_2() {
    let (code, _, err) = atomkernel(&["demo", "--preempt", "quick"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown preemption model 'quick'") && err.contains("none, voluntary"), "{err}");
    let (code, _, err) = atomkernel(&["demo", "--atoms", "0"]);
    assert_eq!(code, 2);
    assert!(err.contains("--atoms 0: use 1..=64 atoms"), "{err}");
    let (code, _, err) = atomkernel(&["torture", "--tasks", "0"]);
    assert_eq!(code, 2);
    assert!(err.contains("--tasks 0: use 1..=64 torture tasks"), "{err}");
    let (code, _, err) = atomkernel(&["demo", "--no-such-flag"]);
    assert_eq!(code, 2, "clap's own usage errors exit 2 too");
    assert!(err.contains("--no-such-flag"), "{err}");
}

#[test]
fn torture_command_reports_preemptions_and_no_mismatch() {
    let (code, out, err) = atomkernel(&["torture", "--preemptions", "2000", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["preemptions"].as_u64().unwrap() >= 2000, "{out}");
    assert_eq!(v["mismatches"].as_array().unwrap().len(), 0);
}

#[test]
fn points_lists_the_scenario_point_with_its_function() {
    let (code, out, err) = atomkernel(&["points", "--json"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let scenario =
        rows.iter().find(|r| r["file"].as_str().unwrap().ends_with("scenario.rs")).expect("the scenario's point");
    assert!(scenario["function"].as_str().unwrap().contains("scenario::worker"), "{scenario}");
    assert!(scenario["line"].as_u64().unwrap() > 0);
}

#[test]
fn points_check_finds_the_shipped_services_bounded() {
    let (code, out, err) = atomkernel(&["points", "--check", "--json"]);
    assert_eq!(code, 0, "no loop of the shipped services spins without a point: {out}{err}");
    let rows: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for r in &rows {
        for field in ["function", "file", "line", "points", "max_stretch_insns", "unbounded", "resolved"] {
            assert!(r.get(field).is_some(), "{field} in {r}");
        }
    }
    // The shipped services are checked and bounded, in whichever functions the compiler put
    // their code (`run_atom` is a row of its own in a debug build, inlined in release).
    let lab = rows.iter().filter(|r| r["in_lab"] == true);
    assert!(lab.clone().count() >= 1, "the shipped services are checked: {out}");
    for r in lab {
        assert_eq!(r["unbounded"].as_array().map(Vec::len), Some(0), "a shipped service is bounded: {r}");
    }
    let (code, out, _) = atomkernel(&["points", "--check"]);
    assert_eq!(code, 0);
    assert!(out.contains("0 unbounded loop(s) in the shipped services' source"), "{out}");
}
