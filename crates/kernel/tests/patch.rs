//! The patch models inside the kernel: what an RT wakeup arms, that switching the model away
//! while sites are armed restores them, and that fair wakeups arm nothing.
//! One test at a time: they read every site's code bytes.

mod common;

use common::{run_with_timeout, spin_ns, EventLog, RtWakeup};
use kernel::model::patch::{patch_stats, sites_not_idle};
use kernel::{spawn, syscall, Config, PreemptModel, TaskBuilder};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const SYSCALL_RETURNED: usize = 1;
const RT_RAN: usize = 2;
const ARMED_SEEN: usize = 3;
const SWITCHED: usize = 4;
const POINTS_PASSED: usize = 5;

/// A worker in a system call waits, without passing a point, until the RT wakeup has armed its
/// points, then switches the model to `none`: the sites must be idle at once, and the RT task
/// then waits for `ret_from_syscall`.
fn switch_away_while_armed(model: PreemptModel) -> (Vec<usize>, kernel::RunReport) {
    let log = Arc::new(EventLog::new(16));
    let l = log.clone();
    let r = run_with_timeout(Config { preempt: model, ..Config::default() }, 60, move || {
        let wake = RtWakeup::new("wake-rt");
        let l2 = l.clone();
        let rt = wake.spawn_rt("rt", 50, move || {
            l2.push(RT_RAN);
            0
        });
        let (l3, dev) = (l.clone(), wake.device().clone());
        let worker = spawn(TaskBuilder::new("worker"), move || {
            let armed_sites = syscall(|| {
                dev.raise();
                while patch_stats().events == 0 {
                    spin_ns(10_000); // no point passed here: the event stays armed
                }
                l3.push(ARMED_SEEN);
                let armed = sites_not_idle();
                kernel::set_preempt_model(PreemptModel::None).unwrap();
                l3.push(SWITCHED);
                assert_eq!(sites_not_idle(), 0, "the switch left a site armed");
                for _ in 0..3 {
                    kernel::preempt_point!(); // idle now: the RT task waits for ret_from_syscall
                }
                l3.push(POINTS_PASSED);
                armed
            });
            l3.push(SYSCALL_RETURNED);
            armed_sites as i64
        });
        let armed = worker.join().unwrap();
        rt.join().unwrap();
        armed
    });
    (log.to_vec(), r)
}

#[test]
fn switching_the_model_away_while_sites_are_armed_restores_them() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for model in [PreemptModel::PatchInt3, PreemptModel::PatchCall] {
        let (log, r) = switch_away_while_armed(model);
        assert!(r.bugs.is_empty(), "{:?}", r.bugs);
        assert!(r.init.as_ref().is_ok_and(|&n| n >= 1), "sites were armed before the switch: {:?}", r.init);
        // ret_from_syscall (inside `syscall`, before it returns) is where the RT task runs.
        assert_eq!(log, vec![ARMED_SEEN, SWITCHED, POINTS_PASSED, RT_RAN, SYSCALL_RETURNED], "{model}");
        assert_eq!((r.patch.events, r.patch.preemptions), (1, 0), "{model}: {:?}", r.patch);
        assert_eq!(sites_not_idle(), 0);
    }
}

#[test]
fn a_fair_wakeup_arms_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let r = run_with_timeout(Config { preempt: PreemptModel::PatchCall, ..Config::default() }, 60, || {
        let woke = Arc::new(AtomicBool::new(false));
        let w = woke.clone();
        let sleeper = spawn(TaskBuilder::new("fair-sleeper"), move || {
            kernel::time::sleep_ns(2_000_000);
            w.store(true, Ordering::Release);
            0
        });
        syscall(|| {
            let end = kernel::time::now_ns() + 20_000_000;
            while kernel::time::now_ns() < end {
                spin_ns(50_000);
                kernel::preempt_point!();
            }
        });
        sleeper.join().unwrap();
        woke.load(Ordering::Acquire) as i64
    });
    assert_eq!(r.init, Ok(1));
    assert_eq!((r.patch.events, r.patch.sites_armed), (0, 0), "{:?}", r.patch);
}

/// The points of `scribbled_body`, found by their line in this file.
fn sites_of_this_file_at(lines: std::ops::RangeInclusive<u32>) -> Vec<usize> {
    arch_hosted::ppoint::sites()
        .iter()
        .filter(|s| s.info.file.ends_with("tests/patch.rs") && lines.contains(&s.info.line))
        .map(|s| s.addr)
        .collect()
}

#[inline(never)]
fn scribbled_body(until: &dyn Fn() -> bool) {
    while !until() {
        spin_ns(20_000);
        kernel::preempt_point!(); // SCRIBBLED (line checked below)
    }
}

