//! Softirqs' state, as data: each CPU's pending and open vectors, their actions and counters,
//! its `ksoftirqd`, and its tasklet lists. Raising and serving them is `softirq`'s.
//!
//! **Invariant.** Data only: this file imports no subsystem.

use crate::arch::IrqSpinLock;
use crate::sync::OnceLock;
use crate::task::TaskId;
use crate::tasklet::state::TaskletCpu;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Number of vectors.
pub const NR_SOFTIRQS: usize = 10;

/// A vector's action. Runs in softirq context: no allocation, no sleeping.
pub type SoftirqAction = Arc<dyn Fn() + Send + Sync>;

#[derive(Default)]
pub(super) struct VectorStats {
    pub(super) raised: AtomicU64,
    pub(super) coalesced: AtomicU64,
    pub(super) runs: [AtomicU64; 3],
}
/// The per-CPU softirq state of a kernel instance.
pub(crate) struct SoftirqCpu {
    pub(super) pending: AtomicU32,
    pub(super) opened: AtomicU32,
    pub(super) actions: IrqSpinLock<[Option<SoftirqAction>; NR_SOFTIRQS]>,
    pub(super) ksoftirqd: OnceLock<TaskId>,
    pub(super) stop: AtomicBool,
    pub(super) stats: [VectorStats; NR_SOFTIRQS],
    pub(super) handoffs: AtomicU64,
    pub(crate) tasklets: TaskletCpu,
}

impl SoftirqCpu {
    /// The pending vectors, bit `n` = vector `n` (`local_softirq_pending` on this CPU).
    pub(crate) fn pending(&self) -> u32 {
        self.pending.load(Ordering::Acquire)
    }
}
