//! Boots the bare-metal lab (`image.run=lab`) on two CPUs under QEMU's instruction counting
//! clock (`-smp 2 -icount shift=0,sleep=off`) and checks that it runs to its end, exactly:
//! every workload's row present, both workers making calls, both probes with every sample
//! taken on their own CPU, and two boots of the same build printing identical lines.
//!
//! **Mechanism.** Under `-icount` QEMU 7.2 runs the vCPUs round-robin on one host thread and
//! gives each the instructions up to the next timer deadline; it moves to the next vCPU only
//! when the running one leaves its slice (`pause`, `hlt`, a timer write that becomes the
//! earliest deadline). A worker that never left its slice on CPU 0 starved CPU 1, whose tick
//! handler's own timer write ended its slice each time: the boot stopped at the first
//! workload (docs/BAREMETAL.md, "The bare-metal lab"). The harness (`common/mod.rs`) builds
//! the image once and boots it, killed after 60 s, so the old image fails here on the timeout.
//!
//! **Invariant.** Every check names the boot's whole serial output when it fails.

mod common;

use common::{boot_with, exit_codes, json, result, Boot};
use serde_json::Value;

const SMP_ICOUNT: [&str; 4] = ["-smp", "2", "-icount", "shift=0,sleep=off"];
/// The metal registry's workloads (every one but `packet`), in its order.
const WORKLOADS: [&str; 4] = ["loader", "copy", "checksum", "hog"];
/// Samples per probe in these boots.
const SAMPLES: u64 = 16;
const CPUS: u64 = 2;

/// The clock line and the `lab` rows of a boot that must have succeeded.
fn lines(b: &Boot) -> (Value, Vec<Value>) {
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::SUCCESS), "exit status; serial:\n{}", b.serial);
    let json = json(b);
    let clock = json.iter().find(|v| v["test"] == "clock").cloned();
    let clock = clock.unwrap_or_else(|| panic!("no clock line:\n{}", b.serial));
    (clock, json.into_iter().filter(|v| v["test"] == "lab").collect())
}

/// A probe took every sample on its CPU, and its figures and histogram agree.
fn check_probe(p: &Value, cpu: u64) {
    let f = |k: &str| p[k].as_u64().unwrap_or_else(|| panic!("no {k}: {p}"));
    assert_eq!((f("cpu"), f("samples"), f("off_cpu")), (cpu, SAMPLES, 0), "{p}");
    assert!(f("min") <= f("p50") && f("p50") <= f("p99") && f("p99") <= f("max"), "{p}");
    let counts: Vec<u64> =
        (p["hist"].as_array().expect("hist").iter()).map(|b| b[1].as_u64().expect("count")).collect();
    assert_eq!(counts.iter().sum::<u64>(), SAMPLES, "{p}");
}

/// Boots the lab under `model` on two CPUs under `-icount` and checks every row; the boot's
/// JSON lines, `None` (after a skip) without QEMU.
fn lab(model: &str) -> Option<Vec<Value>> {
    lab_with(model, "").map(|(_, v)| v)
}

/// [`lab`] with `options` added; the boot too.
fn lab_with(model: &str, options: &str) -> Option<(Boot, Vec<Value>)> {
    let cmdline = format!("preempt={model} cpus={CPUS} image.run=lab image.samples={SAMPLES} image.size=8 {options}");
    let b = boot_with(&SMP_ICOUNT, &cmdline)?;
    let (clock, rows) = lines(&b);
    assert_eq!(clock["tsc_khz"].as_u64(), Some(1_000_000), "the TSC is exactly 1 GHz under -icount shift=0");
    let names: Vec<&str> = rows.iter().map(|r| r["workload"].as_str().unwrap_or("")).collect();
    assert_eq!(names, WORKLOADS, "every workload's row; serial:\n{}", b.serial);
    for r in &rows {
        assert_eq!((r["model"].as_str(), r["cpus"].as_u64()), (Some(model), Some(CPUS)), "{r}");
        let workers = r["workers"].as_array().expect("workers");
        let cpus: Vec<u64> = workers.iter().filter_map(|w| w["cpu"].as_u64()).collect();
        assert_eq!(cpus, [0, 1], "one worker per CPU: {r}");
        assert!(workers.iter().all(|w| w["calls"].as_u64() > Some(0) && w["units"].as_u64() > Some(0)), "{r}");
        let probes = r["probes"].as_array().expect("probes");
        assert_eq!(probes.len() as u64, CPUS, "one probe per CPU: {r}");
        probes.iter().zip(0..).for_each(|(p, cpu)| check_probe(p, cpu));
    }
    let mut all = vec![clock];
    all.extend(rows);
    Some((b, all))
}

fn runs_to_its_end_and_two_boots_are_identical(model: &str) {
    let Some(first) = lab(model) else { return };
    let Some(second) = lab(model) else { return };
    assert_eq!(first, second, "two -smp 2 -icount boots under {model} differ");
}

#[test]
fn on_two_cpus_under_icount_full_runs_every_workload_and_two_boots_are_identical() {
    runs_to_its_end_and_two_boots_are_identical("full");
}

#[test]
fn on_two_cpus_under_icount_patch_call_runs_every_workload_and_two_boots_are_identical() {
    runs_to_its_end_and_two_boots_are_identical("patch-call");
}

/// `patch_sync=ipi` while both CPUs run workloads: every arming and disarming makes its
/// SYNC_CORE rounds, each an NMI the other CPU answers (none lost: the boot ends), every
/// event still served at a point, and no NMI without a round.
#[test]
fn on_two_cpus_patch_sync_ipi_answers_every_sync_core_round_while_both_cpus_work() {
    let Some((b, rows)) = lab_with("patch-call", "patch_sync=ipi") else { return };
    for r in rows.iter().filter(|r| r["test"] == "lab") {
        let p = &r["patch"];
        assert!(p["events"].as_u64() > Some(0) && p["fallbacks"].as_u64() == Some(0), "{r}");
    }
    let sync = result(&b, "sync_core");
    // patch-call: int3 first, then the call, each way: 4 rounds per event at least once
    assert!(sync["rounds"].as_u64() >= Some(4), "{sync}");
    assert!(
        sync["core_rounds"].as_u64() <= sync["rounds"].as_u64(),
        "the core counted no round the arch did not make: {sync}"
    );
    assert_eq!(sync["stray_nmis"], 0, "{sync}");
}
