//! `atomkernel qemu`: bad input refused before any build, naming the option; and the
//! bare-metal demo really booted under the exact clock (skipped where QEMU is missing).

use std::process::Command;

/// Runs `atomkernel ARGS` with `env` set; (exit code, stdout, stderr).
fn atomkernel_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_atomkernel"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// True (after saying so through `hostlab::testing::skip`) where QEMU is missing.
fn qemu_missing() -> bool {
    qemu::find_qemu().map_err(|why| hostlab::testing::skip(&why)).is_err()
}

/// What `atomkernel qemu` prints before it builds the image.
const BUILDING: &str = "atomkernel qemu: the image, in";

/// Exit 2, the error naming `option` and containing `what`, and no build started.
fn refused(args: &[&str], env: &[(&str, &str)], option: &str, what: &str) {
    let (code, out, err) = atomkernel_env(args, env);
    assert_eq!(code, 2, "{args:?}: {out}{err}");
    assert!(err.contains(option) && err.contains(what), "{args:?}: the error names {option} and {what:?}: {err}");
    assert!(!err.contains(BUILDING) && out.is_empty(), "{args:?}: refused before any build: {err}");
}

#[test]
fn an_unknown_accelerator_is_refused_with_the_ones_there_are() {
    refused(&["qemu", "demo", "--accel", "xen"], &[], "--accel", "[possible values: tcg, kvm]");
}

#[test]
fn zero_cpus_are_refused_with_the_range() {
    refused(&["qemu", "demo", "--cpus", "0"], &[], "--cpus 0", "use 1..=64");
    refused(&["qemu", "check", "--cpus", "2"], &[], "--cpus 2", "use --cpus 1");
}

#[test]
fn a_missing_qemu_names_the_package_to_install() {
    refused(&["qemu", "demo"], &[("QEMU", "/nonexistent")], "QEMU=/nonexistent", "apt-get install qemu-system-x86");
}

#[test]
fn icount_under_kvm_is_refused() {
    refused(&["qemu", "demo", "--accel", "kvm", "--icount"], &[], "--icount", "use --accel tcg");
}

/// Without a usable hardware KVM (no `/dev/kvm`, no access to it, or a CPU without VMX or
/// SVM, as this project's VM, whose `/dev/kvm` is `kvm_pvm`'s) `--accel kvm` is refused before
/// any build, naming the option and `--accel tcg`.
#[test]
fn kvm_without_a_usable_dev_kvm_is_refused() {
    if qemu::check_kvm().is_ok() {
        hostlab::testing::skip("hardware KVM is usable here: nothing to refuse (the check: qemu's unit tests)");
        return;
    }
    refused(&["qemu", "demo", "--accel", "kvm"], &[], "--accel kvm", "use --accel tcg");
}

