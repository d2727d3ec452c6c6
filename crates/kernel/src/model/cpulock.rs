//! `preempt=cpulock`: the 1996 mail's CPU locking. Each atom requests the CPU at its
//! preemption point; an RT task made runnable locks the CPU's next quantum, so the request
//! blocks, i.e. the task in kernel code gives the CPU to it.
//!
//! **Invariant.** Only a locked quantum takes the CPU from kernel code here: a fair wakeup or
//! a used-up fair slice sets `need_resched` but the points let it wait for `ret_from_syscall`
//! (the seed: "Maybe non-RT processes could benefit from this CPU locking thing too? [dont
//! think so]"). The lock is granted (cleared) when its owner runs.

use super::policy::{IrqExitPolicy, Model, PointAction, SiteClaim, Wakeup};
use super::state::CpulockCpu;
use crate::arch::{IrqExit, IrqFrame};
use crate::instance::Kernel;
use crate::preempt::count as preempt;
use crate::task::TaskId;
use core::sync::atomic::Ordering;

pub(super) struct Cpulock;

impl CpulockCpu {
    /// `__schedule` picked `next`: its lock, if it held one, is granted.
    pub(super) fn served(&self, next: TaskId) {
        // A load first: the compare-and-swap (a locked instruction) only when it would succeed.
        if self.quantum_lock.load(Ordering::Relaxed) == next + 1 {
            let _ = self.quantum_lock.compare_exchange(next + 1, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}

impl Model for Cpulock {
    fn wakeup(&self, k: &Kernel, w: Wakeup) {
        if w.rt && !w.is_curr {
            k.this_cpu().model.cpulock.quantum_lock.store(w.woken + 1, Ordering::Release);
        }
        preempt::set_need_resched();
    }

    fn point(&self, k: &Kernel, _site: usize) -> PointAction {
        // Task context, preemptible: a task that moved on meanwhile reads the CPU it came from,
        // which only moves the decision to its next point.
        if k.raw_this_cpu().model.cpulock.quantum_lock.load(Ordering::Acquire) != 0 {
            PointAction::Yield
        } else {
            PointAction::Pass
        }
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
