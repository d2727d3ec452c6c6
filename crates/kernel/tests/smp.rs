//! SMP: N CPUs (more than the host's cores: these tests oversubscribe), per-CPU run queues,
//! placement, RT push and pull, fair balancing, affinity, IPIs, and wakeups that cross CPUs.
//! Every test asserts places, counts and orders, never times.

mod common;

use common::{run_with_timeout, spin_ns};
use kernel::trace::{Event, TraceOptions};
use kernel::{raw_smp_processor_id, spawn, Config, PreemptModel, TaskBuilder, WaitQueue};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

fn cpus(n: usize) -> Config {
    Config { cpus: n, ..Config::default() }
}

/// Spins in user mode (preemptible by the tick) until `stop`.
fn spin_until(stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        spin_ns(20_000);
    }
}

#[test]
fn every_cpu_runs_its_idle_task_and_ksoftirqd_and_reports_its_figures() {
    for n in [2, 4] {
        let r = run_with_timeout(cpus(n), 60, || 7);
        assert_eq!(r.init, Ok(7));
        assert!(r.bugs.is_empty(), "{:?}", r.bugs);
        assert_eq!(r.cpus.len(), n);
        let names: Vec<&str> = r.tasks.iter().map(|t| t.name.as_str()).collect();
        for c in 0..n {
            assert!(names.contains(&format!("ksoftirqd/{c}").as_str()), "{names:?}");
        }
        assert!(r.log.contains(&format!("booting {n} CPUs")), "{}", r.log);
        assert_eq!(r.switches, r.cpus.iter().map(|c| c.switches).sum::<u64>());
        assert!(r.cpus.iter().all(|c| c.switches > 0), "every CPU ran its ksoftirqd: {:?}", r.cpus);
    }
}

