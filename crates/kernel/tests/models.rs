//! Preemption models in kernel mode: `full` at interrupt exit, deferred by `preempt_disable`
//! and by foreign code; `voluntary` at points; switching the model while tasks run.

mod common;
use common::{run_with_timeout, spin_ns, RtWakeup};
use kernel::{spawn, syscall, Config, PreemptModel, TaskBuilder};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

fn cfg(m: PreemptModel) -> Config {
    Config { preempt: m, ..Config::default() }
}

/// A worker in a syscall runs `body`; a device interrupt `irq_after_ns` into it wakes an RT
/// task, which returns the value of `probe()` when it runs. Bodies keep their first phase
/// going until the interrupt has fired, so a late host thread cannot move it to a later phase.
fn until_fired(f: &AtomicBool, ns: u64) {
    let end = kernel::time::now_ns() + ns;
    while kernel::time::now_ns() < end || !f.load(Ordering::Acquire) {
        for _ in 0..256 {
            std::hint::spin_loop(); // in kernel text: the clock (vDSO) is read rarely
        }
    }
}

fn rt_probe(
    model: PreemptModel,
    irq_after_ns: u64,
    body: fn(&AtomicUsize, &AtomicBool),
    probe: fn(&AtomicUsize) -> usize,
) -> usize {
    let r = run_with_timeout(cfg(model), 60, move || {
        let state = Arc::new(AtomicUsize::new(0));
        let wake = RtWakeup::new("probe");
        let s = state.clone();
        let rt = wake.spawn_rt("rt", 50, move || probe(&s) as i64);
        let (s, wk) = (state.clone(), wake.clone());
        let worker = spawn(TaskBuilder::new("worker"), move || {
            syscall(|| {
                wk.device().raise_at(kernel::time::now_ns() + irq_after_ns);
                body(&s, wk.fired_flag())
            });
            0
        });
        worker.join().unwrap();
        rt.join().unwrap()
    });
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
    r.init.unwrap() as usize
}

#[test]
fn full_preempts_kernel_code_at_interrupt_exit() {
    // state: 1 while spinning in kernel code, 2 after.
    let seen = rt_probe(
        PreemptModel::Full,
        1_000_000,
        |s, f| {
            s.store(1, Ordering::Release);
            until_fired(f, 30_000_000);
            s.store(2, Ordering::Release);
        },
        |s| s.load(Ordering::Acquire),
    );
    assert_eq!(seen, 1, "under full the RT task runs in the middle of the kernel code");
}

#[test]
fn full_and_lazy_wait_for_the_end_of_a_preempt_disable_section() {
    for model in [PreemptModel::Full, PreemptModel::Lazy] {
        // state: 1 inside the section, 2 between its end and the syscall's end, 3 after.
        let seen = rt_probe(
            model,
            1_000_000,
            |s, f| {
                {
                    let _g = kernel::preempt::preempt_disable();
                    s.store(1, Ordering::Release);
                    until_fired(f, 20_000_000);
                    s.store(2, Ordering::Release);
                } // preempt_enable: the count reaches zero with a reschedule due
                spin_ns(10_000_000);
                s.store(3, Ordering::Release);
            },
            |s| s.load(Ordering::Acquire),
        );
        assert_eq!(seen, 2, "{model}: the RT task runs at the section's preempt_enable");
    }
}

#[test]
fn full_never_preempts_foreign_code() {
    // state: 1 while inside a host libc call (a 20 ms host sleep), 2 after it returned.
    let seen = rt_probe(
        PreemptModel::Full,
        2_000_000,
        |s, _| {
            s.store(1, Ordering::Release);
            std::thread::sleep(std::time::Duration::from_millis(20)); // libc: nanosleep
            s.store(2, Ordering::Release);
            spin_ns(20_000_000);
            s.store(3, Ordering::Release);
        },
        |s| s.load(Ordering::Acquire),
    );
    assert_eq!(seen, 2, "preempted inside libc (1) or only at ret_from_syscall (3)");
}

