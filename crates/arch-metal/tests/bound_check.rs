//! Boots `image.run=bound-check` and `bound-calibrate` under QEMU's `-icount shift=0,sleep=off`
//! (the TSC counts instructions) and checks the static bound against every sample: the
//! shipped workloads and the image's control `direct-hog` under `patch-call` and `patch-int3`
//! take samples, none above its bound, the control's every sample bounded and its worst
//! within 10% of its bound, and the run succeeds (under `patch_leaf=return` too, most samples
//! served at a redirected return); the deliberately broken `broken-hog` (preemption disabled across its
//! points) is caught, each violation with its RIP resolvable to `file:line` in the image's
//! line tables and its measured count above its bound, and the run fails; the gate's
//! constant matches the instructions counted under `-icount` exactly; two boots print the
//! same lines.
//!
//! **Mechanism.** The harness (`common/mod.rs`) builds the image once and boots it (killed
//! after 60 s); `addr2line -e IMAGE` (binutils) resolves the violations' RIPs.
//!
//! **Invariant.** Every check names the boot's whole serial output when it fails.

mod common;

use common::{boot_with, exit_codes, image, results, Boot};
use serde_json::Value;
use std::process::Command;

const ICOUNT: [&str; 2] = ["-icount", "shift=0,sleep=off"];
/// The metal registry's workloads, in its order, and the image's control: the hog's atoms by
/// direct calls (whose bound the analysis knows from every instruction).
const WORKLOADS: [&str; 5] = ["loader", "copy", "checksum", "hog", "direct-hog"];
/// Samples per workload in the shipped boots, and in the broken one.
const SAMPLES: u64 = 60;
const BROKEN_SAMPLES: u64 = 20;

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("no {k}: {v}"))
}

/// The `bound_check` rows of one boot of the check under `model`.
fn check(model: &str, options: &str) -> Option<(Boot, Vec<Value>)> {
    let cmdline = format!("preempt={model} image.run=bound-check image.seed=7 {options}");
    let b = boot_with(&ICOUNT, &cmdline)?;
    let rows = results(&b, "bound_check");
    for r in &rows {
        assert_eq!(r["model"], model, "{r}");
        assert_eq!(n(r, "checked") + n(r, "unknown"), n(r, "samples"), "every sample checked or unknown: {r}");
        assert_eq!(n(r, "negative"), 0, "no accounting below zero: {r}");
        let reasons: u64 =
            r["unknown_reasons"].as_array().expect("reasons").iter().map(|x| x[1].as_u64().unwrap()).sum();
        assert_eq!(reasons, n(r, "unknown"), "every unknown has its reason: {r}");
        // and each reason the address of the first code found without a bound for it
        let named: Vec<&str> = r["unknown_reasons"].as_array().unwrap().iter().filter_map(|x| x[0].as_str()).collect();
        let at: Vec<&str> =
            r["unknown_at"].as_array().expect("unknown_at").iter().filter_map(|x| x[0].as_str()).collect();
        assert_eq!(at, named, "{r}");
        let (lo, hi) = text_range();
        for x in r["unknown_at"].as_array().unwrap() {
            let at = u64::from_str_radix(x[1].as_str().expect("an address").trim_start_matches("0x"), 16).unwrap();
            assert!((lo..hi).contains(&at), "{at:#x} is in the image's text: {r}");
        }
    }
    Some((b, rows))
}

