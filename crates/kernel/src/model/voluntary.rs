//! `preempt=voluntary`: `cond_resched()` at every preemption point.
//!
//! **Mechanism.** Every point site is patched into a call of `rt_reschedule` while the model
//! runs; a point reached with any reschedule due (an RT or a fair wakeup, a used-up slice)
//! gives the CPU away there if the task holds nothing.
//!
//! **Invariant.** Kernel code is never preempted between points: the interrupt exit to kernel
//! mode waits, and so does `preempt_enable`.

use super::policy::{IrqExitPolicy, Model, PointAction, SiteClaim, Wakeup};
use crate::arch::{IrqExit, IrqFrame};
use crate::instance::Kernel;
use crate::preempt::count as preempt;

pub(super) struct Voluntary;

impl Model for Voluntary {
    fn wakeup(&self, _k: &Kernel, _w: Wakeup) {
        preempt::set_need_resched();
    }

    fn point(&self, _k: &Kernel, _site: usize) -> PointAction {
        PointAction::Yield
    }

    fn irq_exit_kernel(&self, _k: &Kernel, _frame: &IrqFrame) -> IrqExitPolicy {
        IrqExitPolicy::Wait
    }

    fn preempts_kernel_code(&self) -> bool {
        false
    }

    fn trap(&self, _k: &Kernel) -> IrqExit {
        IrqExit::Resume
    }

    fn sites(&self) -> SiteClaim {
        SiteClaim::All
    }

    fn rt_runs_at(&self) -> &'static str {
        "next point"
    }
}
