//! Boots the bare-metal lab (`image.run=lab`) under each preemption model and checks its rows:
//! every workload of the metal registry present, every probe with exactly the samples asked,
//! its figures in order and its histogram summing to them, the workers on every CPU making
//! calls; under QEMU's `-icount shift=0,sleep=off` (one instruction per virtual ns, the TSC
//! exactly 1 GHz) the `full` model's p99 below `none`'s for each workload, the patch models'
//! well below it, and two boots printing identical lines; under `patch_leaf=return` no frame
//! walked and every event armed or redirected; a bad `image.` option refused
//! before any task runs.
//!
//! **Mechanism.** The harness (`common/mod.rs`) builds the image once and boots it (killed
//! after 60 s). The one-CPU boots run under `-icount`; the two-CPU boots here (`-smp 2`,
//! `cpus=2`) run without it and check the rows' shape; `tests/lab_smp.rs` runs two CPUs
//! under `-icount` (docs/BAREMETAL.md, "The bare-metal lab").
//!
//! **Invariant.** Every check names the boot's whole serial output when it fails.

mod common;

use common::{boot_with, exit_codes, json, Boot};
use serde_json::Value;

const ICOUNT: [&str; 2] = ["-icount", "shift=0,sleep=off"];
/// The metal registry's workloads (every one but `packet`), in its order.
const WORKLOADS: [&str; 4] = ["loader", "copy", "checksum", "hog"];
/// Samples per probe in these boots.
const SAMPLES: u64 = 12;

/// The `lab` rows of a boot that must have succeeded.
fn rows(b: &Boot) -> Vec<Value> {
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::SUCCESS), "exit status; serial:\n{}", b.serial);
    let lines = json(b);
    let clock = lines.iter().find(|v| v["test"] == "clock").unwrap_or_else(|| panic!("no clock line:\n{}", b.serial));
    assert!(clock["tsc_khz"].as_u64().is_some_and(|k| k > 0), "{}", b.serial);
    let mut rows: Vec<Value> = lines.iter().filter(|v| v["test"] == "lab").cloned().collect();
    rows.iter_mut().for_each(|r| r["tsc_khz"] = clock["tsc_khz"].clone());
    rows
}

/// Boots the lab under `model` on `cpus` CPUs and checks every row (see the module's
/// description); the rows.
fn lab(extra: &[&str], model: &str, cpus: u64, options: &str) -> Option<Vec<Value>> {
    let cmdline = format!("preempt={model} cpus={cpus} image.run=lab image.samples={SAMPLES} {options}");
    let b = boot_with(extra, &cmdline)?;
    let rows = rows(&b);
    let names: Vec<&str> = rows.iter().map(|r| r["workload"].as_str().unwrap_or("")).collect();
    assert_eq!(names, WORKLOADS, "workloads; serial:\n{}", b.serial);
    for r in &rows {
        assert_eq!((r["model"].as_str(), r["cpus"].as_u64()), (Some(model), Some(cpus)), "{r}");
        let workers = r["workers"].as_array().expect("workers");
        assert_eq!(workers.len() as u64, cpus, "{r}");
        assert!(workers.iter().all(|w| w["calls"].as_u64() > Some(0) && w["units"].as_u64() > Some(0)), "{r}");
        assert!(r["calls"].as_u64() > Some(0) && r["elapsed_cycles"].as_u64() > Some(0), "{r}");
        let probes = r["probes"].as_array().expect("probes");
        let cpus_seen: Vec<u64> = probes.iter().filter_map(|p| p["cpu"].as_u64()).collect();
        assert_eq!(cpus_seen, (0..cpus).collect::<Vec<_>>(), "one probe per CPU: {r}");
        probes.iter().for_each(check_probe);
    }
    Some(rows)
}

/// A probe's samples, figures and histogram agree.
fn check_probe(p: &Value) {
    let f = |k: &str| p[k].as_u64().unwrap_or_else(|| panic!("no {k}: {p}"));
    assert_eq!(f("samples"), SAMPLES, "{p}");
    assert_eq!(f("off_cpu"), 0, "{p}");
    assert!(f("min") <= f("p50") && f("p50") <= f("p99") && f("p99") <= f("max"), "{p}");
    let hist: Vec<(u64, u64)> = (p["hist"].as_array().expect("hist").iter())
        .map(|b| (b[0].as_u64().expect("lower bound"), b[1].as_u64().expect("count")))
        .collect();
    assert_eq!(hist.iter().map(|b| b.1).sum::<u64>(), SAMPLES, "{p}");
    assert!(hist.iter().all(|&(lo, n)| n > 0 && (lo == 0 || lo.is_power_of_two())), "{p}");
    assert!(hist.windows(2).all(|w| w[0].0 < w[1].0), "{p}");
    let (first, last) = (hist[0].0, hist[hist.len() - 1].0);
    assert!(first <= f("min") && f("min") < first.max(1) * 2, "min in the first bucket: {p}");
    assert!(last <= f("max") && f("max") < last.max(1) * 2, "max in the last bucket: {p}");
}

/// The p99 of each row's one probe.
fn p99s(rows: &[Value]) -> Vec<u64> {
    rows.iter().map(|r| r["probes"][0]["p99"].as_u64().expect("p99")).collect()
}