/// The shipped workloads under `model`: samples taken, none above its bound, SUCCESS.
fn shipped(model: &str) {
    let opts = format!("image.samples={SAMPLES} image.workloads={}", WORKLOADS.join(","));
    let Some((b, rows)) = check(model, &opts) else { return };
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::SUCCESS), "exit status; serial:\n{}", b.serial);
    let names: Vec<&str> = rows.iter().map(|r| r["workload"].as_str().unwrap_or("")).collect();
    assert_eq!(names, WORKLOADS, "serial:\n{}", b.serial);
    for r in &rows {
        assert_eq!(n(r, "violations"), 0, "{r}");
        assert!(n(r, "samples") > 0, "{r}");
        // The other model's mechanism never serves.
        let other = if model == "patch-call" { "int3" } else { "call" };
        assert_eq!(r["kinds"][other].as_u64(), Some(0), "{r}");
    }
    assert!(results(&b, "bound_violation").is_empty(), "serial:\n{}", b.serial);
    // The shipped hog (every atom followed by a point, the last one too) and the control:
    // every sample has a known bound, and the worst lands close to it (the accounting is
    // exact, not merely small). The one exception a build may land on: an interrupt in
    // `kernel_call` between a point and its next `atom()`, a call through the `dyn Atoms`
    // vtable (`IndirectCall`); the control calls its atoms directly and has none.
    for r in [&rows[3], &rows[4]] {
        let unknown = n(r, "unknown");
        let vtable = r["unknown_reasons"].as_array().unwrap().iter().all(|x| x[0] == "IndirectCall");
        assert!(unknown == 0 || (vtable && unknown <= 2), "{r}");
        let ratio = r["max_ratio"].as_f64().expect("max_ratio");
        assert!(ratio > 0.9 && ratio <= 1.0, "{r}");
    }
    assert_eq!(n(&rows[4], "checked"), SAMPLES, "{}", rows[4]);
    // copy's page copies are `rep movsb`: an interrupt on one is bounded by the iterations
    // its rcx had left (`Bounds::from_rep`), and the worst sample meets its bound exactly
    let copy = &rows[1];
    assert!(n(copy, "checked") * 10 >= n(copy, "samples") * 9, "most of copy's samples land in a rep: {copy}");
    let ratio = copy["max_ratio"].as_f64().expect("max_ratio");
    assert!(ratio > 0.9 && ratio <= 1.0, "{copy}");
    // checksum's page is an array (its loop count is in the code) and the GOT is read-only
    // (the precompiled core's calls through it resolve): every sample bounded, the worst at it
    let csum = &rows[2];
    assert_eq!(n(csum, "checked"), n(csum, "samples"), "{csum}");
    let ratio = csum["max_ratio"].as_f64().expect("max_ratio");
    assert!(ratio > 0.9 && ratio <= 1.0, "{csum}");
    // loader: its relocation atoms are bounded (the open-ended jump table of its stages, its
    // loop of at most RELOCS_PER_ATOM rounds, counted through LLVM's copied offset and the
    // test duplicated onto each latch, its errors returned as data); its copies of run-time
    // lengths and its symbol resolution are not
    let loader = &rows[0];
    assert!(n(loader, "checked") * 4 >= n(loader, "samples") * 3, "three in four at least: {loader}");
    let ratio = loader["max_ratio"].as_f64().expect("max_ratio");
    assert!(ratio > 0.9 && ratio <= 1.0, "{loader}");
    let samples: u64 = rows.iter().map(|r| n(r, "samples")).sum();
    let checked: u64 = rows.iter().map(|r| n(r, "checked")).sum();
    assert!(samples >= 150, "samples taken: {samples}; serial:\n{}", b.serial);
    eprintln!("{model}: {samples} samples served by a point, {checked} with a known bound, 0 violations");
    for r in &rows {
        eprintln!("  {r}");
    }
}

#[test]
fn shipped_workloads_within_the_bound_under_patch_call() {
    shipped("patch-call");
}

#[test]
fn shipped_workloads_within_the_bound_under_patch_int3() {
    shipped("patch-int3");
}

/// Under `patch_leaf=return` an event whose interrupted function reaches no point is served
/// at that function's return, and the bound of such a sample is that frame's alone (to its
/// return): every sample within it, most served at a redirected return.
#[test]
fn shipped_workloads_within_the_bound_under_patch_leaf_return() {
    let opts = "patch_leaf=return image.samples=30 image.workloads=loader,copy,checksum";
    let Some((b, rows)) = check("patch-call", opts) else { return };
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::SUCCESS), "exit status; serial:\n{}", b.serial);
    assert_eq!(rows.len(), 3, "serial:\n{}", b.serial);
    for r in &rows {
        assert_eq!(n(r, "violations"), 0, "{r}");
        assert!(n(r, "checked") > 0, "{r}");
        assert_eq!(r["kinds"]["int3"].as_u64(), Some(0), "{r}");
    }
    let returns: u64 = rows.iter().map(|r| r["kinds"]["return"].as_u64().unwrap_or(0)).sum();
    let samples: u64 = rows.iter().map(|r| n(r, "samples")).sum();
    assert!(returns * 2 > samples, "most samples served at a redirected return: {rows:?}");
}

