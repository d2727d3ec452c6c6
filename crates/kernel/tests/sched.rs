//! Scheduling classes: RT FIFO order, RR slices, RT before fair, fair shares, and where
//! preemption happens under preempt=none.

mod common;
use common::{run_with_timeout, spin_ns, EventLog};
use kernel::{spawn, syscall, Config, TaskBuilder};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[test]
fn fifo_runs_in_wake_order_and_higher_priority_preempts() {
    let log = Arc::new(EventLog::new(64));
    let l = log.clone();
    let r = run_with_timeout(Config::default(), 30, move || {
        // A starter above them all spawns three FIFO tasks at one priority; they cannot run
        // until it sleeps, then must run in spawn order, each to completion.
        let starter = spawn(TaskBuilder::new("starter").fifo(90), move || {
            let mut hs = Vec::new();
            let high_ran = Arc::new(AtomicBool::new(false));
            for name in 1..=3usize {
                let (l, high_ran) = (l.clone(), high_ran.clone());
                hs.push(spawn(TaskBuilder::new(&format!("fifo{name}")).fifo(10), move || {
                    l.push(name * 10); // start
                    if name == 1 {
                        // A higher-priority task wakes from a timer while task 1 spins in
                        // user mode: it must run at once, then task 1 goes on before 2. The
                        // spin lasts until it has run (a busy host may deliver the timer
                        // late), giving up after 5 s so a missed preemption fails, not hangs.
                        let (l2, h2) = (l.clone(), high_ran.clone());
                        spawn(TaskBuilder::new("high").fifo(50), move || {
                            kernel::time::sleep_ns(2_000_000);
                            l2.push(99);
                            h2.store(true, Ordering::Release);
                            0
                        });
                        let give_up = kernel::time::now_ns() + 5_000_000_000;
                        while !high_ran.load(Ordering::Acquire) && kernel::time::now_ns() < give_up {
                            spin_ns(100_000);
                        }
                    } else {
                        spin_ns(1_000_000);
                    }
                    l.push(name * 10 + 1); // end
                    0
                }));
            }
            hs.len() as i64
        });
        starter.join().unwrap()
    });
    assert_eq!(r.init, Ok(3));
    assert_eq!(log.to_vec(), vec![10, 99, 11, 20, 21, 30, 31], "bugs: {:?}", r.bugs);
    let fifo1 = r.tasks.iter().find(|t| t.name == "fifo1").unwrap();
    assert!(fifo1.stats.irq_preemptions >= 1, "fifo1 was preempted from user mode: {:?}", fifo1.stats);
}

#[test]
fn rr_tasks_alternate_in_slices() {
    let slice = 3;
    let cfg = Config { rr_timeslice_ticks: slice, ..Config::default() };
    let log = Arc::new(EventLog::new(4096));
    let l = log.clone();
    let r = run_with_timeout(cfg, 30, move || {
        let starter = spawn(TaskBuilder::new("starter").fifo(90), move || {
            let last = Arc::new(AtomicU64::new(u64::MAX));
            for who in 0..2u64 {
                let (l, last) = (l.clone(), last.clone());
                spawn(TaskBuilder::new(&format!("rr{who}")).rr(10), move || {
                    // 60 ticks, not 60 ms: a host that holds the CPU thread up delivers fewer
                    // tick signals, but jiffies (and the RR slice) count the ticks it coalesced.
                    let end = kernel::time::jiffies() + 60;
                    while kernel::time::jiffies() < end {
                        if last.swap(who, Ordering::AcqRel) != who {
                            l.push((who as usize) << 32 | kernel::time::jiffies() as usize);
                        }
                    }
                    0
                });
            }
            0
        });
        starter.join().unwrap()
    });
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
    let segs: Vec<(usize, usize)> = log.to_vec().iter().map(|v| (v >> 32, v & 0xffff_ffff)).collect();
    assert!(segs.len() >= 4, "expected several RR slices, got {segs:?}");
    for w in segs.windows(2) {
        assert_ne!(w[0].0, w[1].0, "RR tasks must alternate: {segs:?}");
    }
    // A slice ends only after `slice` ticks hit the task, so jiffies advance that much between
    // switches (ignoring the first, partial one and the final exits), less one: a task reads
    // jiffies when it first runs, and a busy host can deliver a tick between its switch-in and
    // that read (the tick is counted against its slice).
    for w in segs[1..segs.len() - 1].windows(2) {
        assert!(w[1].1 - w[0].1 >= slice as usize - 1, "slice shorter than {slice} ticks: {segs:?}");
    }
}

#[test]
fn rt_task_preempts_user_mode_fair_task_at_once() {
    let order = Arc::new(EventLog::new(8));
    let o = order.clone();
    let r = run_with_timeout(Config::default(), 30, move || {
        let rt_done = Arc::new(AtomicBool::new(false));
        let (o1, d1) = (o.clone(), rt_done.clone());
        let hog = spawn(TaskBuilder::new("hog"), move || {
            o1.push(1);
            let end = kernel::time::now_ns() + 5_000_000_000;
            while !d1.load(Ordering::Acquire) && kernel::time::now_ns() < end {}
            o1.push(3);
            0
        });
        let (o2, d2) = (o.clone(), rt_done.clone());
        let rt = spawn(TaskBuilder::new("rt").fifo(50), move || {
            kernel::time::sleep_ns(5_000_000);
            o2.push(2);
            d2.store(true, Ordering::Release);
            0
        });
        rt.join().unwrap();
        hog.join().unwrap()
    });
    assert_eq!(order.to_vec(), vec![1, 2, 3], "RT must run while the fair hog spins");
    let hog = r.tasks.iter().find(|t| t.name == "hog").unwrap();
    assert!(hog.stats.irq_preemptions >= 1);
}

