//! The fuzzer of kernel programs, bounded: a few dozen random programs under every model on 1
//! to 4 CPUs must pass every invariant (`services::fuzz`), and every failure the fuzzer found
//! stays here as a regression test. One program at a time: the site check reads every site's
//! code bytes, which another instance of this process could be patching.

use services::fuzz::{campaign, check_program, CampaignConfig, Program};
use std::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn a_bounded_campaign_of_random_programs_passes_every_invariant() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = CampaignConfig { cases: 32, seed: 16, cpus: None, max_shrink_iters: 64 };
    let r = campaign(&cfg, &|_| {}).unwrap();
    if let Some(f) = r.failure {
        panic!(
            "program {} of seed 16 failed: {}\nminimal program: {}",
            f.case,
            f.reason,
            serde_json::to_string(&f.program).unwrap()
        );
    }
    assert_eq!(r.runs, 32);
}

/// Regression programs: each one a failure the fuzzer found (JSON as `atomkernel fuzz` prints
/// it), with the fix that made it pass named above it.
fn regression(json: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let prog: Program = serde_json::from_str(json).unwrap();
    check_program(&prog).unwrap_or_else(|e| panic!("{e}"));
}

/// Found by the first campaign (seed 16, program 1): `init` ran on a CPU that came up first
/// and registered a device on CPU 2 before CPU 2 was up (`Device::register_on` panicked 'CPU
/// is up'). Fixed in boot.rs: no CPU runs a task before every CPU is online.
#[test]
fn init_uses_every_cpu_at_once() {
    regression(
        r#"{"cpus":4,"hz":250,"model":"cpulock","bh":"classic","devices":[{"cpu":2,"action":{"Signal":0}}],"tasks":[{"pol":{"Normal":-1},"cpus":10,"ops":[{"User":{"reps":8}},{"BhOff":{"n":4,"reps":5,"raise":false}}]},{"pol":{"Fifo":96},"cpus":1,"ops":[{"Signal":0},{"IrqAt":{"dev":0,"us":495}},{"User":{"reps":20}},"Softirq",{"Sleep":{"us":851}}]},{"pol":{"Normal":5},"cpus":7,"ops":["Join"]}]}"#,
    );
}

/// Found by the bounded campaign (seed 16, program 12): under patch-call on 3 CPUs, an armed
/// point reached in a preemptible task read its CPU's event unmasked ('BUG: using
/// smp_processor_id() in preemptible code' at model/patch/mod.rs). Fixed there: the point's
/// decision is made with IRQs masked.
#[test]
fn an_armed_point_in_a_preemptible_task_on_smp() {
    let n: usize = std::env::var("FUZZ_REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    for _ in 0..n {
        regression(
            r#"{"cpus":3,"hz":1000,"model":"patch-call","bh":"threaded","devices":[{"cpu":0,"action":"Softirq"},{"cpu":0,"action":{"Tasklet":{"hi":true}}}],"tasks":[{"pol":{"Fifo":13},"cpus":null,"ops":["Join",{"Irq":0},{"Atoms":{"n":4,"reps":21}}]},{"pol":{"Rr":37},"cpus":null,"ops":[{"Sleep":{"us":1009}},{"User":{"reps":16}},{"Spawn":{"pol":{"Rr":88},"ops":[{"Atoms":{"n":4,"reps":12}},{"Tasklet":{"hi":true}},"Softirq"]}}]},{"pol":{"Rr":87},"cpus":null,"ops":[{"Irq":0},{"Atoms":{"n":4,"reps":9}}]}]}"#,
        );
    }
}
