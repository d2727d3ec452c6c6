//! Input that never hangs or misleads, as a new user tries it: every bad option is refused
//! before any work, with one line naming the option and what to use (nothing on stdout, no
//! file made); what is allowed but does not do what it seems gets a note; long runs end at
//! their limit. Behaviour only, never timing.

mod common;
use common::atomkernel;
use std::path::PathBuf;

/// `args` exits 2 before doing anything: stdout empty, stderr one line naming `needle`.
fn refused(args: &[&str], needle: &str) {
    let (code, out, err) = atomkernel(args);
    assert_eq!(code, 2, "{args:?}: {out}{err}");
    assert_eq!(out, "", "{args:?}: nothing on stdout");
    assert_eq!(err.lines().count(), 1, "{args:?}: one line, the error, and nothing before it: {err}");
    assert!(err.starts_with("atomkernel: "), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: expected '{needle}' in: {err}");
}

/// A fresh path under the temp directory, not created.
fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("atomkernel-input-{}-{name}", std::process::id()))
}

#[test]
fn each_torture_number_has_its_own_message() {
    refused(
        &["torture", "--spins", "18446744073709551615", "--max-seconds", "2"],
        "--spins 18446744073709551615: use 1..=100000000 spin iterations per round",
    );
    refused(&["torture", "--spins", "0"], "--spins 0: use 1..=100000000");
    refused(&["torture", "--max-seconds", "0"], "--max-seconds 0: use 1..=86400 seconds");
    refused(&["torture", "--max-seconds", "18446744073709551615"], "--max-seconds 18446744073709551615: use 1..=86400");
    refused(&["torture", "--preemptions", "0"], "--preemptions 0: use at least 1");
    refused(&["torture", "--tasks", "65"], "--tasks 65: use 1..=64 torture tasks");
    refused(&["torture", "--kernel", "--preempt", "voluntary"], "--preempt voluntary: kernel code is never preempted");
}