#[test]
fn fair_tasks_share_cpu_by_weight() {
    let r = run_with_timeout(Config::default(), 60, || {
        let stop = Arc::new(AtomicBool::new(false));
        let mut hs = Vec::new();
        for nice in [0i8, 5, -5] {
            let stop = stop.clone();
            hs.push(spawn(TaskBuilder::new(&format!("nice{nice}")).nice(nice), move || {
                while !stop.load(Ordering::Acquire) {}
                0
            }));
        }
        let s = stop.clone();
        spawn(TaskBuilder::new("timer").fifo(99), move || {
            kernel::time::sleep_ns(600_000_000);
            s.store(true, Ordering::Release);
            0
        })
        .join()
        .unwrap();
        for h in hs {
            h.join().unwrap();
        }
        0
    });
    let weights = [(0i8, 1024.0), (5, 335.0), (-5, 3121.0)];
    let total_w: f64 = weights.iter().map(|w| w.1).sum();
    let runtime = |n: i8| r.tasks.iter().find(|t| t.name == format!("nice{n}")).unwrap().stats.runtime_ns as f64;
    let total_rt: f64 = weights.iter().map(|w| runtime(w.0)).sum();
    // Runtime is host wall time, so a busy host that stops the CPU thread charges whoever was
    // running: the order of the shares is exact, their size within 25% of the weights'.
    assert!(runtime(-5) > runtime(0) && runtime(0) > runtime(5), "shares not in weight order");
    for (nice, w) in weights {
        let want = w / total_w;
        let got = runtime(nice) / total_rt;
        assert!((got - want).abs() / want < 0.25, "nice {nice}: share {got:.3}, weight share {want:.3}");
    }
}

#[test]
fn none_model_never_preempts_kernel_mode() {
    let syscall_done_when_rt_ran = Arc::new(AtomicBool::new(false));
    let flag = syscall_done_when_rt_ran.clone();
    let r = run_with_timeout(Config::default(), 30, move || {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let worker = spawn(TaskBuilder::new("worker"), move || {
            syscall(|| {
                spin_ns(30_000_000); // 30 ms of kernel work: ~30 ticks and the RT wakeup land here
                d.store(true, Ordering::Release);
            });
            0
        });
        let rt = spawn(TaskBuilder::new("rt").fifo(50), move || {
            kernel::time::sleep_ns(3_000_000);
            flag.store(done.load(Ordering::Acquire), Ordering::Release);
            0
        });
        rt.join().unwrap();
        worker.join().unwrap()
    });
    assert!(syscall_done_when_rt_ran.load(Ordering::Acquire), "RT task ran inside the syscall under preempt=none");
    let worker = r.tasks.iter().find(|t| t.name == "worker").unwrap();
    assert_eq!(worker.stats.irq_preemptions, 0, "kernel-mode code was preempted by an interrupt");
    assert!(worker.stats.involuntary_switches >= 1, "the worker was switched out at ret_from_syscall");
}

#[test]
fn sched_yield_alternates_fifo_tasks_of_one_priority() {
    let log = Arc::new(EventLog::new(64));
    let l = log.clone();
    run_with_timeout(Config::default(), 30, move || {
        spawn(TaskBuilder::new("starter").fifo(90), move || {
            let hs: Vec<_> = (1..=2usize)
                .map(|who| {
                    let l = l.clone();
                    spawn(TaskBuilder::new(&format!("y{who}")).fifo(10), move || {
                        for _ in 0..4 {
                            l.push(who);
                            kernel::sched_yield();
                        }
                        0
                    })
                })
                .collect();
            hs.len() as i64
        })
        .join()
        .unwrap()
    });
    assert_eq!(log.to_vec(), vec![1, 2, 1, 2, 1, 2, 1, 2]);
}

/// The task table grows in chunks of 256 pids: 600 tasks spawned from tasks on two CPUs at
/// once (two chunk boundaries crossed while the other CPU schedules and looks tasks up) each
/// see their own pid and are all joined; the report lists every one of them.
#[test]
fn hundreds_of_tasks_across_chunk_boundaries_each_keep_their_pid() {
    let r = run_with_timeout(Config { cpus: 2, ..Config::default() }, 120, move || {
        let spawners: Vec<_> = (0..2u64)
            .map(|c| {
                spawn(TaskBuilder::new("spawner").cpus(1 << c), move || {
                    let hs: Vec<_> =
                        (0..300).map(|_| spawn(TaskBuilder::new("child"), || kernel::current_pid() as i64)).collect();
                    let pids: Vec<i64> = hs.into_iter().map(|h| h.join().unwrap()).collect();
                    let mut sorted = pids.clone();
                    sorted.sort_unstable();
                    sorted.dedup();
                    (sorted.len() == pids.len()) as i64 * pids.len() as i64
                })
            })
            .collect();
        spawners.into_iter().map(|s| s.join().unwrap()).sum()
    });
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
    assert_eq!(r.init, Ok(600), "every child saw a pid of its own");
    assert!(r.tasks.iter().filter(|t| t.name == "child").count() == 600, "the report lists every child");
}