/// The demo under `-icount` on one CPU: `full` preempts inside the atom the interrupt came in,
/// on CPU 0, the image's checks held; and a second boot prints the same JSON, byte for byte.
#[test]
fn the_bare_metal_demo_places_the_rt_task_and_two_icount_runs_print_the_same_json() {
    if qemu_missing() {
        return;
    }
    let args = ["qemu", "demo", "--preempt", "full", "--icount", "--json"];
    let (code, first, err) = atomkernel_env(&args, &[]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 1, "one object per model: {first}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(
        (v["substrate"].as_str(), v["clock"].as_str(), v["accel"].as_str()),
        (Some("qemu"), Some("icount"), Some("tcg"))
    );
    assert_eq!(
        (v["model"].as_str(), v["place"].as_str(), v["ok"].as_bool()),
        (Some("full"), Some("mid_atom"), Some(true)),
        "{v}"
    );
    assert_eq!(
        (v["irq_cpu"].as_u64(), v["rt_cpu"].as_u64(), v["status"].as_i64()),
        (Some(0), Some(0), Some(33)),
        "{v}"
    );
    let (atom, atoms) = (v["rt_ran_after_atom"].as_u64().unwrap(), v["atoms"].as_u64().unwrap());
    assert!(atom >= 1 && atom < atoms, "inside an atom, not at the system call's exit: {v}");
    assert!(v["rt_wait_ns"].as_u64().unwrap() < 1_000_000, "well inside the atom's 1 ms: {v}");
    let (code, second, err) = atomkernel_env(&args, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(first, second, "-icount: two boots, the same figures");
}

/// The torture on two CPUs: the SMP scenario's boot runs it on CPU 1 (an AP), in user and,
/// under `full`, kernel mode, every row preempted and nothing lost.
#[test]
fn the_bare_metal_torture_on_two_cpus_runs_on_the_ap_and_loses_no_register() {
    if qemu_missing() {
        return;
    }
    let args = ["qemu", "torture", "--preempt", "full", "--cpus", "2", "--icount", "--json"];
    let (code, out, err) = atomkernel_env(&args, &[]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let modes: Vec<&str> = rows.iter().map(|r| r["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, ["user", "kernel"], "{out}");
    for r in &rows {
        assert_eq!(
            (r["cpu"].as_u64(), r["register_mismatches"].as_u64(), r["ok"].as_bool()),
            (Some(1), Some(0), Some(true)),
            "{r}"
        );
        assert!(r["preempted_calls"].as_u64() >= Some(20), "{r}");
    }
}

#[test]
fn patch_sync_is_refused_without_a_patch_model_and_with_a_value_there_is_not() {
    refused(
        &["qemu", "demo", "--preempt", "full", "--patch-sync", "ipi"],
        &[],
        "--patch-sync ipi",
        "no run here uses one",
    );
    refused(&["qemu", "demo", "--patch-sync", "nmi"], &[], "--patch-sync nmi", "choose one of none");
}

/// `patch_sync=ipi` on two CPUs: Linux's text_poke_bp protocol, each SYNC_CORE round an NMI to
/// the other CPU; the RT task still runs at the armed point on CPU 1.
#[test]
fn the_bare_metal_demo_on_two_cpus_with_patch_sync_ipi_serves_at_the_point_after_nmi_rounds() {
    if qemu_missing() {
        return;
    }
    let args = [
        "qemu",
        "demo",
        "--preempt",
        "patch-int3,patch-call",
        "--cpus",
        "2",
        "--patch-sync",
        "ipi",
        "--icount",
        "--json",
    ];
    let (code, out, err) = atomkernel_env(&args, &[]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2, "{out}");
    for (r, rounds) in rows.iter().zip([2, 4]) {
        assert_eq!(
            (r["place"].as_str(), r["rt_cpu"].as_u64(), r["ok"].as_bool()),
            (Some("point"), Some(1), Some(true)),
            "{r}"
        );
        assert_eq!((r["patch_sync"].as_str(), r["sync_core_rounds"].as_u64()), (Some("ipi"), Some(rounds)), "{r}");
    }
}

#[test]
fn the_bound_check_is_refused_outside_the_patch_models_and_under_kvm() {
    refused(&["qemu", "check", "--preempt", "full"], &[], "--preempt full", "the patch models");
    refused(&["qemu", "check", "--samples", "0"], &[], "--samples 0", "use 1..=10000");
    refused(&["qemu", "check", "--workload", "packet"], &[], "--workload", "[possible values: loader");
    refused(&["qemu", "check", "--accel", "kvm"], &[], "--accel kvm", "use --accel tcg");
}

/// The bound check on bare metal: the shipped hog within its static bound on every sample,
/// the image's broken workload (`preempt_disable` across its points) over it, each violation
/// named by its source line; exit 2 because of the violations.
#[test]
fn the_bound_check_passes_the_hog_and_names_the_broken_workloads_lines() {
    if qemu_missing() {
        return;
    }
    let args =
        ["qemu", "check", "--preempt", "patch-call", "--workload", "hog,broken-hog", "--samples", "40", "--json"];
    let (code, out, err) = atomkernel_env(&args, &[]);
    assert_eq!(code, 2, "violations fail the command: {out}{err}");
    assert!(err.contains("over their static bound"), "{err}");
    let rows: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2, "{out}");
    let (hog, broken) = (&rows[0], &rows[1]);
    assert_eq!((hog["workload"].as_str(), hog["clock"].as_str()), (Some("hog"), Some("icount")), "{hog}");
    assert_eq!((hog["checked"].as_u64(), hog["violations"].as_u64()), (Some(40), Some(0)), "{hog}");
    assert!(broken["violations"].as_u64() > Some(0), "{broken}");
    for v in broken["violation_list"].as_array().expect("violation_list") {
        assert!(v["measured"].as_u64() > v["bound"].as_u64(), "{v}");
        let place = v["place"].as_str().unwrap_or_default();
        assert!(place.contains(" at crates/") && place.contains(".rs:"), "named by its file:line: {v}");
    }
}
