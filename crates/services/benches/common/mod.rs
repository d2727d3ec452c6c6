//! What more than one benchmark measures the same way, in one place.

use kernel::{spawn, TaskBuilder};

/// `iters` task switches, timed on the kernel's clock: two SCHED_FIFO 10 tasks call
/// `sched_yield` in turn, each `iters / 2` times. Call from inside a kernel instance; returns
/// the nanoseconds they took.
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
