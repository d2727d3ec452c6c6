//! The cross-modifying-code torture in a short form: sites executed on some CPUs while another
//! arms and disarms them, as int3 and as call, with every execution checked.

use kernel::PatchSync;
use lab::patch_torture;
use std::sync::Mutex;

/// One run at a time: each reads every site's code bytes at its end.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn short_run(cpus: usize) {
    let r = checked_run(cpus, 20_000, PatchSync::None);
    assert_eq!(r.sync_rounds, 0, "patch_sync=none makes no SYNC_CORE round: {r:?}");
}

fn checked_run(cpus: usize, patches: u64, sync: PatchSync) -> patch_torture::PatchTortureReport {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let r = patch_torture::run(cpus, patches, 120, sync).expect("the torture runs");
    assert!(r.ok(), "cpus={cpus}: {r:?}");
    assert!(r.patches >= patches, "cpus={cpus}: every patch was written: {r:?}");
    assert!(r.executions > 0, "cpus={cpus}: the executors ran: {r:?}");
    assert!(r.int3_hits + r.call_hits <= r.executions, "cpus={cpus}: more hits than executions: {r:?}");
    r
}

/// `patch_sync=ipi` (Linux's `text_poke_bp` protocol): as correct, and every byte change made
/// with its rounds. The one patcher alternates an `int3` arming and disarming (one round each:
/// the byte goes straight to or from `cc`) with a `call` arming and disarming (two rounds
/// each: `cc` first, then the final byte).
#[test]
fn patching_with_text_poke_bp_rounds_never_mis_executes_and_counts_its_rounds() {
    let r = checked_run(2, 4_000, PatchSync::Ipi);
    assert_eq!(r.patch_sync, "ipi");
    let pairs = r.patches / 2; // arm + disarm, int3 first
    assert_eq!(r.sync_rounds, 2 * pairs.div_ceil(2) + 4 * (pairs / 2), "{r:?}");
}

#[test]
fn patching_while_two_cpus_execute_the_site_never_mis_executes() {
    short_run(2);
}

/// On 4 CPUs two of them patch the site at once; meanwhile a host thread reads
/// `/proc/self/maps` over and over: no mapping is ever writable and executable.
#[test]
fn two_cpus_patching_while_two_execute_never_mis_execute_nor_map_wx() {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let watcher = std::thread::spawn(move || {
        let (mut seen, mut looks) = (Vec::new(), 0u64);
        while !s.load(std::sync::atomic::Ordering::Acquire) {
            let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
            seen.extend(
                maps.lines()
                    .filter(|l| l.split_whitespace().nth(1).is_some_and(|p| p.contains('w') && p.contains('x')))
                    .map(String::from),
            );
            looks += 1;
        }
        (seen, looks)
    });
    short_run(4);
    stop.store(true, std::sync::atomic::Ordering::Release);
    let (seen, looks) = watcher.join().unwrap();
    assert!(looks > 0, "the watcher looked");
    assert!(seen.is_empty(), "W+X mappings seen while CPUs patched: {seen:?}");
}

#[test]
fn bad_patching_options_are_refused_before_any_work() {
    let e = patch_torture::run(1, 10, 10, PatchSync::None).unwrap_err();
    assert!(e.contains("cpus=1: the patch torture needs 2 to 64 CPUs"), "{e}");
    let e = patch_torture::run(2, 0, 10, PatchSync::None).unwrap_err();
    assert!(e.contains("patches=0: give at least 1"), "{e}");
    let e = patch_torture::run(2, 10, 0, PatchSync::None).unwrap_err();
    assert!(e.contains("max_seconds=0: use 1..=86400"), "{e}");
}
