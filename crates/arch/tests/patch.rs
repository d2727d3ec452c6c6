//! Preemption-point sites and text patching: table, verification, W^X, counted one-byte arming.
//! Every test patches the same canary site, so they take turns through one lock.

use arch::patch::{arm_site, disarm_site, read_site, Arm, PokeError};
use arch::ppoint::{self, canary, idle_bytes, site_bytes, OP_CALL, OP_INT3};
use arch::testing::rt_reschedule_calls;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

static TURN: Mutex<()> = Mutex::new(());

fn canary_site() -> usize {
    let sites = ppoint::sites();
    sites.iter().find(|s| s.info.file.ends_with("ppoint.rs")).expect("the canary site is in the table").addr
}

#[test]
fn table_lists_sites_with_their_source_and_nops() {
    let _t = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let sites = ppoint::sites();
    assert!(!sites.is_empty());
    let c = sites.iter().find(|s| s.info.file.ends_with("ppoint.rs")).unwrap();
    assert!(c.info.line > 0 && c.info.module.starts_with("arch"), "{:?}", c.info);
    assert_eq!(read_site(c.addr), idle_bytes(c.addr));
    assert_eq!(read_site(c.addr)[0], 0x3d, "cmp eax, imm32");
    assert!(arch::text::contains(c.addr));
}

#[test]
fn armed_site_calls_the_hook_and_disarmed_site_does_not() {
    let _t = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let site = canary_site();
    let before = rt_reschedule_calls();
    canary();
    assert_eq!(rt_reschedule_calls(), before, "an unpatched site is a NOP");
    arm_site(site, Arm::Call).unwrap();
    assert_eq!(read_site(site), site_bytes(site, OP_CALL));
    canary();
    canary();
    assert_eq!(rt_reschedule_calls(), before + 2);
    disarm_site(site, Arm::Call).unwrap();
    assert_eq!(read_site(site), idle_bytes(site), "the site is back to its NOP");
    canary();
    assert_eq!(rt_reschedule_calls(), before + 2);
}

#[test]
fn arming_is_counted_and_a_call_outranks_a_trap() {
    let _t = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let site = canary_site();
    arm_site(site, Arm::Int3).unwrap();
    assert_eq!(read_site(site), site_bytes(site, OP_INT3));
    let before = rt_reschedule_calls();
    canary(); // a trap on a thread that is no CPU: stepped over
    assert_eq!(rt_reschedule_calls(), before);
    arm_site(site, Arm::Call).unwrap();
    arm_site(site, Arm::Call).unwrap();
    assert_eq!(read_site(site)[0], OP_CALL);
    disarm_site(site, Arm::Call).unwrap();
    assert_eq!(read_site(site)[0], OP_CALL, "one call user is left");
    disarm_site(site, Arm::Call).unwrap();
    assert_eq!(read_site(site)[0], OP_INT3, "the trap user is left");
    disarm_site(site, Arm::Int3).unwrap();
    assert_eq!(read_site(site), idle_bytes(site));
    assert_eq!(disarm_site(site, Arm::Int3), Err(PokeError::NotArmed(site)));
    assert_eq!(read_site(site), idle_bytes(site));
}

#[test]
fn wrong_bytes_or_non_sites_are_refused_and_nothing_is_written() {
    let _t = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let site = canary_site();
    let good = read_site(site);
    arch::testing::scribble(site + 2, good[2] ^ 0x40).unwrap();
    let bad = read_site(site);
    let e = arm_site(site, Arm::Call).unwrap_err();
    assert!(matches!(e, PokeError::Unexpected { found, .. } if found == bad), "{e:?}");
    assert!(e.to_string().starts_with("BUG: refusing to patch site"), "{e}");
    assert_eq!(read_site(site), bad, "nothing was written");
    arch::testing::scribble(site, 0x90).unwrap();
    assert!(matches!(arm_site(site, Arm::Int3), Err(PokeError::Unexpected { .. })));
    arch::testing::scribble(site, good[0]).unwrap();
    arch::testing::scribble(site + 2, good[2]).unwrap();
    assert_eq!(read_site(site), idle_bytes(site));
    assert_eq!(disarm_site(site, Arm::Call), Err(PokeError::NotArmed(site)), "the refused arm was not counted");
    assert_eq!(arm_site(site + 1, Arm::Call), Err(PokeError::NotASite(site + 1)));
}

fn wx_mappings() -> Vec<String> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|p| p.contains('w') && p.contains('x')))
        .map(String::from)
        .collect()
}

#[test]
fn no_mapping_is_ever_writable_and_executable_while_patching() {
    let _t = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let site = canary_site();
    let stop = Arc::new(AtomicBool::new(false));
    let looked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (s, l) = (stop.clone(), looked.clone());
    let watcher = std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !s.load(Ordering::Acquire) {
            seen.extend(wx_mappings());
            l.fetch_add(1, Ordering::Relaxed);
        }
        seen
    });
    let mut i = 0;
    while i < 500 || looked.load(Ordering::Relaxed) < 20 {
        let how = if i % 2 == 0 { Arm::Call } else { Arm::Int3 };
        arm_site(site, how).unwrap();
        disarm_site(site, how).unwrap();
        i += 1;
    }
    stop.store(true, Ordering::Release);
    let seen = watcher.join().unwrap();
    assert!(seen.is_empty(), "W+X mappings seen: {seen:?}");
}

#[test]
fn a_site_executed_while_it_is_patched_never_faults() {
    let _t = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let site = canary_site();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let called = Arc::new(AtomicBool::new(false));
    let (s, d, c) = (stop.clone(), done.clone(), called.clone());
    let runner = std::thread::spawn(move || {
        let (mut runs, start) = (0u64, rt_reschedule_calls());
        while !s.load(Ordering::Acquire) {
            canary();
            runs += 1;
            d.store(runs, Ordering::Relaxed);
            if rt_reschedule_calls() > start {
                c.store(true, Ordering::Relaxed); // the count is per thread
            }
        }
        (runs, rt_reschedule_calls() - start)
    });
    let (mut i, t0) = (0u64, std::time::Instant::now());
    // Until the runner has passed the site both ways: on a host whose cores are busy the two
    // threads may take turns instead of running at once, and a turn may end in either state
    // (10 s at most, then the assertion below says what was seen).
    let both_seen = || called.load(Ordering::Relaxed) || t0.elapsed().as_secs() >= 10;
    while i < 3000 || done.load(Ordering::Relaxed) < 20_000 || !both_seen() {
        let how = if i % 3 == 2 { Arm::Int3 } else { Arm::Call };
        arm_site(site, how).unwrap();
        for _ in 0..200 {
            std::hint::spin_loop(); // keep it armed long enough for the runner to pass it
        }
        disarm_site(site, how).unwrap();
        for _ in 0..200 {
            std::hint::spin_loop(); // and idle as long
        }
        i += 1;
    }
    stop.store(true, Ordering::Release);
    let (runs, calls) = runner.join().unwrap();
    assert_eq!(read_site(site), idle_bytes(site));
    assert!(runs > 1000, "the runner hardly ran: {runs}");
    assert!(calls > 0 && calls < runs, "the runner saw both states: {calls} calls in {runs} runs");
}
