//! A task may call host code that takes a host lock (a `std::sync::Mutex`) when it holds
//! preemption off around it: the tasks of one CPU share its host thread, so a task preempted
//! while holding such a lock would leave the next task of that CPU blocking the whole CPU on
//! it. With the count raised no interrupt exit, point or wakeup switches tasks, under every
//! model, and every lock round completes.

mod common;
use common::run_with_timeout;
use kernel::{spawn, Config, PreemptModel, TaskBuilder};
use std::sync::Mutex;

static ROUNDS: Mutex<u64> = Mutex::new(0);

#[test]
fn tasks_hold_a_host_mutex_with_preemption_off_under_every_model() {
    const TASKS: usize = 4;
    const EACH: u64 = 3000;
    for m in PreemptModel::ALL {
        *ROUNDS.lock().unwrap() = 0;
        let r = run_with_timeout(Config { cpus: 2, preempt: m, ..Config::default() }, 60, move || {
            // On each CPU an RT task that sleeps every third round (its timer wakeups preempt
            // the other) and a fair one that never sleeps.
            let tasks: Vec<_> = (0..TASKS)
                .map(|i| {
                    let b = match i % 2 {
                        0 => TaskBuilder::new(&format!("rt{i}")).fifo(80),
                        _ => TaskBuilder::new(&format!("fair{i}")),
                    };
                    spawn(b.cpus(1 << (i / 2)), move || {
                        for k in 0..EACH {
                            {
                                let _off = kernel::preempt::preempt_disable();
                                *ROUNDS.lock().unwrap() += 1;
                            }
                            if i % 2 == 0 && k % 3 == 0 {
                                kernel::time::sleep_ns(50_000);
                            }
                        }
                        0
                    })
                })
                .collect();
            tasks.into_iter().map(|t| t.join().unwrap()).sum()
        });
        assert_eq!(r.init, Ok(0), "{m}: {:?}", r.bugs);
        assert!(r.bugs.is_empty(), "{m}: {:?}", r.bugs);
        assert_eq!(*ROUNDS.lock().unwrap(), TASKS as u64 * EACH, "{m}");
    }
}
