//! Softirqs: once per raise, never nested in themselves, never while BH is disabled, the
//! softirq field of `preempt_count` in each context, `ksoftirqd` past the budget, and where
//! bottom halves run against RT tasks under `bh=classic` and `bh=threaded`.

mod common;
use common::{run_with_timeout, spin_ns, EventLog};
use kernel::device::Device;
use kernel::preempt::{self, HARDIRQ_MASK, HARDIRQ_OFFSET, SOFTIRQ_DISABLE_OFFSET, SOFTIRQ_MASK, SOFTIRQ_OFFSET};
use kernel::softirq::{self, softirq_stats, MAX_SOFTIRQ_RESTART, NET_RX_SOFTIRQ, NET_TX_SOFTIRQ};
use kernel::{spawn, BhMode, Config, TaskBuilder, WaitQueue};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

fn cfg(bh: BhMode) -> Config {
    Config { bh, ..Config::default() }
}

/// Bit flags an action or handler sets when it finds its context wrong.
const WRONG_SOFTIRQ_FIELD: u32 = 1;
const WRONG_HARDIRQ_FIELD: u32 = 2;
const IRQS_OFF: u32 = 4;

#[test]
fn softirq_runs_once_per_raise_at_irq_exit_serving_with_irqs_on() {
    const RAISES: u64 = 50;
    let r = run_with_timeout(cfg(BhMode::Classic), 60, || {
        let (runs, wrong, wq) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU32::new(0)), Arc::new(WaitQueue::new()));
        let (r2, w2, q2) = (runs.clone(), wrong.clone(), wq.clone());
        softirq::open_softirq(NET_TX_SOFTIRQ, move || {
            let c = preempt::preempt_count();
            if c & SOFTIRQ_MASK != SOFTIRQ_OFFSET || !preempt::in_serving_softirq() {
                w2.fetch_or(WRONG_SOFTIRQ_FIELD, Ordering::AcqRel);
            }
            if c & HARDIRQ_MASK != 0 {
                w2.fetch_or(WRONG_HARDIRQ_FIELD, Ordering::AcqRel);
            }
            if arch_hosted::irq::irqs_disabled() {
                w2.fetch_or(IRQS_OFF, Ordering::AcqRel);
            }
            r2.fetch_add(1, Ordering::AcqRel);
            q2.wake_up();
        })
        .unwrap();
        let (r3, w3) = (runs.clone(), wrong.clone());
        let dev = Device::register("txdone", move || {
            if preempt::preempt_count() & (HARDIRQ_MASK | SOFTIRQ_MASK) != HARDIRQ_OFFSET {
                w3.fetch_or(WRONG_HARDIRQ_FIELD, Ordering::AcqRel);
            }
            let before = r3.load(Ordering::Acquire);
            softirq::raise_softirq(NET_TX_SOFTIRQ);
            softirq::raise_softirq(NET_TX_SOFTIRQ); // coalesces with the first
            if r3.load(Ordering::Acquire) != before {
                w3.fetch_or(WRONG_HARDIRQ_FIELD, Ordering::AcqRel); // ran inside the hard IRQ
            }
        });
        for i in 1..=RAISES {
            dev.raise();
            wq.wait_event(|| runs.load(Ordering::Acquire) >= i);
        }
        let s = softirq_stats();
        assert_eq!(wrong.load(Ordering::Acquire), 0, "softirq or hardirq ran in the wrong context");
        assert_eq!(s.raised[NET_TX_SOFTIRQ], 2 * RAISES);
        assert_eq!(s.coalesced[NET_TX_SOFTIRQ], RAISES);
        assert_eq!(s.runs(NET_TX_SOFTIRQ), RAISES, "once per raise that found the vector clear: {s:?}");
        assert_eq!(s.runs_irq_exit[NET_TX_SOFTIRQ], RAISES, "classic runs them at irq_exit: {s:?}");
        assert_eq!(runs.load(Ordering::Acquire), RAISES);
        0
    });
    assert_eq!(r.init, Ok(0));
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
}

