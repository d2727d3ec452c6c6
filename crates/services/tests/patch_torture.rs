//! The cross-modifying-code torture in a short form: sites executed on some CPUs while another
//! arms and disarms them, as int3 and as call, with every execution checked.

use services::patch_torture;
use std::sync::Mutex;

/// One run at a time: each reads every site's code bytes at its end.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn short_run(cpus: usize) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let r = patch_torture::run(cpus, 20_000, 120).expect("the torture runs");
    assert!(r.ok(), "cpus={cpus}: {r:?}");
    assert_eq!(r.patches, 20_000, "cpus={cpus}: every patch was written: {r:?}");
    assert!(r.executions > 0, "cpus={cpus}: the executors ran: {r:?}");
    assert!(r.int3_hits + r.call_hits <= r.executions, "cpus={cpus}: more hits than executions: {r:?}");
}

#[test]
fn patching_while_two_cpus_execute_the_site_never_mis_executes() {
    short_run(2);
}

#[test]
fn patching_while_four_cpus_execute_the_site_never_mis_executes() {
    short_run(4);
}

#[test]
fn bad_patching_options_are_refused_before_any_work() {
    let e = patch_torture::run(1, 10, 10).unwrap_err();
    assert!(e.contains("--cpus 1"), "{e}");
    let e = patch_torture::run(2, 0, 10).unwrap_err();
    assert!(e.contains("--patches 0"), "{e}");
    let e = patch_torture::run(2, 10, 0).unwrap_err();
    assert!(e.contains("--max-seconds 0"), "{e}");
}
