//! Preemption-point sites and text patching: table, verification, W^X, int3-first.
//! Every test patches the same canary site, so they take turns through one lock.

use arch::patch::{arm_site, call_bytes, disarm_site, poke_site, read_site, PokeError};
use arch::ppoint::{self, canary, point_calls, NOP5};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

static TURN: Mutex<()> = Mutex::new(());

fn canary_site() -> usize {
    let sites = ppoint::sites();
    sites.iter().find(|s| s.info.file.ends_with("ppoint.rs")).expect("the canary site is in the table").addr
}

#[test]
fn table_lists_sites_with_their_source_and_nops() {
    let _t = TURN.lock().unwrap();
    let sites = ppoint::sites();
    assert!(!sites.is_empty());
    let c = sites.iter().find(|s| s.info.file.ends_with("ppoint.rs")).unwrap();
    assert!(c.info.line > 0 && c.info.module.starts_with("arch"), "{:?}", c.info);
    assert_eq!(read_site(c.addr), NOP5);
    assert!(arch::text::contains(c.addr));
}

#[test]
fn armed_site_calls_the_hook_and_disarmed_site_does_not() {
    let _t = TURN.lock().unwrap();
    let site = canary_site();
    let before = point_calls();
    canary();
    assert_eq!(point_calls(), before, "an unpatched site is a NOP");
    arm_site(site).unwrap();
    assert_eq!(read_site(site), call_bytes(site, ppoint::point_call_target()));
    canary();
    canary();
    assert_eq!(point_calls(), before + 2);
    disarm_site(site).unwrap();
    assert_eq!(read_site(site), NOP5, "the site is back to its NOP");
    canary();
    assert_eq!(point_calls(), before + 2);
}

#[test]
fn wrong_bytes_or_non_sites_are_refused_and_nothing_is_written() {
    let _t = TURN.lock().unwrap();
    let site = canary_site();
    let e = poke_site(site, [0x90; 5], [0xcc; 5]).unwrap_err();
    assert!(matches!(e, PokeError::Unexpected { found, .. } if found == NOP5), "{e:?}");
    assert!(e.to_string().starts_with("BUG: refusing to patch site"), "{e}");
    assert_eq!(read_site(site), NOP5);
    let e = poke_site(site + 1, NOP5, NOP5).unwrap_err();
    assert_eq!(e, PokeError::NotASite(site + 1));
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
    let _t = TURN.lock().unwrap();
    let site = canary_site();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let watcher = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut looks = 0;
        while !s.load(Ordering::Acquire) {
            seen.extend(wx_mappings());
            looks += 1;
        }
        (seen, looks)
    });
    for _ in 0..500 {
        arm_site(site).unwrap();
        disarm_site(site).unwrap();
    }
    stop.store(true, Ordering::Release);
    let (seen, looks) = watcher.join().unwrap();
    assert!(looks > 0);
    assert!(seen.is_empty(), "W+X mappings seen: {seen:?}");
}

#[test]
fn a_site_executed_while_it_is_patched_never_faults() {
    let _t = TURN.lock().unwrap();
    let site = canary_site();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let runner = std::thread::spawn(move || {
        let (mut runs, start) = (0u64, point_calls());
        while !s.load(Ordering::Acquire) {
            canary();
            runs += 1;
        }
        (runs, point_calls() - start)
    });
    for _ in 0..3000 {
        arm_site(site).unwrap();
        disarm_site(site).unwrap();
    }
    stop.store(true, Ordering::Release);
    let (runs, calls) = runner.join().unwrap();
    assert_eq!(read_site(site), NOP5);
    assert!(runs > 1000, "the runner hardly ran: {runs}");
    assert!(calls > 0 && calls < runs, "the runner saw both states: {calls} calls in {runs} runs");
}