#[test]
fn a_site_whose_bytes_are_wrong_is_refused_with_a_bug_report_and_left_alone() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let here = line!();
    let sites = sites_of_this_file_at(here - 8..=here - 5);
    assert_eq!(sites.len(), 1, "the point of scribbled_body");
    let good = arch_hosted::patch::read_site(sites[0]);
    arch_hosted::testing::scribble(sites[0] + 3, good[3] ^ 0x10).unwrap();
    let bad = arch_hosted::patch::read_site(sites[0]);
    let r = run_with_timeout(Config { preempt: PreemptModel::PatchCall, ..Config::default() }, 60, || {
        let ran = Arc::new(AtomicBool::new(false));
        let r2 = ran.clone();
        let rt = spawn(TaskBuilder::new("rt").fifo(50), move || {
            kernel::time::sleep_ns(1_000_000);
            r2.store(true, Ordering::Release);
            0
        });
        let worker = spawn(TaskBuilder::new("worker"), move || {
            let end = kernel::time::now_ns() + 30_000_000;
            syscall(|| scribbled_body(&|| kernel::time::now_ns() > end));
            0
        });
        worker.join().unwrap();
        rt.join().unwrap();
        ran.load(Ordering::Acquire) as i64
    });
    let now = arch_hosted::patch::read_site(sites[0]);
    arch_hosted::testing::scribble(sites[0] + 3, good[3]).unwrap();
    assert_eq!(now, bad, "nothing was written to the refused site");
    assert_eq!(r.init, Ok(1));
    assert!(r.bugs.iter().any(|b| b.starts_with("BUG: refusing to patch site")), "{:?}", r.bugs);
    assert!(r.patch.fallbacks >= 1, "{:?}", r.patch);
    assert_eq!(arch_hosted::patch::read_site(sites[0]), good);
}

/// One round of a hash chain over four words: loop-carried state the compiler keeps in
/// callee-saved registers or the stack across a point (the site clobbers the caller-saved ones).
fn chain_round(s: &mut [u64; 4], i: u64) {
    s[0] = s[0].wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(i);
    s[1] ^= s[0].rotate_left(13);
    s[2] = s[2].wrapping_add(s[1] ^ i.rotate_left(7));
    s[3] = s[3].rotate_left(5) ^ s[2];
}

/// Runs the chain with a point after every round until the RT task has run (plus 50 rounds),
/// returning the state and the number of rounds.
#[inline(never)]
fn chain_with_points(rt_ran: &AtomicBool) -> ([u64; 4], u64) {
    let mut s = [1, 2, 3, 4];
    let (mut i, mut after) = (0u64, 0);
    let end = kernel::time::now_ns() + 5_000_000_000;
    while after < 50 && kernel::time::now_ns() < end {
        chain_round(&mut s, i);
        i += 1;
        spin_ns(5_000);
        kernel::preempt_point!();
        after += rt_ran.load(Ordering::Acquire) as u64;
    }
    (s, i)
}

/// An RT wakeup during a loop of points: the armed site fires (a trap under `patch-int3`, whose
/// handler makes the site "call" `preempt_schedule_irq`; a call under `patch-call`), the RT
/// task runs at that point, inside the system call, and the loop resumes after the site with
/// its state intact: the chain's result equals the same rounds computed with no point.
#[test]
fn a_fired_site_preempts_at_the_point_and_the_task_resumes_intact() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for model in [PreemptModel::PatchInt3, PreemptModel::PatchCall] {
        let log = Arc::new(EventLog::new(16));
        let l = log.clone();
        let r = run_with_timeout(Config { preempt: model, ..Config::default() }, 60, move || {
            let wake = RtWakeup::new("wake-rt");
            let ran = Arc::new(AtomicBool::new(false));
            let (l2, r2) = (l.clone(), ran.clone());
            let rt = wake.spawn_rt("rt", 50, move || {
                l2.push(RT_RAN);
                r2.store(true, Ordering::Release);
                0
            });
            let (l3, dev) = (l.clone(), wake.device().clone());
            let worker = spawn(TaskBuilder::new("worker"), move || {
                let (s, rounds) = syscall(|| {
                    dev.raise_at(kernel::time::now_ns() + 2_000_000);
                    let out = chain_with_points(&ran);
                    l3.push(POINTS_PASSED);
                    out
                });
                l3.push(SYSCALL_RETURNED);
                let mut want = [1, 2, 3, 4];
                (0..rounds).for_each(|i| chain_round(&mut want, i));
                assert_eq!(s, want, "the chain's state changed across a preemption at a point");
                rounds as i64
            });
            let rounds = worker.join().unwrap();
            rt.join().unwrap();
            rounds
        });
        assert!(r.bugs.is_empty(), "{model}: {:?}", r.bugs);
        assert!(r.init.as_ref().is_ok_and(|&n| n > 50), "{model}: the worker's result: {:?}", r.init);
        assert_eq!(log.to_vec(), vec![RT_RAN, POINTS_PASSED, SYSCALL_RETURNED], "{model}: the RT task ran at a point");
        assert_eq!((r.patch.events, r.patch.preemptions), (1, 1), "{model}: {:?}", r.patch);
        assert_eq!(sites_not_idle(), 0);
    }
}
