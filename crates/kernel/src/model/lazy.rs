//! `preempt=lazy`: as `full` for RT wakeups; a fair task displacing a fair task sets only
//! `TIF_NEED_RESCHED_LAZY`, which the tick promotes to a real reschedule and the return to
//! user mode serves (Linux's `PREEMPT_LAZY`).
//!
//! **Invariant.** The lazy flag never preempts kernel code by itself: only the tick's
//! promotion (or an RT wakeup) sets `need_resched`; `__schedule` clears it with every other
//! request.

use super::policy::{IrqExitPolicy, Model, PointAction, SiteClaim, Wakeup};
use super::state::LazyCpu;
use crate::arch::{IrqExit, IrqFrame};
use crate::instance::Kernel;
use crate::preempt::count as preempt;
use core::sync::atomic::Ordering;

pub(super) struct Lazy;

impl LazyCpu {
    /// A lazy reschedule is pending.
    pub(super) fn pending(&self) -> bool {
        self.need_resched_lazy.load(Ordering::Relaxed)
    }

    /// The tick: a pending lazy reschedule becomes a real one.
    pub(super) fn tick(&self) {
        if self.need_resched_lazy.swap(false, Ordering::Relaxed) {
            preempt::set_need_resched();
        }
    }

    /// `__schedule` served every request.
    pub(super) fn served(&self) {
        self.need_resched_lazy.store(false, Ordering::Relaxed);
    }
}

impl Model for Lazy {
    fn wakeup(&self, k: &Kernel, w: Wakeup) {
        if !w.rt && w.curr_fair {
            k.this_cpu().model.lazy.need_resched_lazy.store(true, Ordering::Relaxed);
        } else {
            preempt::set_need_resched();
        }
    }

    fn point(&self, _k: &Kernel, _site: usize) -> PointAction {
        PointAction::Pass // armed by another instance: pass on
    }

    fn irq_exit_kernel(&self, _k: &Kernel, _frame: &IrqFrame) -> IrqExitPolicy {
        IrqExitPolicy::Preempt
    }

    fn preempts_kernel_code(&self) -> bool {
        true
    }

    fn trap(&self, _k: &Kernel) -> IrqExit {
        IrqExit::Resume
    }

    fn sites(&self) -> SiteClaim {
        SiteClaim::None
    }

    fn rt_runs_at(&self) -> &'static str {
        "IRQ exit"
    }
}
