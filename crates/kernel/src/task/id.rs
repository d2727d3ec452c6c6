//! A task's pid and a set of CPUs: the plain numbers the task, the wait queue and the scheduler
//! share.
//!
//! **Invariant.** Types and constants only: this file imports nothing.

/// "Not running on any CPU" in `Task::on_cpu`.
pub(crate) const NO_CPU: usize = usize::MAX;

/// Index of a task in the kernel's task table (its pid).
pub type TaskId = usize;

/// A set of CPUs, bit `n` for CPU `n` (`cpumask`; `cpus=` is at most 64).
pub type CpuMask = u64;

/// The mask of CPUs `0..n`.
pub(crate) fn mask_of(n: usize) -> CpuMask {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}