/// The image's text, `__text_start..__text_end` (`nm`).
fn text_range() -> (u64, u64) {
    let out = Command::new("nm").arg(image()).output().expect("nm (binutils)");
    let syms = String::from_utf8_lossy(&out.stdout);
    let at = |name: &str| {
        syms.lines()
            .find_map(|l| l.strip_suffix(name).and_then(|l| u64::from_str_radix(l.split(' ').next()?, 16).ok()))
            .unwrap_or_else(|| panic!("{name} in the image's symbols"))
    };
    (at(" __text_start"), at(" __text_end"))
}

/// `file:line` of `rip` in the image (`addr2line`), or `None` if unresolved.
fn file_line(rip: &str) -> Option<String> {
    let out = Command::new("addr2line").arg("-e").arg(image()).arg(rip).output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !s.starts_with("??") && s.contains(':')).then_some(s)
}

#[test]
fn broken_hog_is_caught_with_rip_file_line_and_figures() {
    for model in ["patch-call", "patch-int3"] {
        let opts = format!("image.workloads=broken-hog image.samples={BROKEN_SAMPLES}");
        let Some((b, rows)) = check(model, &opts) else { return };
        assert_eq!(b.status, exit_codes::qemu_status(exit_codes::FAILED), "exit status; serial:\n{}", b.serial);
        assert_eq!(rows.len(), 1, "serial:\n{}", b.serial);
        let r = &rows[0];
        assert_eq!(r["workload"], "broken-hog", "{r}");
        assert!(n(r, "violations") > 0 && n(r, "checked") > 0, "{r}");
        let violations = results(&b, "bound_violation");
        assert_eq!(violations.len() as u64, n(r, "violations").min(16), "serial:\n{}", b.serial);
        for v in &violations {
            let rip = v["rip"].as_str().expect("rip");
            assert!(rip.starts_with("0x"), "{v}");
            assert!(n(v, "measured") > n(v, "bound"), "{v}");
            assert!(["call", "int3", "return"].contains(&v["kind"].as_str().unwrap_or("")), "{v}");
            let at = file_line(rip).unwrap_or_else(|| panic!("{rip} not resolved by addr2line: {v}"));
            eprintln!("{model}: violation at {rip} {at}: measured {} > bound {}", n(v, "measured"), n(v, "bound"));
        }
    }
}

#[test]
fn the_gate_constant_matches_icount_exactly() {
    let Some(b) = boot_with(&ICOUNT, "preempt=none image.run=bound-calibrate") else { return };
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::SUCCESS), "exit status; serial:\n{}", b.serial);
    let c = &results(&b, "bound_calibrate")[0];
    assert_eq!(n(c, "exact_rounds"), n(c, "rounds"), "{c}");
    assert_eq!(n(c, "residual_abs_sum"), 0, "{c}");
    assert!(n(c, "irqs") > 0, "the loop took interrupts: {c}");
    assert_eq!(n(c, "gate"), n(c, "gate_pre") + n(c, "gate_post"), "{c}");
    eprintln!("{c}");
}

#[test]
fn two_boots_print_the_same_samples() {
    let opts = "image.workloads=hog,broken-hog image.samples=12";
    let Some((a, ra)) = check("patch-call", opts) else { return };
    let Some((b, rb)) = check("patch-call", opts) else { return };
    assert_eq!(ra, rb, "first:\n{}\nsecond:\n{}", a.serial, b.serial);
    assert_eq!(results(&a, "bound_violation"), results(&b, "bound_violation"));
    assert!(!ra.is_empty());
}

#[test]
fn bad_options_are_refused_by_name() {
    for (cmdline, names) in [
        ("preempt=full image.run=bound-check", "preempt=full"),
        ("preempt=patch-call image.run=bound-check image.workloads=nope", "image.workloads=nope"),
        ("preempt=patch-call image.run=bound-check image.samples=0", "image.samples=0"),
    ] {
        let Some(b) = boot_with(&[], cmdline) else { return };
        assert_eq!(b.status, exit_codes::qemu_status(exit_codes::FAILED), "{cmdline}: serial:\n{}", b.serial);
        let err =
            b.serial.lines().find(|l| l.contains("boot_error")).unwrap_or_else(|| panic!("{cmdline}:\n{}", b.serial));
        assert!(err.contains(names) && (err.contains("use") || err.contains("choose")), "{cmdline}: {err}");
    }
}
