//! The models' state, as data: which model an instance runs and its claim on the point sites
//! ([`ModelState`]), and each CPU's state of every model ([`ModelCpu`]: the lazy flag, the
//! locked quantum, what the patch models armed and their counters). What each model does with
//! its state is its own file's.
//!
//! **Invariant.** Data only: this file imports no subsystem, so the instance and its CPUs can
//! hold the models' state without depending on the models' behaviour.

use super::patch::stats::PatchStats;
use crate::arch::{AllSitesClaim, Arm, IrqSpinLock};
use crate::config::PreemptModel;
use crate::sync::CpuExclusive;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// The instance's model: which one runs, its claim on the point sites, and the switch in
/// progress. Private: the model is read and switched through the functions of this module.
pub(crate) struct ModelState {
    /// The preemption model now (an index into `PreemptModel::ALL`); switchable at run time.
    pub(super) current: AtomicU8,
    /// This instance's claim on every preemption-point site while its model uses points.
    pub(super) sites_claim: IrqSpinLock<Option<AllSitesClaim>>,
    /// Set while a task switches the model (`set_preempt_model` is one at a time).
    pub(super) switching: AtomicBool,
}

impl ModelState {
    /// `model` at boot, no sites claimed yet.
    pub(crate) fn new(model: PreemptModel) -> ModelState {
        ModelState {
            current: AtomicU8::new(model.index()),
            sites_claim: IrqSpinLock::new(None),
            switching: AtomicBool::new(false),
        }
    }

    /// The current preemption model.
    #[inline]
    pub(crate) fn current(&self) -> PreemptModel {
        PreemptModel::from_index(self.current.load(Ordering::Acquire))
    }
}

/// The models' per-CPU state.
#[derive(Default)]
pub(crate) struct ModelCpu {
    /// `lazy`: the lazy reschedule flag.
    pub(crate) lazy: LazyCpu,
    /// `cpulock`: the locked quantum.
    pub(crate) cpulock: CpulockCpu,
    /// The patch models' armed points and counters.
    pub(crate) patch: PatchState,
}

/// `TIF_NEED_RESCHED_LAZY` of a CPU.
#[derive(Default)]
pub(crate) struct LazyCpu {
    pub(super) need_resched_lazy: AtomicBool,
}

/// The locked quantum of a CPU.
#[derive(Default)]
pub(crate) struct CpulockCpu {
    /// The task (id + 1) that locked the CPU's next quantum; 0 when none.
    pub(super) quantum_lock: AtomicUsize,
}

/// The most points one event may arm (one function's points).
pub const MAX_ARMED: usize = 64;
/// What this CPU has armed for the pending RT event.
#[derive(Debug)]
pub(crate) struct Armed {
    pub(super) how: Arm,
    pub(super) sites: [u32; MAX_ARMED],
    pub(super) n: usize,
    /// A redirected return: (slot, original return address).
    pub(super) ret: Option<(usize, usize)>,
}

impl Default for Armed {
    fn default() -> Self {
        Armed { how: Arm::Int3, sites: [0; MAX_ARMED], n: 0, ret: None }
    }
}

/// Per-CPU state of the patch models.
#[derive(Default)]
pub(crate) struct PatchState {
    /// An RT wakeup is pending (set by `resched_curr`, cleared by `__schedule`).
    pub(crate) rt_resched: AtomicBool,
    /// The IP the latest interrupt found the CPU at (its entry's, for the prefetches).
    pub(super) irq_ip: AtomicUsize,
    /// Something is armed (a cheap test for `__schedule`).
    pub(super) active: AtomicBool,
    /// What this CPU armed: touched only by this CPU, with its interrupts masked.
    pub(super) armed: CpuExclusive<Armed>,
    pub(crate) stats: PatchStats,
    /// The last site the patcher refused to arm (0: none) and its bytes, packed: kept here by
    /// the interrupt path (which cannot format) and reported as a `BUG:` with the run.
    pub(super) refused: AtomicUsize,
    pub(super) refused_bytes: AtomicU64,
}
