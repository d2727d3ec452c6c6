//! `preempt=full`: kernel code is preempted on return from an interrupt whenever
//! `preempt_count` is zero, and at the `preempt_enable` that brings it to zero (Linux's
//! `CONFIG_PREEMPT`).
//!
//! **Invariant.** Preemption happens only with the count zero and IRQs on, and never inside
//! foreign code (the interrupt exit's mechanics retry there); the point sites stay idle.

use super::policy::{IrqExitPolicy, Model, PointAction, SiteClaim, Wakeup};
use crate::arch::{IrqExit, IrqFrame};
use crate::instance::Kernel;
use crate::preempt::count as preempt;

pub(super) struct Full;

impl Model for Full {
    fn wakeup(&self, _k: &Kernel, _w: Wakeup) {
        preempt::set_need_resched();
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
