//! Tasklets: once per schedule that found them idle, never nested or concurrent with
//! themselves, rescheduling from their own function, and a storm of schedules from hard IRQs.

mod common;
use common::run_with_timeout;
use kernel::device::Device;
use kernel::tasklet::{tasklet_hi_schedule, tasklet_schedule, Tasklet};
use kernel::{Config, WaitQueue};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

#[test]
fn schedules_before_the_run_coalesce_into_one_run() {
    let r = run_with_timeout(Config::default(), 30, || {
        let wq = Arc::new(WaitQueue::new());
        let q = wq.clone();
        let t = Tasklet::new("once", move || {
            q.wake_up();
        });
        let (t2, accepted) = (t.clone(), Arc::new(AtomicU64::new(0)));
        let a2 = accepted.clone();
        let dev = Device::register("tl", move || {
            for _ in 0..3 {
                a2.fetch_add(tasklet_schedule(&t2) as u64, Ordering::AcqRel);
            }
        });
        dev.raise();
        wq.wait_event(|| t.runs() >= 1);
        kernel::time::sleep_ns(2_000_000);
        assert_eq!(accepted.load(Ordering::Acquire), 1, "three schedules in one IRQ: one accepted");
        assert_eq!(t.runs(), 1);
        assert!(!t.is_scheduled());
        0
    });
    assert_eq!(r.init, Ok(0));
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
}

#[test]
fn tasklet_rescheduled_from_itself_runs_again_after_not_inside() {
    const AGAIN: u64 = 5;
    let r = run_with_timeout(Config::default(), 30, || {
        let depth = Arc::new(AtomicU32::new(0));
        let max_depth = Arc::new(AtomicU32::new(0));
        let wq = Arc::new(WaitQueue::new());
        let me: Arc<std::sync::OnceLock<Arc<Tasklet>>> = Arc::new(std::sync::OnceLock::new());
        let (d, m, q, me2) = (depth.clone(), max_depth.clone(), wq.clone(), me.clone());
        let t = Tasklet::new("self", move || {
            m.fetch_max(d.fetch_add(1, Ordering::AcqRel) + 1, Ordering::AcqRel);
            let t = me2.get().unwrap();
            if t.runs() < AGAIN {
                assert!(tasklet_schedule(t), "SCHED is clear while the function runs");
                assert!(!tasklet_schedule(t), "a second schedule in the same run coalesces");
            }
            d.fetch_sub(1, Ordering::AcqRel);
            q.wake_up();
        });
        let _ = me.set(t.clone());
        let t2 = t.clone();
        let dev = Device::register("tl", move || {
            tasklet_hi_schedule(&t2);
        });
        dev.raise();
        wq.wait_event(|| t.runs() > AGAIN);
        kernel::time::sleep_ns(2_000_000);
        assert_eq!(t.runs(), AGAIN + 1);
        assert_eq!(max_depth.load(Ordering::Acquire), 1, "the tasklet nested in itself");
        0
    });
    assert_eq!(r.init, Ok(0));
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
}

#[test]
fn tasklet_storm_runs_exactly_once_per_accepted_schedule() {
    const RAISES: u64 = 20_000;
    let r = run_with_timeout(Config::default(), 120, || {
        let accepted = Arc::new(AtomicU64::new(0));
        let depth = Arc::new(AtomicU32::new(0));
        let nested = Arc::new(AtomicBool::new(false));
        let (d, n) = (depth.clone(), nested.clone());
        let t = Tasklet::new("storm", move || {
            if d.fetch_add(1, Ordering::AcqRel) != 0 {
                n.store(true, Ordering::Release);
            }
            std::hint::black_box((0..200u64).sum::<u64>());
            d.fetch_sub(1, Ordering::AcqRel);
        });
        let (t2, a2) = (t.clone(), accepted.clone());
        let dev = Device::register("storm", move || {
            a2.fetch_add(tasklet_schedule(&t2) as u64 + tasklet_schedule(&t2) as u64, Ordering::AcqRel);
        });
        let raiser = dev.raiser();
        let host = std::thread::spawn(move || {
            for i in 0..RAISES {
                raiser.raise();
                let until = kernel::time::now_ns() + (i * 7919 % 5_000);
                while kernel::time::now_ns() < until {
                    std::hint::spin_loop();
                }
            }
        });
        // A user-mode task keeps the CPU busy, so interrupts land in it too.
        let end = kernel::time::now_ns() + 30_000_000_000;
        while !host.is_finished() && kernel::time::now_ns() < end {
            std::hint::spin_loop();
        }
        host.join().unwrap();
        kernel::time::sleep_ns(5_000_000);
        while t.is_scheduled() {
            kernel::time::sleep_ns(1_000_000);
        }
        let (acc, runs) = (accepted.load(Ordering::Acquire), t.runs());
        assert_eq!(runs, acc, "runs must equal accepted schedules");
        assert!((1..=RAISES).contains(&acc), "accepted {acc}");
        assert!(!nested.load(Ordering::Acquire), "the tasklet ran nested in itself");
        drop(dev);
        0
    });
    assert_eq!(r.init, Ok(0));
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
}

#[test]
fn hi_tasklets_run_before_normal_ones_scheduled_in_the_same_irq() {
    let r = run_with_timeout(Config::default(), 30, || {
        let order = Arc::new(AtomicU64::new(0));
        let (o1, o2) = (order.clone(), order.clone());
        let normal = Tasklet::new("normal", move || {
            let _ = o1.compare_exchange(1, 12, Ordering::AcqRel, Ordering::Acquire);
            let _ = o1.compare_exchange(0, 2, Ordering::AcqRel, Ordering::Acquire);
        });
        let hi = Tasklet::new("hi", move || {
            let _ = o2.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire);
            let _ = o2.compare_exchange(2, 21, Ordering::AcqRel, Ordering::Acquire);
        });
        let (n, h) = (normal.clone(), hi.clone());
        let dev = Device::register("both", move || {
            tasklet_schedule(&n); // scheduled first ...
            tasklet_hi_schedule(&h); // ... but HI_SOFTIRQ is served first
        });
        dev.raise();
        while normal.runs() + hi.runs() < 2 {
            kernel::time::sleep_ns(1_000_000);
        }
        order.load(Ordering::Acquire) as i64
    });
    assert_eq!(r.init, Ok(12), "1 = hi ran first, then normal (12); 21 would be the reverse");
}
