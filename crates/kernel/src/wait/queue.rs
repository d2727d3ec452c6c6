//! The wait queue as data: the pids of the tasks asleep on it, under an IRQ-safe lock. Sleeping
//! and waking are `crate::wait`'s.
//!
//! **Invariant.** A pid is queued at most once (the sleeper checks before it adds itself).

use crate::arch::IrqSpinLock;
use crate::task::id::TaskId;
use alloc::vec::Vec;

/// A queue of sleeping tasks.
#[derive(Default)]
pub struct WaitQueue {
    pub(super) waiters: IrqSpinLock<Vec<TaskId>>,
}

impl WaitQueue {
    /// An empty queue.
    pub const fn new() -> WaitQueue {
        WaitQueue { waiters: IrqSpinLock::new(Vec::new()) }
    }

    /// Number of queued waiters.
    pub fn len(&self) -> usize {
        self.waiters.lock().len()
    }

    /// True when nobody waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
