//! The task table: every task of an instance by pid, read without a lock.
//!
//! **Mechanism.** Pids are dense and never reused, and a task stays in the table until the
//! instance ends, so the table only grows. It is two levels of write-once slots: up to
//! [`CHUNKS`] chunks of [`CHUNK`] slots, each chunk allocated by the spawn that first needs it
//! (in task context), each slot set once by the spawn of its pid. A reader follows two
//! `OnceLock`s: two acquire loads, no lock and no read-modify-write, so the wakeup and schedule
//! paths, which look tasks up on every CPU, share no lock and no written cache line through
//! it. Spawns are serialized by the caller (`Kernel::fork_lock`); a slot is set before the
//! length that makes its pid visible is published (release), so a reader that sees a pid
//! below [`TaskTable::len`] finds its task.
//!
//! **Invariant.** `get(pid)` is `Some` for every pid handed out, from the moment the spawn
//! publishes it to the end of the instance; nothing ever leaves the table.

use crate::sync::OnceLock;
use crate::task::Task;
use crate::task::TaskId;
use alloc::sync::Arc;
use alloc::{boxed::Box, vec::Vec};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Slots per chunk.
const CHUNK: usize = 256;
/// Chunks at most: pids 0..CHUNK * CHUNKS.
const CHUNKS: usize = 1024;
/// The most pids an instance can hand out.
pub(crate) const PID_MAX: usize = CHUNK * CHUNKS;

type Chunk = Box<[OnceLock<Arc<Task>>]>;

/// Every task by pid (see the module docs).
pub(crate) struct TaskTable {
    chunks: Box<[OnceLock<Chunk>]>,
    len: AtomicUsize,
}

impl TaskTable {
    pub(crate) fn new() -> TaskTable {
        TaskTable { chunks: (0..CHUNKS).map(|_| OnceLock::new()).collect(), len: AtomicUsize::new(0) }
    }

    /// Pids handed out so far (the next spawn's pid).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// The task with pid `id`, if there is one. No lock, no allocation.
    #[inline]
    pub(crate) fn get(&self, id: TaskId) -> Option<&Arc<Task>> {
        self.chunks.get(id / CHUNK)?.get()?[id % CHUNK].get()
    }

    /// Appends `task`, whose pid must be [`TaskTable::len`]. Call with spawns serialized.
    /// Allocates a chunk when the pid starts one.
    pub(crate) fn push(&self, task: Arc<Task>) {
        let id = task.id;
        assert!(id == self.len() && id < PID_MAX, "task table: pid {id} pushed out of order or past PID_MAX");
        let chunk = self.chunks[id / CHUNK].get_or_init(|| (0..CHUNK).map(|_| OnceLock::new()).collect());
        if chunk[id % CHUNK].set(task).is_err() {
            unreachable!("task table: pid {id} set twice");
        }
        self.len.store(id + 1, Ordering::Release);
    }

    /// Every task, in pid order (a snapshot of the references: for reports and scans).
    pub(crate) fn snapshot(&self) -> Vec<Arc<Task>> {
        (0..self.len()).filter_map(|id| self.get(id).cloned()).collect()
    }
}