#[test]
fn none_does_not_preempt_at_points_and_voluntary_does() {
    fn atoms(s: &AtomicUsize, f: &AtomicBool) {
        for i in 1..=5 {
            until_fired(f, 3_000_000);
            s.store(i, Ordering::Release);
            kernel::preempt_point!();
        }
    }
    let probe = |s: &AtomicUsize| s.load(Ordering::Acquire);
    assert_eq!(rt_probe(PreemptModel::None, 1_000_000, atoms, probe), 5);
    assert_eq!(rt_probe(PreemptModel::Voluntary, 1_000_000, atoms, probe), 1);
}

#[test]
fn switching_models_mid_run_loses_and_duplicates_no_work() {
    const UNITS: u64 = 400;
    let r = run_with_timeout(cfg(PreemptModel::None), 120, || {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let worker = spawn(TaskBuilder::new("worker"), move || {
            let mut mine = 0;
            for _ in 0..UNITS / 10 {
                mine += syscall(|| {
                    let mut n = 0;
                    for _ in 0..10 {
                        spin_ns(100_000);
                        n += 1;
                        d.fetch_add(1, Ordering::AcqRel);
                        kernel::preempt_point!();
                    }
                    n
                });
            }
            mine as i64
        });
        let st = stop.clone();
        let rt = spawn(TaskBuilder::new("rt").fifo(50), move || {
            let mut runs = 0;
            while !st.load(Ordering::Acquire) {
                kernel::time::sleep_ns(300_000);
                runs += 1;
            }
            runs
        });
        let models = [PreemptModel::Voluntary, PreemptModel::Full, PreemptModel::None];
        let switcher = spawn(TaskBuilder::new("switcher").fifo(60), move || {
            let mut switches = 0;
            for i in 0..40 {
                kernel::time::sleep_ns(1_000_000);
                kernel::set_preempt_model(models[i % models.len()]).unwrap();
                switches += 1;
            }
            switches
        });
        let switches = switcher.join().unwrap();
        let mine = worker.join().unwrap();
        stop.store(true, Ordering::Release);
        let rt_runs = rt.join().unwrap();
        assert!(rt_runs > 10);
        assert_eq!(mine as u64, UNITS);
        assert_eq!(done.load(Ordering::Acquire), UNITS);
        switches
    });
    assert_eq!(r.init, Ok(40));
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
    assert_eq!(r.log.matches("preempt: switched from").count(), 40, "{}", r.log);
}

#[test]
fn a_running_kernel_switches_to_each_model() {
    let r = run_with_timeout(Config::default(), 30, || {
        for m in PreemptModel::ALL {
            kernel::set_preempt_model(m).unwrap();
            assert_eq!(kernel::preempt_model(), m);
        }
        kernel::set_preempt_model(PreemptModel::None).unwrap();
        1
    });
    assert_eq!(r.init, Ok(1));
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
}

/// A fair task sleeping 5 ms wakes (from the hrtimer interrupt) while a fair worker is 30 ms
/// into kernel code made of 15 atoms; it returns the worker's progress when it runs: atoms done
/// (0..=15; 15 = at `ret_from_syscall`), or 100 once the worker is back in user mode. HZ=1, so
/// a tick falls in the window only when the host holds the instance up for most of a second; a
/// run in which one did says nothing about the wakeup alone and is run again, up to eight runs
/// in all.
fn fair_wakeup_probe(model: PreemptModel) -> usize {
    const RUNS: usize = 8;
    for _ in 0..RUNS {
        if let (progress, 0) = fair_wakeup_run(model) {
            return progress;
        }
    }
    panic!(
        "{model:?}: a tick fell inside the 30 ms system call in all {RUNS} runs (is the host stalling the CPU thread?)"
    );
}

