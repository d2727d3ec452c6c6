//! Time's state, as data: the instance's clock (boot time, jiffies) and each CPU's queue of
//! sleepers' deadlines. The tick and the timers that act on them are `time`'s.
//!
//! **Invariant.** Data only: this file imports no subsystem.

use crate::arch::{Arch, A};
use crate::task::TaskId;
use alloc::collections::BinaryHeap;
use core::cmp::Reverse;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The instance's clock: when it booted and the jiffies since (advanced by CPU 0's tick, as
/// Linux's `do_timer` on one CPU).
pub(crate) struct Clock {
    boot_ns: u64,
    pub(super) jiffies: AtomicU64,
    /// A task of the instance asked for its timer wakeups to be stamped
    /// (`TaskBuilder::timerlat`): from then on every interrupt entry is stamped.
    pub(crate) timerlat: AtomicBool,
}

impl Clock {
    /// A clock that starts now.
    pub(crate) fn new() -> Clock {
        Clock { boot_ns: A::now_ns(), jiffies: AtomicU64::new(0), timerlat: AtomicBool::new(false) }
    }

    /// Nanoseconds since boot.
    pub(crate) fn uptime_ns(&self) -> u64 {
        A::now_ns().saturating_sub(self.boot_ns)
    }

    /// Jiffies since boot.
    pub(crate) fn jiffies(&self) -> u64 {
        self.jiffies.load(Ordering::Relaxed)
    }
}

/// Pending one-shot timers: (deadline, sequence, task to wake).
#[derive(Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Reverse<(u64, u64, TaskId)>>,
    seq: u64,
}

impl TimerQueue {
    pub(super) fn arm(&mut self, deadline: u64, id: TaskId) -> bool {
        self.seq += 1;
        let was_first = self.heap.peek().is_none_or(|Reverse((d, _, _))| deadline < *d);
        self.heap.push(Reverse((deadline, self.seq, id)));
        was_first
    }

    pub(super) fn pop_expired(&mut self, now: u64) -> Option<TaskId> {
        match self.heap.peek() {
            Some(Reverse((d, _, _))) if *d <= now => self.heap.pop().map(|Reverse((_, _, id))| id),
            _ => None,
        }
    }

    pub(super) fn next_deadline(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((d, _, _))| *d)
    }
}