#[test]
fn hardirq_nests_in_softirq_but_softirq_never_nests_in_itself() {
    const NESTED: u64 = 5;
    let r = run_with_timeout(cfg(BhMode::Classic), 60, || {
        let runs = Arc::new(AtomicU64::new(0));
        let depth = Arc::new(AtomicU32::new(0));
        let max_depth = Arc::new(AtomicU32::new(0));
        let seen_in_hardirq = Arc::new(AtomicU32::new(0));
        let hard_ran = Arc::new(AtomicBool::new(false));
        let (sh, hr) = (seen_in_hardirq.clone(), hard_ran.clone());
        let dev = Arc::new(Device::register("nest", move || {
            sh.store(preempt::preempt_count() & (HARDIRQ_MASK | SOFTIRQ_MASK), Ordering::Release);
            softirq::raise_softirq(NET_RX_SOFTIRQ); // the same vector, while it is being served
            hr.store(true, Ordering::Release);
        }));
        let (r2, d2, m2, hr2, dev2) = (runs.clone(), depth.clone(), max_depth.clone(), hard_ran.clone(), dev.clone());
        let wq = Arc::new(WaitQueue::new());
        let q2 = wq.clone();
        softirq::open_softirq(NET_RX_SOFTIRQ, move || {
            m2.fetch_max(d2.fetch_add(1, Ordering::AcqRel) + 1, Ordering::AcqRel);
            if r2.fetch_add(1, Ordering::AcqRel) < NESTED {
                // A hard interrupt arrives while this softirq runs: with IRQs on it is taken now.
                hr2.store(false, Ordering::Release);
                dev2.raise();
                let end = kernel::time::now_ns() + 2_000_000_000;
                while !hr2.load(Ordering::Acquire) && kernel::time::now_ns() < end {
                    std::hint::spin_loop();
                }
            }
            d2.fetch_sub(1, Ordering::AcqRel);
            q2.wake_up();
        })
        .unwrap();
        dev.raise(); // the first run is at this interrupt's irq_exit, inside the signal handler
        wq.wait_event(|| runs.load(Ordering::Acquire) > NESTED);
        assert!(hard_ran.load(Ordering::Acquire), "the hard IRQ did not nest in the softirq: IRQs were off");
        assert_eq!(seen_in_hardirq.load(Ordering::Acquire), HARDIRQ_OFFSET | SOFTIRQ_OFFSET);
        assert_eq!(max_depth.load(Ordering::Acquire), 1, "a softirq nested in itself");
        assert_eq!(runs.load(Ordering::Acquire), NESTED + 1, "each raise during the run gives one more run");
        drop(dev);
        0
    });
    assert_eq!(r.init, Ok(0));
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
}

#[test]
fn softirqs_wait_while_bh_is_disabled_and_run_at_enable() {
    let r = run_with_timeout(cfg(BhMode::Classic), 60, || {
        let runs = Arc::new(AtomicU64::new(0));
        let serving = Arc::new(AtomicBool::new(false));
        let (r2, s2) = (runs.clone(), serving.clone());
        softirq::open_softirq(NET_TX_SOFTIRQ, move || {
            s2.store(preempt::in_serving_softirq(), Ordering::Release);
            r2.fetch_add(1, Ordering::AcqRel);
        })
        .unwrap();
        let hard = Arc::new(AtomicU64::new(0));
        let h2 = hard.clone();
        let dev = Device::register("bh", move || {
            h2.fetch_add(1, Ordering::AcqRel);
            softirq::raise_softirq(NET_TX_SOFTIRQ);
        });
        let outer = softirq::local_bh_disable();
        assert_eq!(preempt::softirq_count(), SOFTIRQ_DISABLE_OFFSET);
        assert!(preempt::in_softirq() && !preempt::in_serving_softirq());
        let inner = softirq::local_bh_disable();
        assert_eq!(preempt::softirq_count(), 2 * SOFTIRQ_DISABLE_OFFSET);
        dev.raise();
        let end = kernel::time::now_ns() + 2_000_000_000;
        while hard.load(Ordering::Acquire) == 0 && kernel::time::now_ns() < end {}
        spin_ns(2_000_000);
        assert_eq!(hard.load(Ordering::Acquire), 1, "the hard IRQ ran");
        assert_eq!(runs.load(Ordering::Acquire), 0, "a softirq ran while BH was disabled");
        drop(inner);
        assert_eq!(runs.load(Ordering::Acquire), 0, "a softirq ran while BH was still disabled once");
        drop(outer);
        assert_eq!(runs.load(Ordering::Acquire), 1, "local_bh_enable serves what became pending");
        assert!(serving.load(Ordering::Acquire));
        assert_eq!(preempt::softirq_count(), 0);
        assert_eq!(softirq_stats().runs_bh_enable[NET_TX_SOFTIRQ], 1);
        0
    });
    assert_eq!(r.init, Ok(0));
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
}

