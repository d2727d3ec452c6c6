//! Tasklets as data: a tasklet (its function, its `SCHED`/`RUN` bits, its runs) and each
//! CPU's tasklet lists. Scheduling and running them is `tasklet`'s.
//!
//! **Invariant.** Data only: this file imports no subsystem.

use crate::arch::IrqSpinLock;
use alloc::sync::Arc;
use alloc::{boxed::Box, string::String, vec::Vec};
use core::sync::atomic::{AtomicU64, AtomicU8};

pub(super) const TASKLET_STATE_SCHED: u8 = 1;
pub(super) const TASKLET_STATE_RUN: u8 = 2;

/// A deferred function, run in softirq context: no allocation, no sleeping.
pub struct Tasklet {
    pub(super) name: String,
    pub(super) index: usize,
    pub(super) state: AtomicU8,
    pub(super) runs: AtomicU64,
    pub(super) func: Box<dyn Fn() + Send + Sync>,
}

/// One CPU's tasklet lists: indices into the registry, with room for every tasklet. The
/// registry of the instance is CPU 0's (a tasklet may be scheduled on any CPU).
#[derive(Default)]
pub(crate) struct TaskletCpu {
    pub(super) registry: IrqSpinLock<Vec<Arc<Tasklet>>>,
    pub(super) normal: IrqSpinLock<TaskletList>,
    pub(super) hi: IrqSpinLock<TaskletList>,
}

/// `tasklet_head`: what is queued, and the batch the action is working through.
#[derive(Default)]
pub(super) struct TaskletList {
    pub(super) queued: Vec<usize>,
    pub(super) batch: Vec<usize>,
}