/// One run of [`fair_wakeup_probe`]: the progress seen and the ticks taken during the syscall.
fn fair_wakeup_run(model: PreemptModel) -> (usize, u64) {
    let config = Config { preempt: model, hz: 1, ..Config::default() };
    let r = run_with_timeout(config, 60, || {
        let progress = Arc::new(AtomicUsize::new(0));
        let p = progress.clone();
        let sleeper = spawn(TaskBuilder::new("sleeper"), move || {
            kernel::time::sleep_ns(5_000_000);
            p.load(Ordering::Acquire) as i64
        });
        let p = progress.clone();
        let worker = spawn(TaskBuilder::new("worker"), move || {
            let ticks = syscall(|| {
                let j0 = kernel::time::jiffies();
                for i in 1..=15 {
                    spin_ns(2_000_000);
                    p.store(i, Ordering::Release);
                    kernel::preempt_point!();
                }
                kernel::time::jiffies() - j0
            });
            p.store(100, Ordering::Release);
            ticks as i64
        });
        let ticks = worker.join().unwrap();
        (sleeper.join().unwrap() << 8) | ticks.min(255)
    });
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
    let v = r.init.unwrap() as u64;
    ((v >> 8) as usize, v & 0xff)
}

#[test]
fn a_fair_wakeup_preempts_kernel_code_under_full_but_waits_under_lazy() {
    let full = fair_wakeup_probe(PreemptModel::Full);
    assert!(full < 15, "full: the woken fair task runs inside the syscall, got {full}");
    let lazy = fair_wakeup_probe(PreemptModel::Lazy);
    assert_eq!(lazy, 15, "lazy: no tick came, so the fair wakeup waits for the return to user mode");
}

#[test]
fn a_fair_wakeup_takes_a_point_under_voluntary_but_not_under_cpulock() {
    let voluntary = fair_wakeup_probe(PreemptModel::Voluntary);
    // The wakeup comes 5 ms in, during atom 3 on a quiet host; a host that holds the CPU
    // thread back during the first 2 ms spin moves it into atom 1 or 2. Any point inside the
    // system call is right; only the end of the call (15) would be wrong.
    assert!((1..15).contains(&voluntary), "voluntary: at the next point after the wakeup, got {voluntary}");
    let cpulock = fair_wakeup_probe(PreemptModel::Cpulock);
    assert_eq!(cpulock, 15, "cpulock: only an RT task locks the next quantum; the fair one waits for ret_from_syscall");
}

#[test]
fn lazy_fair_wakeup_is_served_at_the_next_tick() {
    // HZ=1000: the lazy flag set by the wakeup is promoted at the next tick, so the sleeper
    // runs inside the worker's system call even under lazy. The call spins until the sleeper
    // has run, 5 s at most (a host that holds the CPU thread up cannot end it early); only a
    // sleeper that waited for `ret_from_syscall` finds it over.
    let config = Config { preempt: PreemptModel::Lazy, hz: 1000, ..Config::default() };
    let r = run_with_timeout(config, 60, || {
        let progress = Arc::new(AtomicUsize::new(0));
        let slept = Arc::new(AtomicBool::new(false));
        let (p, s) = (progress.clone(), slept.clone());
        let sleeper = spawn(TaskBuilder::new("sleeper"), move || {
            kernel::time::sleep_ns(5_000_000);
            s.store(true, Ordering::Release);
            p.load(Ordering::Acquire) as i64
        });
        let p = progress.clone();
        let worker = spawn(TaskBuilder::new("worker"), move || {
            syscall(|| {
                let give_up = kernel::time::now_ns() + 5_000_000_000;
                while !slept.load(Ordering::Acquire) && kernel::time::now_ns() < give_up {
                    spin_ns(100_000);
                }
                p.store(1, Ordering::Release);
            });
            0
        });
        worker.join().unwrap();
        sleeper.join().unwrap()
    });
    assert_eq!(r.init, Ok(0), "the sleeper ran inside the syscall, at a tick");
}
