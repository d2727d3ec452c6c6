//! What more than one benchmark measures the same way, in one place.

use kernel::{spawn, TaskBuilder};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `iters` task switches, timed on the kernel's clock: two SCHED_FIFO 10 tasks call
/// `sched_yield` in turn, each `iters / 2` times. Call from inside a kernel instance; returns
/// the nanoseconds they took.
#[allow(dead_code)] // not every benchmark that shares this module switches tasks
pub(crate) fn task_switches(iters: u64) -> u64 {
    let half = iters.div_ceil(2);
    let t0 = kernel::time::now_ns();
    let hs: Vec<_> = (0..2)
        .map(|i| {
            spawn(TaskBuilder::new(&format!("yield{i}")).fifo(10), move || {
                for _ in 0..half {
                    kernel::sched_yield();
                }
                0
            })
        })
        .collect();
    for h in hs {
        let _ = h.join();
    }
    kernel::time::now_ns() - t0
}

/// `rounds` round trips between two host threads pinned to host CPUs `ping` and `pong` (the
/// same CPU for a switch, two for a cross-core wake-up), each woken in turn through futexes
/// (`thread::park`/`unpark`); returns the time they took. Both threads are the benchmark's own,
/// so no pinning leaks into the benchmarks that follow.
#[allow(dead_code)] // not every benchmark that shares this module measures the host
pub(crate) fn host_ping_pong(ping: usize, pong: usize, rounds: u64) -> Duration {
    let turn = Arc::new(AtomicU64::new(0));
    let (tx, rx) = std::sync::mpsc::channel::<std::thread::Thread>();
    let t = turn.clone();
    let ponger = std::thread::spawn(move || {
        let _ = hostlab::sched::pin_current_thread(pong);
        let pinger = rx.recv().unwrap();
        for i in 0..rounds {
            while t.load(Ordering::Acquire) != 2 * i + 1 {
                std::thread::park();
            }
            t.store(2 * i + 2, Ordering::Release);
            pinger.unpark();
        }
    });
    let pong_thread = ponger.thread().clone();
    let pinger = std::thread::spawn(move || {
        let _ = hostlab::sched::pin_current_thread(ping);
        tx.send(std::thread::current()).unwrap();
        let t0 = std::time::Instant::now();
        for i in 0..rounds {
            turn.store(2 * i + 1, Ordering::Release);
            pong_thread.unpark();
            while turn.load(Ordering::Acquire) != 2 * i + 2 {
                std::thread::park();
            }
        }
        t0.elapsed()
    });
    let d = pinger.join().unwrap();
    ponger.join().unwrap();
    d
}