/// Where each run of a self-raising softirq happened: at an `irq_exit` (in the interrupted
/// task's time) or in `ksoftirqd`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ran {
    IrqExit,
    Ksoftirqd,
}

/// Runs a self-raising softirq `total` times (each run spinning `spin` ns), first raised by one
/// device interrupt, and returns where each run happened, in order, and the hand-offs counted.
/// HZ=10 keeps ticks (whose `irq_exit` could serve the vector too) out of the few milliseconds
/// this takes.
fn self_raising(total: u64, spin: u64) -> (Vec<Ran>, u64) {
    let log = Arc::new(EventLog::new(total as usize));
    let handoffs = Arc::new(AtomicU64::new(0));
    let (l, h) = (log.clone(), handoffs.clone());
    let r = run_with_timeout(Config { hz: 10, ..cfg(BhMode::Classic) }, 60, move || {
        let runs = Arc::new(AtomicU64::new(0));
        let wq = Arc::new(WaitQueue::new());
        let ksoftirqd = softirq::ksoftirqd_pid().expect("ksoftirqd is up");
        let (r2, q2) = (runs.clone(), wq.clone());
        softirq::open_softirq(NET_RX_SOFTIRQ, move || {
            spin_ns(spin);
            let serving = preempt::preempt_count() & (SOFTIRQ_MASK | HARDIRQ_MASK) == SOFTIRQ_OFFSET;
            l.push(if !serving {
                0
            } else if kernel::current_pid() == ksoftirqd {
                2
            } else {
                1
            });
            if r2.fetch_add(1, Ordering::AcqRel) + 1 < total {
                softirq::raise_softirq(NET_RX_SOFTIRQ);
            }
            q2.wake_up();
        })
        .unwrap();
        let dev = Device::register("rx", || softirq::raise_softirq(NET_RX_SOFTIRQ));
        dev.raise();
        wq.wait_event(|| runs.load(Ordering::Acquire) >= total);
        h.store(softirq_stats().handoffs, Ordering::Release);
        0
    });
    assert_eq!(r.init, Ok(0));
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
    let codes = log.to_vec();
    assert!(!codes.contains(&0), "a run without exactly SOFTIRQ_OFFSET in the softirq field: {codes:?}");
    let ran = codes.into_iter().map(|c| if c == 2 { Ran::Ksoftirqd } else { Ran::IrqExit }).collect();
    (ran, handoffs.load(Ordering::Acquire))
}

/// How many runs the first `irq_exit` did before `ksoftirqd` took over.
fn leading_irq_exit_runs(ran: &[Ran]) -> usize {
    ran.iter().take_while(|&&r| r == Ran::IrqExit).count()
}