/// N CPU-bound fair tasks, all spawned on CPU 0's watch, end up one per CPU.
#[test]
fn spinning_fair_tasks_spread_one_per_cpu() {
    for n in [2usize, 4] {
        let r = run_with_timeout(cpus(n), 120, move || {
            let stop = Arc::new(AtomicBool::new(false));
            let seen: Arc<Vec<AtomicUsize>> = Arc::new((0..n).map(|_| AtomicUsize::new(usize::MAX)).collect());
            let spread = Arc::new(AtomicBool::new(false));
            let hs: Vec<_> = (0..n)
                .map(|i| {
                    let (stop, seen, spread) = (stop.clone(), seen.clone(), spread.clone());
                    spawn(TaskBuilder::new(&format!("hog{i}")), move || {
                        let t0 = kernel::time::jiffies();
                        while !stop.load(Ordering::Acquire) && kernel::time::jiffies() - t0 < 5_000 {
                            seen[i].store(raw_smp_processor_id(), Ordering::Release);
                            spin_ns(50_000);
                            let mut cpus: Vec<usize> = seen.iter().map(|s| s.load(Ordering::Acquire)).collect();
                            cpus.sort_unstable();
                            cpus.dedup();
                            if cpus.len() == n && !cpus.contains(&usize::MAX) {
                                spread.store(true, Ordering::Release);
                                stop.store(true, Ordering::Release);
                            }
                        }
                        0
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            i64::from(spread.load(Ordering::Acquire))
        });
        assert_eq!(r.init, Ok(1), "{n} hogs never ran on {n} distinct CPUs at once: {:?}", r.cpus);
        // Fork placement may spread them at once, or the balancer later (migrations): either
        // way they must end up on n distinct CPUs, which is what is asserted above.
        assert!(r.bugs.is_empty(), "{:?}", r.bugs);
    }
}

/// Runs `body` in an RT task above every other of the test (fifo 90), so that the tests' RT
/// hogs cannot starve the task that drives them; returns its result.
fn controlled(config: Config, body: impl FnOnce() -> i64 + Send + 'static) -> kernel::RunReport {
    run_with_timeout(config, 180, move || spawn(TaskBuilder::new("control").fifo(90), body).join().unwrap())
}

/// Starts a task spinning in user mode (so that any model preempts it at an interrupt) until
/// `stop`; counts itself in `up` once running.
fn hog(b: TaskBuilder, stop: &Arc<AtomicBool>, up: &Arc<AtomicUsize>) -> kernel::TaskHandle {
    let (stop, up) = (stop.clone(), up.clone());
    spawn(b, move || {
        up.fetch_add(1, Ordering::AcqRel);
        spin_until(&stop);
        0
    })
}

/// An RT wakeup goes to the allowed CPU running the lowest priority: with CPU 0 at rt 50, CPU 1
/// fair and CPU 2 at rt 30, a new rt 60 task runs on CPU 1.
#[test]
fn rt_task_is_pushed_to_the_cpu_running_the_lowest_priority() {
    let r = controlled(cpus(3), || {
        let (stop, up) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let hogs = [
            hog(TaskBuilder::new("rt50").fifo(50).cpus(1 << 0), &stop, &up),
            hog(TaskBuilder::new("fair").cpus(1 << 1), &stop, &up),
            hog(TaskBuilder::new("rt30").fifo(30).cpus(1 << 2), &stop, &up),
        ];
        while up.load(Ordering::Acquire) < 3 {
            kernel::time::sleep_ns(100_000);
        }
        let ran_on = Arc::new(AtomicUsize::new(usize::MAX));
        let ro = ran_on.clone();
        let h = spawn(TaskBuilder::new("rt60").fifo(60), move || {
            ro.store(raw_smp_processor_id(), Ordering::Release);
            0
        });
        h.join().unwrap();
        stop.store(true, Ordering::Release);
        hogs.iter().for_each(|h| assert_eq!(h.join(), Ok(0)));
        ran_on.load(Ordering::Acquire) as i64
    });
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
    assert_eq!(r.init, Ok(1), "the rt 60 task did not run on the fair CPU 1");
}

/// A CPU whose RT task blocks pulls an RT task waiting on another CPU that may run there.
#[test]
fn a_cpu_whose_rt_task_blocks_pulls_a_waiting_rt_task() {
    let r = controlled(cpus(2), || {
        let (stop, up) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (release, released) = (Arc::new(WaitQueue::new()), Arc::new(AtomicBool::new(false)));
        let (s, u, rl, rd) = (stop.clone(), up.clone(), release.clone(), released.clone());
        // CPU 1: rt 60, which will block.
        let blocker = spawn(TaskBuilder::new("rt60").fifo(60).cpus(1 << 1), move || {
            u.fetch_add(1, Ordering::AcqRel);
            spin_until(&rd);
            rl.wait_event(|| s.load(Ordering::Acquire));
            0
        });
        let hog0 = hog(TaskBuilder::new("rt50").fifo(50).cpus(1 << 0), &stop, &up);
        while up.load(Ordering::Acquire) < 2 {
            kernel::time::sleep_ns(100_000);
        }
        // rt 40, allowed on both: both run higher, so it waits.
        let ran_on = Arc::new(AtomicUsize::new(usize::MAX));
        let ro = ran_on.clone();
        let waiter = spawn(TaskBuilder::new("rt40").fifo(40), move || {
            ro.store(raw_smp_processor_id(), Ordering::Release);
            0
        });
        kernel::time::sleep_ns(2_000_000);
        let before = ran_on.load(Ordering::Acquire);
        released.store(true, Ordering::Release); // the rt 60 task blocks: CPU 1 pulls rt 40
        waiter.join().unwrap();
        stop.store(true, Ordering::Release);
        release.wake_up();
        blocker.join().unwrap();
        hog0.join().unwrap();
        assert_eq!(before, usize::MAX, "rt 40 ran while both CPUs ran higher");
        ran_on.load(Ordering::Acquire) as i64
    });
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
    assert_eq!(r.init, Ok(1), "rt 40 was not pulled to CPU 1");
}

/// Every switch to a task with a CPU mask happens on a CPU of its mask (from the per-CPU trace).
#[test]
fn affinity_holds_at_every_switch() {
    let config = Config { cpus: 4, trace: TraceOptions::parse("events", 1 << 16).unwrap(), ..Config::default() };
    let r = run_with_timeout(config, 120, || {
        let masks = [0b0011u64, 0b0100, 0b1010, 0b1111, 0b1000, 0b0001];
        let hs: Vec<_> = masks
            .iter()
            .enumerate()
            .map(|(i, &m)| {
                spawn(TaskBuilder::new(&format!("m{m:#x}-{i}")).cpus(m), move || {
                    for _ in 0..40 {
                        spin_ns(100_000);
                        kernel::time::sleep_ns(50_000);
                    }
                    0
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        0
    });
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
    let tr = r.trace.expect("events");
    assert_eq!(tr.events_lost, 0);
    let mut checked = 0;
    for rec in &tr.events {
        if let Event::SchedSwitch { next, .. } = rec.event {
            let name = &tr.task_names[next];
            if let Some(m) = name.strip_prefix("m0x").and_then(|s| s.split('-').next()) {
                let mask = u64::from_str_radix(m, 16).unwrap();
                assert!(mask & (1 << rec.cpu) != 0, "{name} switched in on CPU {}", rec.cpu);
                checked += 1;
            }
        }
    }
    assert!(checked >= 6 * 40, "only {checked} switches checked");
}

/// Ping-pong between two tasks on two CPUs through wait queues: every wakeup crosses CPUs, and
/// none is lost (a lost one would hang the run).
#[test]
fn cross_cpu_ping_pong_loses_no_wakeup() {
    const ROUNDS: u64 = 5_000;
    for model in [PreemptModel::None, PreemptModel::Full] {
        let r = run_with_timeout(Config { cpus: 2, preempt: model, ..Config::default() }, 240, || {
            let ball = Arc::new(AtomicU64::new(0));
            let (qa, qb) = (Arc::new(WaitQueue::new()), Arc::new(WaitQueue::new()));
            let (b2, qa2, qb2) = (ball.clone(), qa.clone(), qb.clone());
            let pong = spawn(TaskBuilder::new("pong").cpus(1 << 1), move || {
                for i in 0..ROUNDS {
                    qb2.wait_event(|| b2.load(Ordering::Acquire) == 2 * i + 1);
                    b2.store(2 * i + 2, Ordering::Release);
                    qa2.wake_up();
                }
                0
            });
            let ping = spawn(TaskBuilder::new("ping").cpus(1 << 0), move || {
                for i in 0..ROUNDS {
                    ball.store(2 * i + 1, Ordering::Release);
                    qb.wake_up();
                    qa.wait_event(|| ball.load(Ordering::Acquire) == 2 * i + 2);
                }
                0
            });
            ping.join().unwrap();
            pong.join().unwrap();
            0
        });
        assert_eq!(r.init, Ok(0));
        assert!(r.bugs.is_empty(), "{:?}", r.bugs);
        assert!(r.cpus.iter().all(|c| c.ipis_received > 0), "{model}: {:?}", r.cpus);
    }
}

/// `smp_call_function_single/many`, with and without waiting, from every CPU to every CPU:
/// every call runs exactly once, on its CPU.
#[test]
fn function_call_ipis_run_once_on_each_target() {
    let r = run_with_timeout(cpus(3), 120, || {
        let runs: Arc<Vec<AtomicU64>> = Arc::new((0..3).map(|_| AtomicU64::new(0)).collect());
        let wrong = Arc::new(AtomicU64::new(0));
        let hs: Vec<_> = (0..3)
            .map(|c| {
                let (runs, wrong) = (runs.clone(), wrong.clone());
                spawn(TaskBuilder::new(&format!("caller{c}")).cpus(1 << c), move || {
                    for i in 0..2_000u64 {
                        let target = (c + 1 + i as usize % 2) % 3;
                        let (r2, w2) = (runs.clone(), wrong.clone());
                        kernel::smp::smp_call_function_single(
                            target,
                            move || {
                                if raw_smp_processor_id() != target {
                                    w2.fetch_add(1, Ordering::Relaxed);
                                }
                                r2[target].fetch_add(1, Ordering::Relaxed);
                            },
                            i % 2 == 0,
                        )
                        .unwrap();
                    }
                    let r3 = runs.clone();
                    kernel::smp::smp_call_function_many(
                        0b111,
                        move || {
                            r3[raw_smp_processor_id()].fetch_add(1, Ordering::Relaxed);
                        },
                        true,
                    )
                    .unwrap();
                    0
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // The calls that did not wait may still be queued: wait until all have run.
        let total = || runs.iter().map(|r| r.load(Ordering::Acquire)).sum::<u64>();
        let t0 = kernel::time::jiffies();
        while total() < 3 * 2_000 + 9 && kernel::time::jiffies() - t0 < 10_000 {
            kernel::time::sleep_ns(1_000_000);
        }
        assert_eq!(wrong.load(Ordering::Acquire), 0, "a call ran on the wrong CPU");
        total() as i64
    });
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
    assert_eq!(r.init, Ok(3 * 2_000 + 9));
    assert!(r.cpus.iter().all(|c| c.ipis_sent > 0 && c.ipis_received > 0), "{:?}", r.cpus);
}

/// IPIs sent while the other CPUs are still coming up (init's first act, before a CPU has
/// published its doorbell) are not lost: a waited call to every other CPU returns, and each
/// ran it once, over many boots.
#[test]
fn ipis_sent_while_cpus_come_up_are_not_lost() {
    for boot in 0..20 {
        let r = run_with_timeout(cpus(4), 60, || {
            let runs: Arc<Vec<AtomicU64>> = Arc::new((0..4).map(|_| AtomicU64::new(0)).collect());
            let me = raw_smp_processor_id();
            let r2 = runs.clone();
            kernel::smp::smp_call_function_many(
                0b1111 & !(1 << me),
                move || {
                    r2[raw_smp_processor_id()].fetch_add(1, Ordering::Relaxed);
                },
                true,
            )
            .unwrap();
            let ran: Vec<u64> = runs.iter().map(|r| r.load(Ordering::Acquire)).collect();
            (0..4).filter(|&c| ran[c] == u64::from(c != me)).count() as i64
        });
        assert!(r.bugs.is_empty(), "boot {boot}: {:?}", r.bugs);
        assert_eq!(r.init, Ok(4), "boot {boot}: a CPU ran the call a wrong number of times");
    }
}

#[test]
fn bad_smp_input_is_refused_with_the_option_named() {
    let e = |s: &str| Config::from_cmdline(s).unwrap_err().0;
    assert!(e("cpus=0").contains("cpus=0 is out of range"));
    assert!(e("cpus=65").contains("cpus=65 is out of range"));
    let r = run_with_timeout(cpus(2), 30, || {
        let bad_mask = kernel::set_cpus_allowed(kernel::current_pid(), 0b100).unwrap_err();
        assert!(bad_mask.contains("mask 0x4 names no CPU of this instance"), "{bad_mask}");
        let bad_call = kernel::smp::smp_call_function_single(5, || {}, true).unwrap_err();
        assert!(bad_call.contains("names no CPU"), "{bad_call}");
        // A spawn with a mask naming no CPU panics: an oops of the spawning task, naming it.
        let spawner = spawn(TaskBuilder::new("spawner"), || {
            spawn(TaskBuilder::new("nowhere").cpus(0b1000), || 0).join().unwrap_or(0)
        });
        let oops = spawner.join().unwrap_err();
        i64::from(oops.contains("oops: ") && oops.contains("its CPU mask 0x8 names no CPU of this instance"))
    });
    assert_eq!(r.init, Ok(1));
}

#[test]
fn set_cpus_allowed_moves_a_running_task_off_its_cpu() {
    let r = run_with_timeout(Config { cpus: 2, preempt: PreemptModel::Full, ..Config::default() }, 60, || {
        let on = Arc::new(AtomicUsize::new(usize::MAX));
        let go = Arc::new(AtomicBool::new(false));
        let (o, g) = (on.clone(), go.clone());
        let h = spawn(TaskBuilder::new("mover").cpus(1 << 0), move || {
            o.store(raw_smp_processor_id(), Ordering::Release);
            while !g.load(Ordering::Acquire) {
                spin_ns(10_000);
            }
            let t0 = kernel::time::jiffies();
            while raw_smp_processor_id() != 1 && kernel::time::jiffies() - t0 < 5_000 {
                spin_ns(10_000);
            }
            raw_smp_processor_id() as i64
        });
        while on.load(Ordering::Acquire) == usize::MAX {
            kernel::time::sleep_ns(100_000);
        }
        kernel::set_cpus_allowed(h.id(), 1 << 1).unwrap();
        go.store(true, Ordering::Release);
        h.join().unwrap()
    });
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
    assert_eq!(r.init, Ok(1));
}

#[test]
fn smp_processor_id_in_preemptible_code_is_a_bug_naming_the_task() {
    let r = run_with_timeout(cpus(2), 30, || {
        let h = spawn(TaskBuilder::new("careless"), || {
            let _ = kernel::smp_processor_id(); // preemptible: a BUG
            {
                let _g = kernel::preempt::preempt_disable();
                let _ = kernel::smp_processor_id(); // fine
            }
            0
        });
        h.join().unwrap();
        0
    });
    assert_eq!(r.bugs.len(), 1, "{:?}", r.bugs);
    let b = &r.bugs[0];
    assert!(b.contains("using smp_processor_id() in preemptible code"), "{b}");
    assert!(b.contains("task 'careless'") && b.contains("on CPU") && b.contains("tests/smp.rs"), "{b}");
}

#[test]
fn migrating_a_task_that_holds_a_preempt_count_is_a_bug() {
    let r = run_with_timeout(cpus(2), 30, || {
        // The holder sleeps until it has been moved: no timing decides the order, which a
        // loaded host once turned around (the move before the sleep).
        let (q, moved) = (Arc::new(WaitQueue::new()), Arc::new(AtomicBool::new(false)));
        let (q2, moved2) = (q.clone(), moved.clone());
        let h = spawn(TaskBuilder::new("holder").cpus(1 << 0), move || {
            let _g = kernel::preempt::preempt_disable();
            q2.wait_event(|| moved2.load(Ordering::Acquire)); // schedules while atomic: BUG 1
            0
        });
        while q.is_empty() {
            kernel::time::sleep_ns(1_000_000);
        }
        kernel::time::sleep_ns(1_000_000); // from queued to asleep: a few instructions
        kernel::set_cpus_allowed(h.id(), 1 << 1).unwrap(); // its wakeup moves it: BUG 2
        moved.store(true, Ordering::Release);
        q.wake_up();
        h.join().unwrap();
        0
    });
    assert!(r.bugs.iter().any(|b| b.contains("scheduling while atomic")), "{:?}", r.bugs);
    let m = r.bugs.iter().find(|b| b.contains("migration of task 'holder'")).unwrap_or_else(|| panic!("{:?}", r.bugs));
    assert!(m.contains("holding preempt_count 0x1") && m.contains("on CPU"), "{m}");
}

/// RT sleepers keep waking while a migrator moves busy RR tasks between CPUs every 500 us (a
/// wakeup lost in a migration would hang this; an interrupt replay that kept the old CPU's
/// words across a preemption once left a CPU masked for good here).
#[test]
fn wakeups_survive_forced_migrations() {
    let config = Config { cpus: 2, rr_timeslice_ticks: 1, ..Config::default() };
    let r = controlled(config, || {
        let stop = Arc::new(AtomicBool::new(false));
        let up = Arc::new(AtomicUsize::new(0));
        let hogs: Vec<_> = (0..3).map(|i| hog(TaskBuilder::new(&format!("rr{i}")).rr(10), &stop, &up)).collect();
        let ids: Vec<usize> = hogs.iter().map(|h| h.id()).collect();
        let s = stop.clone();
        let migrator = spawn(TaskBuilder::new("migrator").fifo(80), move || {
            let mut pass = 0;
            while !s.load(Ordering::Acquire) {
                kernel::time::sleep_ns(500_000);
                pass += 1;
                for (i, &id) in ids.iter().enumerate() {
                    kernel::set_cpus_allowed(id, 1 << ((i + pass) % 2)).unwrap();
                }
            }
            pass as i64
        });
        for _ in 0..100 {
            kernel::time::sleep_ns(1_000_000);
        }
        stop.store(true, Ordering::Release);
        let passes = migrator.join().unwrap();
        hogs.iter().for_each(|h| assert_eq!(h.join(), Ok(0)));
        passes
    });
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
    assert!(r.init.clone().unwrap() > 0, "{:?}", r.init);
    assert!(r.cpus.iter().map(|c| c.migrations).sum::<u64>() > 0, "{:?}", r.cpus);
}

/// A host thread raises a device on CPU 0 100,000 times, each time waiting until the task it
/// wakes on CPU 1 has seen the event: every wakeup crosses CPUs, and a lost one would stop the
/// storm (reported with its number, not a hang).
#[test]
fn a_wake_storm_from_a_host_thread_across_cpus_loses_no_wakeup() {
    const EVENTS: u64 = 100_000;
    let r = run_with_timeout(cpus(2), 600, || {
        let (produced, seen) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let wq = Arc::new(WaitQueue::new());
        let (p1, w1) = (produced.clone(), wq.clone());
        let dev = kernel::device::Device::register_on(0, "storm", move || {
            p1.fetch_add(1, Ordering::AcqRel);
            w1.wake_up();
        });
        let (p2, s2, w2) = (produced.clone(), seen.clone(), wq.clone());
        let consumer = spawn(TaskBuilder::new("consumer").cpus(1 << 1), move || {
            while s2.load(Ordering::Acquire) < EVENTS {
                let last = s2.load(Ordering::Acquire);
                w2.wait_event(|| p2.load(Ordering::Acquire) > last);
                s2.store(p2.load(Ordering::Acquire), Ordering::Release);
            }
            0
        });
        let (raiser, s3) = (dev.raiser(), seen.clone());
        let host = std::thread::spawn(move || {
            for i in 0..EVENTS {
                raiser.raise();
                let t0 = std::time::Instant::now();
                while s3.load(Ordering::Acquire) <= i {
                    if t0.elapsed() > std::time::Duration::from_secs(10) {
                        return Err(format!("wakeup {i} lost: seen {}", s3.load(Ordering::Acquire)));
                    }
                    std::thread::yield_now();
                }
            }
            Ok(())
        });
        // Wait in the kernel (a host join would hold this task's CPU, where the consumer may
        // have to run).
        while !host.is_finished() {
            kernel::time::sleep_ns(1_000_000);
        }
        let lost = host.join().unwrap();
        if let Err(e) = &lost {
            eprintln!("{e}");
            seen.store(EVENTS, Ordering::Release);
            produced.store(EVENTS + 1, Ordering::Release);
            wq.wake_up();
        }
        consumer.join().unwrap();
        drop(dev);
        i64::from(lost.is_ok())
    });
    assert_eq!(r.init, Ok(1), "a wakeup was lost (see stderr)");
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
    assert!(r.cpus[1].ipis_received > 0, "{:?}", r.cpus);
}

/// The model is switched through every model while tasks on every CPU run system calls of
/// atoms with preemption points: no `BUG:`, every task finishes, no site stays armed by it.
#[test]
fn the_model_switches_while_every_cpu_runs_kernel_code() {
    let r = run_with_timeout(Config { cpus: 3, ..Config::default() }, 180, || {
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..3)
            .map(|c| {
                let stop = stop.clone();
                spawn(TaskBuilder::new(&format!("kworker{c}")).cpus(1 << c), move || {
                    let mut n = 0;
                    while !stop.load(Ordering::Acquire) {
                        kernel::syscall(|| {
                            for _ in 0..20 {
                                spin_ns(20_000);
                                kernel::preempt_point!();
                            }
                        });
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let switcher = spawn(TaskBuilder::new("switcher").fifo(50), move || {
            for round in 0..3 {
                for m in PreemptModel::ALL.iter().cycle().skip(round + 1).take(PreemptModel::ALL.len()) {
                    kernel::set_preempt_model(*m).unwrap();
                    kernel::time::sleep_ns(2_000_000);
                }
            }
            kernel::set_preempt_model(PreemptModel::None).unwrap();
            0
        });
        switcher.join().unwrap();
        stop.store(true, Ordering::Release);
        workers.iter().map(|w| w.join().unwrap()).min().unwrap()
    });
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
    assert!(r.init.clone().unwrap() > 0, "every CPU's worker ran system calls: {:?}", r.init);
    assert_eq!(r.log.matches("preempt: switched from").count(), 3 * PreemptModel::ALL.len() + 1, "{}", r.log);
}