#[test]
fn under_the_instruction_counting_clock_full_beats_none_and_two_boots_print_identical_rows() {
    let Some(none) = lab(&ICOUNT, "none", 1, "") else { return };
    let Some(full) = lab(&ICOUNT, "full", 1, "") else { return };
    for ((w, f), n) in WORKLOADS.iter().zip(p99s(&full)).zip(p99s(&none)) {
        assert!(f < n, "{w}: full's p99 {f} is not below none's {n}\nfull: {full:?}\nnone: {none:?}");
    }
    let tsc_khz = |rows: &[Value]| rows[0]["tsc_khz"].as_u64();
    assert_eq!(tsc_khz(&full), Some(1_000_000), "the TSC is exactly 1 GHz under -icount shift=0");
    let Some(again) = lab(&ICOUNT, "full", 1, "") else { return };
    assert_eq!(full, again, "two -icount boots differ");
}

#[test]
fn under_voluntary_the_lab_runs_every_workload() {
    lab(&ICOUNT, "voluntary", 1, "");
}

/// Under a patch model every workload's RT wakeup comes at an armed point, well before the
/// system call's end where `none` serves it: p99 under a third of `none`'s (a call is 64
/// atoms; loader's slowest samples land where its next point is some 50,000-71,000
/// instructions on, about a quarter of its call, the spread moving with where under `-icount`
/// the probes land). An interrupt in code the frame walk cannot leave (an asm `memcpy`
/// without CFI) arms nothing and waits for the call's end, as under `none`.
fn patch_model_serves_every_workload_at_a_point(model: &str) {
    let Some(none) = lab(&ICOUNT, "none", 1, "") else { return };
    let Some(patch) = lab(&ICOUNT, model, 1, "") else { return };
    for ((w, p), n) in WORKLOADS.iter().zip(p99s(&patch)).zip(p99s(&none)) {
        assert!(p < n / 3, "{w}: {model}'s p99 {p} is not under a third of none's {n}\n{patch:?}");
    }
    // The run's patch counters: events armed, each with its time, within the longest; none
    // under `none`.
    for (r, n) in patch.iter().zip(&none) {
        let h = &r["patch"];
        let (events, total, max) =
            (h["events"].as_u64().unwrap(), h["handler_ns"].as_u64().unwrap(), h["handler_max_ns"].as_u64().unwrap());
        assert!(events > 0 && h["sites_armed"].as_u64().unwrap() >= events, "{r}");
        assert!(max > 0 && total >= events * 100 && total <= events * max, "every event timed: {r}");
        assert_eq!(n["patch"]["events"], 0, "none arms nothing: {n}");
    }
}

#[test]
fn under_patch_int3_every_workload_is_served_at_a_point() {
    patch_model_serves_every_workload_at_a_point("patch-int3");
}

#[test]
fn under_patch_call_every_workload_is_served_at_a_point() {
    patch_model_serves_every_workload_at_a_point("patch-call");
}

/// Under `patch_leaf=return` no frame is walked: an event whose interrupted function reaches
/// no point (each workload's inner copy or sum) redirects that function's return instead,
/// and every event either armed a point or redirected a return.
#[test]
fn under_patch_leaf_return_no_frame_is_walked_and_a_leaf_is_served_at_its_return() {
    let Some(rows) = lab(&ICOUNT, "patch-call", 1, "patch_leaf=return") else { return };
    for r in &rows {
        let h = &r["patch"];
        let n = |k: &str| h[k].as_u64().unwrap_or_else(|| panic!("no {k}: {r}"));
        assert!(n("events") > 0 && n("frames_walked") == 0, "{r}");
        assert!(n("redirects") > 0 && n("sites_armed") + n("redirects") >= n("events"), "{r}");
    }
    // under `walk` each of these events would walk a frame; here some workload's every event
    // redirected a leaf's return and armed nothing
    let leaves_only = |r: &Value| r["patch"]["sites_armed"] == 0 && r["patch"]["redirects"] == r["patch"]["events"];
    assert!(rows.iter().any(leaves_only), "{rows:?}");
}

#[test]
fn on_two_cpus_under_full_each_cpu_has_its_worker_and_probe() {
    lab(&["-smp", "2"], "full", 2, "image.size=8 image.interval_us=1000");
}

#[test]
fn on_two_cpus_under_patch_call_each_cpu_has_its_worker_and_probe() {
    lab(&["-smp", "2"], "patch-call", 2, "image.size=8 image.interval_us=1000");
}

/// The `boot_error` of a refused boot.
fn refused(cmdline: &str) -> Option<String> {
    let b = boot_with(&[], cmdline)?;
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::FAILED), "exit status; serial:\n{}", b.serial);
    assert!(!b.serial.contains("\"test\":\"clock\""), "refused after the lab began:\n{}", b.serial);
    let line = b.serial.lines().find(|l| l.contains("boot_error")).unwrap_or_else(|| panic!("{}", b.serial));
    let v: Value = serde_json::from_str(line.trim_end_matches('\r')).expect("a JSON line");
    Some(v["boot_error"].as_str().expect("a string").to_owned())
}

#[test]
fn bad_lab_options_are_refused_naming_the_option_before_any_task_runs() {
    let Some(e) = refused("preempt=full image.run=lab image.samples=0") else { return };
    assert!(e.contains("image.samples=0") && e.contains("1..=100000"), "{e}");
    let Some(e) = refused("preempt=full image.run=lab image.workloads=packet") else { return };
    assert!(e.contains("image.workloads=packet") && e.contains("host thread") && e.contains("loader, copy"), "{e}");
}