#[test]
fn ksoftirqd_takes_over_past_the_restart_budget() {
    let (ran, handoffs) = self_raising(30, 0);
    assert_eq!(ran.len(), 30);
    let first = leading_irq_exit_runs(&ran);
    assert!((1..=MAX_SOFTIRQ_RESTART as usize).contains(&first), "irq_exit ran {first} passes: {ran:?}");
    assert_eq!(ran[first], Ran::Ksoftirqd, "{ran:?}");
    assert!(handoffs >= 1);
}

#[test]
fn ksoftirqd_takes_over_past_the_time_budget() {
    // Each run takes longer than MAX_SOFTIRQ_TIME, so irq_exit stops after the first.
    let (ran, handoffs) = self_raising(4, 3_000_000);
    assert_eq!(ran, vec![Ran::IrqExit, Ran::Ksoftirqd, Ran::Ksoftirqd, Ran::Ksoftirqd]);
    assert_eq!(handoffs, 1);
}

/// A device IRQ wakes an RT task above `bh_prio` (60) and one below (40) and raises a softirq;
/// returns the order in which they ran: 1 = high task, 2 = softirq, 3 = low task.
fn rt_against_bh(bh: BhMode) -> Vec<usize> {
    let order = Arc::new(EventLog::new(8));
    let o = order.clone();
    let config = Config { bh, bh_prio: 50, ..Config::default() };
    let r = run_with_timeout(config, 60, move || {
        let go = Arc::new(AtomicBool::new(false));
        let wq = Arc::new(WaitQueue::new());
        let o2 = o.clone();
        softirq::open_softirq(NET_RX_SOFTIRQ, move || o2.push(2)).unwrap();
        let tasks: Vec<_> = [(60u8, 1usize), (40, 3)]
            .into_iter()
            .map(|(prio, mark)| {
                let (g, w, o3) = (go.clone(), wq.clone(), o.clone());
                spawn(TaskBuilder::new(&format!("rt{prio}")).fifo(prio), move || {
                    w.wait_event(|| g.load(Ordering::Acquire));
                    o3.push(mark);
                    0
                })
            })
            .collect();
        let (g, w) = (go.clone(), wq.clone());
        let dev = Device::register("rx", move || {
            g.store(true, Ordering::Release);
            w.wake_up();
            softirq::raise_softirq(NET_RX_SOFTIRQ);
        });
        dev.raise();
        for t in tasks {
            t.join().unwrap();
        }
        0
    });
    assert_eq!(r.init, Ok(0));
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
    order.to_vec()
}

#[test]
fn threaded_bh_runs_after_rt_above_bh_prio_and_before_rt_below() {
    assert_eq!(rt_against_bh(BhMode::Threaded), vec![1, 2, 3]);
}

#[test]
fn classic_bh_runs_at_irq_exit_ahead_of_every_task() {
    assert_eq!(rt_against_bh(BhMode::Classic), vec![2, 1, 3]);
}

#[test]
fn threaded_bh_never_runs_at_irq_exit() {
    let config = Config { bh: BhMode::Threaded, ..Config::default() };
    let r = run_with_timeout(config, 60, || {
        let runs = Arc::new(AtomicU64::new(0));
        let ksoftirqd = softirq::ksoftirqd_pid().unwrap();
        let wrong = Arc::new(AtomicBool::new(false));
        let (r2, w2) = (runs.clone(), wrong.clone());
        let wq = Arc::new(WaitQueue::new());
        let q2 = wq.clone();
        softirq::open_softirq(NET_TX_SOFTIRQ, move || {
            if kernel::current_pid() != ksoftirqd || preempt::softirq_count() != SOFTIRQ_OFFSET {
                w2.store(true, Ordering::Release);
            }
            r2.fetch_add(1, Ordering::AcqRel);
            q2.wake_up();
        })
        .unwrap();
        let dev = Device::register("tx", || softirq::raise_softirq(NET_TX_SOFTIRQ));
        for i in 1..=20 {
            dev.raise();
            wq.wait_event(|| runs.load(Ordering::Acquire) >= i);
        }
        let s = softirq_stats();
        assert_eq!((s.runs_irq_exit[NET_TX_SOFTIRQ], s.runs_ksoftirqd[NET_TX_SOFTIRQ]), (0, 20));
        assert!(!wrong.load(Ordering::Acquire), "a softirq ran outside ksoftirqd");
        0
    });
    assert_eq!(r.init, Ok(0));
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
}

