//! `TaskBuilder::timerlat`: a tracked task's timer wakeup splits its lateness into parts that
//! add up to it, and the parts say how the CPU was given up under each model.

mod common;
use common::{run_with_timeout, spin_ns};
use kernel::time::{now_ns, sleep_until, wakeup_parts, WakeupParts};
use kernel::{spawn, syscall, Config, PreemptModel, TaskBuilder};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A worker in long system calls (2 ms each, a point every 50 µs) beside a tracked SCHED_FIFO
/// task that sleeps to 40 deadlines 1 ms apart; the parts of each wakeup it could explain, with
/// its lateness.
fn wakeups(model: PreemptModel) -> Vec<(WakeupParts, u64)> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let o = out.clone();
    let r = run_with_timeout(Config { preempt: model, ..Config::default() }, 60, move || {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let worker = spawn(TaskBuilder::new("worker"), move || {
            while !s.load(Ordering::Acquire) {
                syscall(|| {
                    for _ in 0..40 {
                        spin_ns(50_000);
                        kernel::preempt_point!();
                    }
                });
            }
            0
        });
        let probe = spawn(TaskBuilder::new("probe").fifo(80).timerlat(), move || {
            let mut next = now_ns();
            for _ in 0..40 {
                next += 1_000_000;
                sleep_until(next);
                let run = now_ns();
                if let Some(p) = wakeup_parts(next, run) {
                    o.lock().unwrap().push((p, run - next));
                }
            }
            0
        });
        probe.join().unwrap();
        stop.store(true, Ordering::Release);
        worker.join().unwrap()
    });
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
    let got = out.lock().unwrap().clone();
    got
}

#[test]
fn the_parts_add_up_to_the_lateness_and_say_how_the_cpu_was_given_up() {
    for model in [PreemptModel::None, PreemptModel::Voluntary, PreemptModel::Full, PreemptModel::PatchCall] {
        let got = wakeups(model);
        eprintln!("{model}: {} of 40 explained; first: {:?}", got.len(), got.first());
        assert!(!got.is_empty(), "{model}: no wakeup explained");
        for (p, late) in &got {
            assert_eq!(p.total(), *late, "{model}: the parts add up to the lateness: {p:?}");
        }
        // The interrupted IP is known, but for an interrupt replayed when IRQs came on (0).
        assert!(got.iter().any(|(p, _)| p.held_ip != 0), "{model}: {got:?}");
        match model {
            // Preempted on the interrupt's way out: nothing waited for, nothing served at a point.
            PreemptModel::Full => {
                assert!(got.iter().all(|(p, _)| p.preempted && p.ns[3] == 0), "{model}: {got:?}")
            }
            // The worker is in its system call 2 ms at a time: most wakeups wait for its end.
            PreemptModel::None => {
                assert!(got.iter().any(|(p, _)| !p.preempted && p.ns[3] > 0), "{model}: {got:?}")
            }
            // Given up at a point (or at the exit to user mode): never a kernel-mode preemption
            // that skipped the wait, unless the worker was in user mode.
            _ => assert!(got.iter().any(|(p, _)| !p.preempted), "{model}: {got:?}"),
        }
    }
}
