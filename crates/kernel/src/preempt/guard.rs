//! `preempt_disable()` and `local_irq_save()` as guards, with the tracers' section hooks and
//! `preempt_enable()`'s reschedule.
//!
//! **Mechanism.** A guard raises the count (or masks IRQs) when made and undoes it when
//! dropped; the `preemptoff`/`irqsoff` tracer sees both ends. Dropping the last
//! [`PreemptGuard`] with a reschedule due calls `preempt_schedule`, which asks the model.
//!
//! **Invariant.** The guards are the only way kernel code outside the scheduler disables
//! preemption or IRQs, so every disable has exactly one enable, in LIFO order.

use super::count::{preempt_count_add, preempt_count_sub, PREEMPT_OFFSET};
use crate::arch::{Arch, A};

/// `preempt_disable()` as a guard: the count is raised while it lives. Dropping it is
/// `preempt_enable()`, which under a preemptible model reschedules if the count reaches zero
/// with a reschedule due.
#[must_use = "preemption is enabled again when the guard is dropped"]
pub struct PreemptGuard {
    _not_send: core::marker::PhantomData<*const ()>,
}

/// `preempt_disable()`.
#[track_caller]
pub fn preempt_disable() -> PreemptGuard {
    preempt_count_add(PREEMPT_OFFSET);
    crate::trace::section_enter(core::panic::Location::caller(), false);
    PreemptGuard { _not_send: core::marker::PhantomData }
}

impl Drop for PreemptGuard {
    #[inline(always)]
    fn drop(&mut self) {
        crate::trace::section_exit(false);
        if preempt_count_sub(PREEMPT_OFFSET) == 0 {
            crate::sched::preempt_schedule();
        }
    }
}

/// `local_irq_save()` as a guard: IRQs are soft-masked while it lives and restored after.
#[must_use = "IRQs are restored when the guard is dropped"]
pub struct IrqGuard {
    was_masked: bool,
    _not_send: core::marker::PhantomData<*const ()>,
}

/// `local_irq_save()`.
#[track_caller]
pub fn local_irq_save() -> IrqGuard {
    let was_masked = A::local_irq_save();
    crate::trace::section_enter(core::panic::Location::caller(), true);
    IrqGuard { was_masked, _not_send: core::marker::PhantomData }
}

impl Drop for IrqGuard {
    #[inline(always)]
    fn drop(&mut self) {
        crate::trace::section_exit(true);
        A::local_irq_restore(self.was_masked);
    }
}