#[test]
fn open_softirq_refuses_bad_vectors() {
    let r = run_with_timeout(Config::default(), 30, || {
        let e = softirq::open_softirq(99, || {}).unwrap_err();
        assert!(e.contains("softirq vector 99 does not exist"), "{e}");
        let e = softirq::open_softirq(softirq::TASKLET_SOFTIRQ, || {}).unwrap_err();
        assert!(e.contains("TASKLET") && e.contains("already has an action"), "{e}");
        0
    });
    assert_eq!(r.init, Ok(0));
}

/// Softirq work done at `irq_exit` (inside the signal handler, with the signal unblocked so
/// hard IRQs nest) or in `ksoftirqd` (which preempts the task) leaves every register of the
/// interrupted code as it was. The tick at HZ=10000 raises the timer softirq, so the
/// interrupts do not depend on a host thread getting a core.
fn registers_survive_softirqs(bh: BhMode) {
    let r = run_with_timeout(Config { hz: 10_000, ..cfg(bh) }, 120, || {
        let runs = Arc::new(AtomicU64::new(0));
        let r2 = runs.clone();
        softirq::open_softirq(softirq::TIMER_SOFTIRQ, move || {
            spin_ns(2_000);
            r2.fetch_add(1, Ordering::AcqRel);
        })
        .unwrap();
        let mut bad = Vec::new();
        let end = kernel::time::now_ns() + 10_000_000_000;
        let mut seed = 0u64;
        while runs.load(Ordering::Acquire) < 5_000 && kernel::time::now_ns() < end {
            if let Err(m) = hostlab::torture::check_round(seed, 2000) {
                bad.push(format!("{m:?}"));
            }
            seed += 1;
        }
        assert!(bad.is_empty(), "registers changed across softirq work: {:?}", &bad[..bad.len().min(3)]);
        assert!(runs.load(Ordering::Acquire) >= 100, "few softirqs ran: {}", runs.load(Ordering::Acquire));
        0
    });
    assert_eq!(r.init, Ok(0));
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
}

#[test]
fn registers_survive_softirqs_at_irq_exit() {
    registers_survive_softirqs(BhMode::Classic);
}

#[test]
fn registers_survive_softirqs_in_ksoftirqd() {
    registers_survive_softirqs(BhMode::Threaded);
}

#[test]
fn the_tick_raises_the_timer_softirq_once_an_action_is_open() {
    let r = run_with_timeout(cfg(BhMode::Classic), 60, || {
        kernel::time::sleep_ns(5_000_000);
        let before = softirq_stats();
        assert_eq!(before.raised[softirq::TIMER_SOFTIRQ], 0, "no action, no raise: {before:?}");
        let (runs, in_hardirq) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let (r2, h2) = (runs.clone(), in_hardirq.clone());
        softirq::open_softirq(softirq::TIMER_SOFTIRQ, move || {
            if preempt::in_hardirq() || !preempt::in_serving_softirq() {
                h2.store(true, Ordering::Release);
            }
            r2.fetch_add(1, Ordering::AcqRel);
        })
        .unwrap();
        while runs.load(Ordering::Acquire) < 5 {
            kernel::time::sleep_ns(1_000_000); // ticks at HZ=1000 run it
        }
        kernel::time::sleep_ns(2_000_000);
        let s = softirq_stats();
        let t = softirq::TIMER_SOFTIRQ;
        assert!(!in_hardirq.load(Ordering::Acquire));
        assert!(s.runs(t) >= 5 && s.runs(t) <= s.raised[t] - s.coalesced[t], "{s:?}");
        0
    });
    assert_eq!(r.init, Ok(0));
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
}
