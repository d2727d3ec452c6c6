//! Run-queue locking: one CPU's lock, a task's run queue, two run queues in order.
//!
//! **Mechanism.** [`rq_lock`] takes one CPU's run-queue lock and notes it in the locking CPU's
//! `held_rqs` mask. [`task_rq_lock`] is Linux's loop: read the task's CPU, lock that run queue,
//! and keep the lock only if the task still names that CPU (it can change only under the lock
//! just taken, so from then on it cannot). [`double_rq_lock`] locks two run queues lower CPU
//! first, as Linux's `double_rq_lock`, so two CPUs locking the same pair cannot deadlock.
//!
//! **Invariant.** Run-queue locks are taken in ascending CPU order: taking one while holding a
//! higher (or the same) CPU's is a `BUG:` report naming the task, the CPU and the place, made
//! before the lock is taken (so the report itself cannot deadlock on it).

use super::rq::Rq;
use crate::arch::{Arch, IrqSpinGuard, A};
use crate::instance::Kernel;
use crate::task::TaskId;
use core::ops::{Deref, DerefMut};
use core::panic::Location;
use core::sync::atomic::{AtomicU64, Ordering};

/// A locked run queue; unlocking clears it from the holder's `held_rqs`. IRQs stay masked
/// from before the holder's CPU is read until after the lock is released, so the holder is
/// the CPU that runs the whole critical section, and its `held_rqs` is touched by that CPU's
/// thread alone (plain loads and stores suffice: no handler runs on it meanwhile).
pub(crate) struct RqGuard<'a> {
    guard: IrqSpinGuard<'a, Rq>,
    /// The holder's `held_rqs`, found once at the lock (the unlock clears `cpu`'s bit in it).
    held: &'a AtomicU64,
    cpu: usize,
    _irqs: crate::preempt::count::RawIrqGuard, // dropped after `guard`: fields drop in order
}

impl Deref for RqGuard<'_> {
    type Target = Rq;
    fn deref(&self) -> &Rq {
        &self.guard
    }
}

impl DerefMut for RqGuard<'_> {
    fn deref_mut(&mut self) -> &mut Rq {
        &mut self.guard
    }
}

impl Drop for RqGuard<'_> {
    fn drop(&mut self) {
        self.held.store(self.held.load(Ordering::Relaxed) & !(1 << self.cpu), Ordering::Relaxed);
    }
}

impl RqGuard<'_> {
    /// The CPU whose run queue this is.
    pub(crate) fn cpu(&self) -> usize {
        self.cpu
    }
}

/// Locks CPU `cpu`'s run queue, checking the lock order first.
#[track_caller]
pub(crate) fn rq_lock(k: &Kernel, cpu: usize) -> RqGuard<'_> {
    let irqs = crate::preempt::count::raw_local_irq_save();
    let held_rqs = &k.raw_this_cpu().held_rqs;
    let held = held_rqs.load(Ordering::Relaxed);
    if held >> cpu != 0 {
        out_of_order(k, cpu, held, Location::caller());
    }
    let guard = k.cpus[cpu].rq.lock();
    held_rqs.store(held | 1 << cpu, Ordering::Relaxed);
    RqGuard { guard, held: held_rqs, cpu, _irqs: irqs }
}

/// The lock-order `BUG:` of [`rq_lock`], out of line.
#[cold]
#[inline(never)]
fn out_of_order(k: &Kernel, cpu: usize, held: u64, place: &'static Location<'static>) {
    k.bug_args(format_args!("run-queue locks taken out of order: CPU {cpu}'s while holding mask {held:#x}"), place);
    if held & (1 << cpu) != 0 {
        A::die("BUG: a run-queue lock taken twice (the report above names the place)");
    }
}

/// The run queue of the calling CPU, locked.
#[track_caller]
pub(crate) fn this_rq_lock(k: &Kernel) -> RqGuard<'_> {
    rq_lock(k, k.raw_cpu_id())
}

/// Locks the run queue of task `id`'s CPU and returns it with the task pinned there.
#[track_caller]
pub(crate) fn task_rq_lock(k: &Kernel, id: TaskId) -> RqGuard<'_> {
    let task = k.task(id);
    loop {
        let cpu = task.cpu.load(Ordering::Acquire);
        let rq = rq_lock(k, cpu);
        if task.cpu.load(Ordering::Acquire) == cpu {
            return rq;
        }
    }
}

/// Locks the run queues of CPUs `a` and `b` (different), lower CPU first; returns them as
/// `(a, b)`.
#[track_caller]
pub(crate) fn double_rq_lock(k: &Kernel, a: usize, b: usize) -> (RqGuard<'_>, RqGuard<'_>) {
    assert_ne!(a, b, "double_rq_lock of one run queue");
    if a < b {
        let ga = rq_lock(k, a);
        (ga, rq_lock(k, b))
    } else {
        let gb = rq_lock(k, b);
        (rq_lock(k, a), gb)
    }
}

/// Holding `held` (CPU `a`'s run queue), also takes CPU `b`'s, in order: directly if `b` is
/// higher, else by dropping `a` and taking both (Linux's `double_lock_balance`). Returns the
/// two guards as `(a, b)` and whether `a` was dropped on the way (then everything read under it
/// must be checked again).
#[track_caller]
pub(crate) fn double_lock_balance<'a>(k: &'a Kernel, held: RqGuard<'a>, b: usize) -> (RqGuard<'a>, RqGuard<'a>, bool) {
    let a = held.cpu;
    if a < b {
        return (held, rq_lock(k, b), false);
    }
    drop(held);
    let (ga, gb) = double_rq_lock(k, a, b);
    (ga, gb, true)
}

/// True when this CPU runs its idle task (which reschedules by itself).
pub(crate) fn running_idle(k: &Kernel) -> bool {
    let rq = this_rq_lock(k);
    rq.curr == rq.idle
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::prelude::rust_2021::*;

    #[test]
    fn taking_run_queue_locks_out_of_order_is_a_bug_naming_the_place() {
        let r = crate::run(Config { cpus: 2, ..Config::default() }, || {
            let k = crate::instance::this_kernel();
            let _irq = crate::preempt::count::raw_local_irq_save();
            let high = super::rq_lock(&k, 1);
            let low = super::rq_lock(&k, 0); // the wrong order: a BUG, then it goes on
            drop((low, high));
            let (a, b) = super::double_rq_lock(&k, 1, 0); // the right way, whatever the order asked
            drop((a, b));
            0
        })
        .unwrap();
        assert_eq!(r.bugs.len(), 1, "{:?}", r.bugs);
        let b = &r.bugs[0];
        assert!(b.contains("run-queue locks taken out of order: CPU 0's while holding mask 0x2"), "{b}");
        assert!(b.contains("task 'init'") && b.contains("rq_lock.rs"), "{b}");
    }
}
