//! `preempt=none`: kernel code is preempted only at `ret_from_syscall` (Linux's
//! `CONFIG_PREEMPT_NONE`).
//!
//! **Invariant.** Nothing in kernel mode takes the CPU: a wakeup only sets `need_resched`,
//! which the return to user mode (or the next sleep) serves; the point sites stay idle.

use super::policy::{IrqExitPolicy, Model, PointAction, SiteClaim, Wakeup};
use crate::arch::{IrqExit, IrqFrame};
use crate::instance::Kernel;
use crate::preempt::count as preempt;

pub(super) struct None;

impl Model for None {
    fn wakeup(&self, _k: &Kernel, _w: Wakeup) {
        preempt::set_need_resched();
    }

    fn point(&self, _k: &Kernel, _site: usize) -> PointAction {
        PointAction::Pass // armed by another instance: pass on
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
        SiteClaim::None
    }

    fn rt_runs_at(&self) -> &'static str {
        "syscall exit"
    }
}