#[test]
fn the_torture_ends_at_its_time_limit_even_with_the_longest_rounds() {
    for mode in [&[][..], &["--kernel"][..], &["--kernel", "--preempt", "patch-call"][..]] {
        let args = ["torture", "--spins", "100000000", "--max-seconds", "1", "--preemptions", "18446744073709551615"];
        let (code, out, err) = atomkernel(&[&args[..], mode, &["--json"]].concat());
        assert_eq!(code, 0, "{mode:?}: {err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert!(v["preemptions"].as_u64().unwrap() < u64::MAX, "{mode:?}: it stopped at the limit: {v}");
        assert_eq!(v["mismatches"].as_array().unwrap().len(), 0, "{v}");
    }
}

#[test]
fn latency_loops_are_bounded_like_a_duration() {
    refused(
        &["latency", "--loops", "1000000000"],
        "--loops 1000000000: the slowest probe (every 1000 us) would run 1000000 s; use at most 600000 loops (600 s), or --duration",
    );
    refused(&["latency", "--loops", "601", "--interval-us", "1000000"], "use at most 600 loops");
    refused(&["latency", "--threads", "2", "--loops", "500000"], "the slowest probe (every 1500 us)");
}

#[test]
fn negative_numbers_reach_the_options_own_check() {
    refused(&["latency", "--duration", "-1"], "--duration -1: use a duration above 0 and at most 600 seconds");
    refused(&["compare", "--duration", "-1"], "--duration -1: use a duration above 0");
    refused(&["packets", "--seconds", "-1"], "--seconds -1: use a length above 0 and at most 600");
    refused(&["trace", "--seconds", "-1"], "--seconds -1: use a duration above 0");
    refused(&["compare", "--rounds", "-1"], "--rounds -1 is below 0: use a whole number, 0 or more");
}

/// A number the option's type cannot hold says what to use, not Rust's "invalid digit found in
/// string".
#[test]
fn a_number_that_does_not_parse_says_what_to_use() {
    refused(&["demo", "--atoms", "1.5"], "--atoms 1.5 is not a whole number: use one, digits only (default: 5)");
    refused(&["trace", "--top", "-1"], "--top -1 is below 0: use a whole number, 0 or more (default: 5)");
    refused(
        &["demo", "--repeat", "99999999999999999999"],
        "--repeat 99999999999999999999 is too large: use a whole number, at most 18446744073709551615",
    );
    refused(&["packets", "--seconds", "soon"], "--seconds soon is not a number: use one");
    refused(
        &["compare", "--size", "copy=99999999999999999999"],
        "99999999999999999999 is too large: copy takes 1..=4096",
    );
    for (args, _) in [(["compare", "--rounds", "1.5"], ()), (["latency", "--prio", "-1"], ())] {
        let (code, _, err) = atomkernel(&args);
        assert_eq!(code, 2, "{args:?}");
        assert!(!err.contains("invalid digit"), "{args:?}: {err}");
    }
}

/// An option that would change nothing is an error naming it and what to use instead.
#[test]
fn an_option_that_would_change_nothing_is_refused() {
    refused(&["latency", "--workload", "none", "--size", "copy=4"], "--size copy=4: --workload none runs no workload");
    refused(&["packets", "--low-prio", "50"], "--low-prio 50: sets the lower RT task of --order");
    refused(&["packets", "--order", "--seconds", "5"], "--seconds 5: --order runs one interrupt");
    refused(&["packets", "--order", "--cpus", "2"], "--cpus 2: --order runs one interrupt");
    refused(
        &["trace", "--workload", "scenario", "--seconds", "5"],
        "--seconds 5: the scenario workload does not read it",
    );
    refused(&["trace", "--workload", "torture", "--hz", "100"], "--hz 100: the torture workload does not read it");
    refused(&["trace", "--workload", "load", "--long-atom-us", "5"], "use --workload long-atom");
    refused(&["demo", "--preempt", "none", "--ptable", "function"], "--ptable function: sets how the patch models");
    refused(&["demo", "--preempt", "full", "--patch-sync", "ipi"], "--patch-sync ipi: sets how the patch models");
    refused(&["compare", "--preempt", "none,full", "--ptable", "exact"], "add one to --preempt, or drop --ptable");
    refused(
        &["compare", "--preempt", "none,,full"],
        "--preempt none,,full: an empty item (two commas together, or one at an end); write none,full",
    );
    refused(&["compare", "--workload", "copy,"], "--workload copy,: an empty item");
    refused(&["trace", "--top", "0"], "--top 0: use 1..=10000 rows per report section");
}

/// Messages that name what was given: `none` in a list, `--seconds` for `--duration`.
#[test]
fn messages_name_what_was_given() {
    refused(&["compare", "--peers", "none,go"], "--peers none,go: none stands alone, not in a list; give --peers none");
    refused(&["compare", "--seconds", "0"], "--seconds 0: use a duration above 0");
    refused(&["compare", "--duration", "0"], "--duration 0: use a duration above 0");
    refused(
        &["packets", "--seconds", "0.0001", "--rounds", "1"],
        "--seconds 0.0001 is shorter than two probe periods (--interval-us 1000): use at least 0.002 s",
    );
    let (code, help, _) = atomkernel(&["compare", "--help"]);
    assert_eq!(code, 0);
    assert!(!help.contains("`models`"), "the hidden alias is not named: {help}");
    assert!(help.contains("DIR/results.json"), "{help}");
    let (code, help, _) = atomkernel(&["trace", "--help"]);
    assert_eq!(code, 0);
    assert!(help.contains("report.json"), "{help}");
    for m in ["none", "voluntary", "full", "lazy", "cpulock", "patch-int3", "patch-call"] {
        assert!(help.contains(m), "trace --help lists {m}: {help}");
    }
}

#[test]
fn trace_refuses_an_output_it_cannot_write_before_running() {
    let file = scratch("trace-file");
    std::fs::write(&file, "keep me").unwrap();
    let f = file.to_str().unwrap();
    refused(&["trace", "--out", f], &format!("--out {f}: exists and is not a directory"));
    let sub = format!("{f}/sub");
    refused(&["trace", "--out", &sub], &format!("--out {sub}: {f} is not a directory"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me", "the file is untouched");
    let _ = std::fs::remove_file(&file);
    let dir = scratch("trace-dir");
    refused(
        &["trace", "--out", dir.to_str().unwrap(), "--hz", "0"],
        "--hz 0 is out of range: the tick rate must be 1..=10000",
    );
    assert!(!dir.exists(), "bad input creates no directory");
}

#[test]
fn compare_refuses_a_report_it_cannot_write_before_running() {
    let file = scratch("report-file");
    std::fs::write(&file, "keep me").unwrap();
    let f = file.to_str().unwrap();
    refused(&["compare", "--report", f], &format!("--report {f}: exists and is not a directory"));
    let _ = std::fs::remove_file(&file);
    let dir = scratch("report-dir");
    refused(&["compare", "--report", dir.to_str().unwrap(), "--rounds", "0"], "--rounds 0: use 1..=100");
    assert!(!dir.exists(), "bad input creates no directory");
}

#[test]
fn packets_errors_name_the_flags_and_come_before_the_plan() {
    refused(&["packets", "--rounds", "0"], "--rounds 0: use 1..=100 rounds");
    refused(&["packets", "--budget", "0"], "--budget 0: use 1..=4096");
    refused(&["packets", "--probe-pages", "5000"], "--probe-pages 5000: use 0..=4096");
    refused(&["packets", "--probe-prio", "95"], "--probe-prio 95: use 1..=89");
    refused(&["packets", "--interval-us", "10"], "--interval-us 10: use 100..=1000000");
    refused(&["packets", "--order", "--low-prio", "0"], "--low-prio 0: use a SCHED_FIFO priority 1..=99");
}

#[test]
fn compare_errors_blame_the_option_given() {
    refused(
        &["compare", "--preempt", ""],
        "--preempt names no model, but the packet workload (in --workload) runs only",
    );
    refused(&["compare", "--size", "copy=4096,copy=1"], "--size copy=1: copy is given a size twice (copy=4096 first)");
    refused(&["latency", "--workload", "copy", "--size", "copy=8,copy=8"], "copy is given a size twice");
}

/// The lab and the kernel name their own fields (`threads=5 with prio=3`); the user sees the
/// options that set them, with the value given and what to use.
#[test]
fn a_lab_fields_error_names_the_option_that_set_it() {
    refused(&["compare", "--prio", "99"], "--prio 99: use SCHED_FIFO priority 1..=98");
    refused(
        &["latency", "--threads", "5", "--prio", "3"],
        "--threads 5 with --prio 3: probe i runs at prio - i, so use at most 3 probes",
    );
    refused(
        &["compare", "--distance-us", "2000000"],
        "--interval-us 250 / --distance-us 2000000: use at most 1000000 us",
    );
    refused(
        &["compare", "--duration", "0.0001"],
        "--duration 0.0001 is shorter than two probe periods (--interval-us 250)",
    );
    refused(
        &["compare", "--preempt", "", "--peers", "none"],
        "--preempt and --peers are both empty: name at least one",
    );
    refused(&["compare", "--workload", ""], "--workload is empty: name at least one workload, or all");
    refused(&["compare", "--bh", ""], "--bh is empty: name at least one option (classic, threaded), or all");
    refused(&["latency", "--loops", "0"], "--loops 0: take at least 1 sample per probe");
    refused(&["torture", "--migrate"], "--migrate needs --cpus 2 or more (there is nowhere to migrate to)");
    refused(&["torture", "--patching", "--cpus", "1"], "--cpus 1: the patch torture needs 2 to 64 CPUs");
    refused(
        &["torture", "--patching", "--cpus", "2", "--patches", "0"],
        "--patches 0: give at least 1 (e.g. --patches 10000000)",
    );
    refused(&["torture", "--patching", "--cpus", "2", "--max-seconds", "0"], "--max-seconds 0: use 1..=86400 seconds");
    refused(
        &["trace", "--workload", "torture", "--preempt", "lazy"],
        "--workload torture with --preempt lazy: the torture runs under --preempt none (user mode) or full (kernel mode)",
    );
    refused(&["trace", "--atoms", "0"], "--atoms 0: use 1..=4096 atoms per system call");
    refused(&["trace", "--interval-us", "10"], "--interval-us 10: use 100..=1000000 microseconds");
    refused(&["trace", "--long-atom-us", "0"], "--long-atom-us 0: use 1..=1000000 microseconds");
    refused(&["trace", "--buf", "10"], "--buf 10: use 64..=16777216 events per CPU");
    refused(&["trace", "--cpus", "65"], "--cpus 65 is out of range: use 1..=64");
    refused(&["soak", "--seconds", "0"], "--seconds 0: use 1..=86400 seconds");
}

#[test]
fn a_bh_prio_that_changes_nothing_is_refused() {
    let needle = "--bh-prio 99: sets ksoftirqd's priority under bh=threaded, and no run here uses it";
    refused(&["compare", "--bh", "classic", "--bh-prio", "99"], needle);
    refused(&["compare", "--workload", "copy", "--bh-prio", "99"], needle);
    refused(&["packets", "--bh", "classic", "--bh-prio", "99"], needle);
}

#[test]
fn demo_switch_to_names_its_option_and_a_switch_to_the_same_model() {
    refused(&["demo", "--switch-to", "bogus"], "--switch-to: unknown preemption model 'bogus': choose one of none");
    refused(
        &["demo", "--preempt", "full", "--switch-to", "full"],
        "--switch-to full: the kernel already runs full (--preempt full); switch to another model",
    );
    let (code, out, err) = atomkernel(&["demo", "--preempt", "none,full", "--switch-to", "full", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("note: --switch-to full: the full run does not switch (it runs full already)"), "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
}

#[test]
fn packets_order_honours_json() {
    let (code, out, err) = atomkernel(&["packets", "--order", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(v.len(), 2, "{out}");
    assert_eq!((v[0]["bh"].as_str(), v[0]["bh_prio"].as_u64()), (Some("classic"), Some(50)));
    assert_eq!(v[1]["order"][0], "rt80", "threaded: the RT task above bh_prio first: {out}");
    assert_eq!(v[0]["order"][0], "NET_RX softirq (at irq_exit)", "{out}");
}

#[test]
fn threaded_bottom_halves_under_none_get_a_note() {
    let args = ["packets", "--preempt", "none", "--bh", "threaded", "--seconds", "0.1", "--rounds", "1", "--json"];
    let (code, out, err) = atomkernel(&args);
    assert_eq!(code, 0, "{err}");
    assert!(err.starts_with("atomkernel packets: note: bh=threaded under --preempt none:"), "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
}

#[test]
fn fuzz_and_soak_refuse_bad_options_before_running() {
    refused(&["fuzz", "--cases", "0"], "--cases 0: use 1..=");
    refused(&["fuzz", "--cpus", "5"], "--cpus 5: the fuzzer's programs run on 1..=4 CPUs");
    refused(&["fuzz", "--cpus", "0"], "--cpus 0");
    refused(&["fuzz", "--shrink", "100001"], "--shrink 100001: use 0..=100000");
    refused(&["soak", "--minutes", "0"], "--minutes 0: use 1..=1440 minutes");
    refused(&["soak", "--minutes", "1441"], "--minutes 1441");
    refused(&["soak", "--seconds", "0"], "--seconds 0");
    refused(&["soak", "--seconds", "2"], "--seconds 2: the leak check compares two samples");
}

/// A short campaign passes and says so with its seed; a short soak prints a sample line with
/// the RSS and passes.
#[test]
fn a_short_fuzz_campaign_and_a_short_soak_pass() {
    let (code, out, err) = atomkernel(&["fuzz", "--cases", "5", "--seed", "9", "--cpus", "2"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("fuzz: 5 programs (seed 9, cpus 2) passed every invariant"), "{out}");
    let (code, out, err) = atomkernel(&["soak", "--seconds", "4", "--seed", "4"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("rss_kib") && out.contains("soak: passed; RSS"), "{out}");
    assert!(out.contains("a sample every 2 s") && out.contains(" samples); no BUG"), "two samples compared: {out}");
}
