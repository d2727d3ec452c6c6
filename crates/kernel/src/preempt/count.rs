//! `preempt_count` and `need_resched`, with Linux's layout.
//!
//! **Mechanism.** One 32-bit word per CPU (stored by the arch layer, as x86 keeps
//! `__preempt_count` per CPU) counts why the running task may not be preempted right now:
//!
//! ```text
//!  bit  31         24 23      20 19      16 15              8 7               0
//!      +-+----------+----------+----------+-----------------+-----------------+
//!      |R|  unused  |   NMI    | HARDIRQ  |     SOFTIRQ     |     PREEMPT     |
//!      +-+----------+----------+----------+-----------------+-----------------+
//!       R = PREEMPT_NEED_RESCHED, stored inverted: 0 means "reschedule needed"
//! ```
//!
//! - `PREEMPT`: `preempt_disable()` nesting (also raised by the allocator and the scheduler).
//! - `SOFTIRQ`: bit 8 is set while softirqs are being served; `local_bh_disable()` adds
//!   `2 * SOFTIRQ_OFFSET`, so the two uses can be told apart.
//! - `HARDIRQ`: raised by `irq_enter`, lowered by `irq_exit`.
//! - `NMI`: reserved (a hosted kernel has no NMIs).
//!
//! Because `need_resched` is folded in inverted, "count is zero and a reschedule is due" is the
//! whole word being zero: `preempt_enable()` is one decrement and one test.
//!
//! **Invariant.** The task may be preempted only when [`preempt_count`] is zero and IRQs are
//! on; every `preempt_disable` is matched by exactly one `preempt_enable` (enforced by
//! `preempt::guard::PreemptGuard` being the only way to disable). This file is the count
//! alone: it imports nothing of the kernel but the arch.

use crate::arch::{Arch, A};

/// Width of the `preempt_disable` nesting field.
pub const PREEMPT_BITS: u32 = 8;
/// Width of the softirq field (serving bit and BH-disable nesting).
pub const SOFTIRQ_BITS: u32 = 8;
/// Width of the hardirq nesting field.
pub const HARDIRQ_BITS: u32 = 4;
/// Width of the NMI field (reserved).
pub const NMI_BITS: u32 = 4;

/// Lowest bit of the preempt field.
pub const PREEMPT_SHIFT: u32 = 0;
/// Lowest bit of the softirq field.
pub const SOFTIRQ_SHIFT: u32 = PREEMPT_SHIFT + PREEMPT_BITS;
/// Lowest bit of the hardirq field.
pub const HARDIRQ_SHIFT: u32 = SOFTIRQ_SHIFT + SOFTIRQ_BITS;
/// Lowest bit of the NMI field.
pub const NMI_SHIFT: u32 = HARDIRQ_SHIFT + HARDIRQ_BITS;

const fn mask(bits: u32, shift: u32) -> u32 {
    ((1 << bits) - 1) << shift
}

/// The preempt field.
pub const PREEMPT_MASK: u32 = mask(PREEMPT_BITS, PREEMPT_SHIFT);
/// The softirq field.
pub const SOFTIRQ_MASK: u32 = mask(SOFTIRQ_BITS, SOFTIRQ_SHIFT);
/// The hardirq field.
pub const HARDIRQ_MASK: u32 = mask(HARDIRQ_BITS, HARDIRQ_SHIFT);
/// The NMI field.
pub const NMI_MASK: u32 = mask(NMI_BITS, NMI_SHIFT);

/// One `preempt_disable()`.
pub const PREEMPT_OFFSET: u32 = 1 << PREEMPT_SHIFT;
/// Serving softirqs (`in_serving_softirq`).
pub const SOFTIRQ_OFFSET: u32 = 1 << SOFTIRQ_SHIFT;
/// One `local_bh_disable()`.
pub const SOFTIRQ_DISABLE_OFFSET: u32 = 2 * SOFTIRQ_OFFSET;
/// One `irq_enter()`.
pub const HARDIRQ_OFFSET: u32 = 1 << HARDIRQ_SHIFT;
/// One NMI (reserved).
pub const NMI_OFFSET: u32 = 1 << NMI_SHIFT;

/// The folded, inverted need-resched bit.
pub const PREEMPT_NEED_RESCHED: u32 = 0x8000_0000;
/// The raw word of a CPU with nothing disabled and no reschedule due.
pub const PREEMPT_ENABLED: u32 = PREEMPT_NEED_RESCHED;

// The allocator in the arch layer raises the count by its own constant; it must be ours.
const _: () = assert!(arch_api::PREEMPT_OFFSET == PREEMPT_OFFSET);

/// The count without the need-resched bit.
#[inline(always)]
pub fn preempt_count() -> u32 {
    A::preempt_count_raw() & !PREEMPT_NEED_RESCHED
}

/// Sets the count, keeping the need-resched bit (used by `BUG:` fix-ups and task exit). A
/// read and a write: IRQs are masked around them so that an interrupt's `need_resched` cannot
/// land in between and be lost.
pub(crate) fn preempt_count_set(count: u32) {
    let was_masked = A::local_irq_save();
    let raw = A::preempt_count_raw();
    A::preempt_count_set_raw((raw & PREEMPT_NEED_RESCHED) | (count & !PREEMPT_NEED_RESCHED));
    A::local_irq_restore(was_masked);
}

/// Raises the count by `v` (one instruction; the guards and entry code only).
#[inline(always)]
pub(crate) fn preempt_count_add(v: u32) {
    A::preempt_count_add(v);
}

/// Lowers the count by `v` and returns the raw word: zero means "count zero and a reschedule
/// due" (the guards and entry code only).
#[inline(always)]
pub(crate) fn preempt_count_sub(v: u32) -> u32 {
    A::preempt_count_sub(v)
}

/// `TIF_NEED_RESCHED` as folded into the count: is a reschedule due on this CPU?
#[inline(always)]
pub fn need_resched() -> bool {
    A::preempt_count_raw() & PREEMPT_NEED_RESCHED == 0
}

/// `set_tsk_need_resched` + `set_preempt_need_resched` for the current CPU.
#[inline(always)]
pub(crate) fn set_need_resched() {
    A::preempt_count_clear_bits(PREEMPT_NEED_RESCHED);
}

/// Cleared by the scheduler when it picks the next task.
#[inline(always)]
pub(crate) fn clear_need_resched() {
    A::preempt_count_set_bits(PREEMPT_NEED_RESCHED);
}

/// `in_hardirq()`.
pub fn in_hardirq() -> bool {
    preempt_count() & HARDIRQ_MASK != 0
}

/// `in_serving_softirq()`.
pub fn in_serving_softirq() -> bool {
    preempt_count() & SOFTIRQ_OFFSET != 0
}

/// `softirq_count()`: the softirq field (serving and BH-disable nesting).
pub fn softirq_count() -> u32 {
    preempt_count() & SOFTIRQ_MASK
}

/// `in_softirq()`: serving softirqs or BH disabled.
pub fn in_softirq() -> bool {
    softirq_count() != 0
}

/// `in_interrupt()`: hard or soft interrupt context, or BH disabled.
pub fn in_interrupt() -> bool {
    preempt_count() & (HARDIRQ_MASK | SOFTIRQ_MASK | NMI_MASK) != 0
}

/// `preemptible()`: count zero and IRQs on.
pub fn preemptible() -> bool {
    preempt_count() == 0 && !A::irqs_disabled()
}

/// The scheduler's own IRQ-off window (a `raw_local_irq_save` of Linux, which the `irqsoff`
/// tracer does not report as a section: it is part of the operation it protects, as a run-queue
/// lock's is). Restores the IRQ state when dropped.
pub(crate) struct RawIrqGuard {
    was_masked: bool,
    _not_send: core::marker::PhantomData<*const ()>,
}

/// Masks IRQs until the guard drops, untraced (see [`RawIrqGuard`]).
#[inline(always)]
pub(crate) fn raw_local_irq_save() -> RawIrqGuard {
    RawIrqGuard { was_masked: A::local_irq_save(), _not_send: core::marker::PhantomData }
}

impl Drop for RawIrqGuard {
    #[inline(always)]
    fn drop(&mut self) {
        A::local_irq_restore(self.was_masked);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2021::*;

    #[test]
    fn layout_matches_linux() {
        assert_eq!(PREEMPT_MASK, 0x0000_00ff);
        assert_eq!(SOFTIRQ_MASK, 0x0000_ff00);
        assert_eq!(HARDIRQ_MASK, 0x000f_0000);
        assert_eq!(NMI_MASK, 0x00f0_0000);
        assert_eq!(SOFTIRQ_DISABLE_OFFSET, 0x200);
        assert_eq!(HARDIRQ_OFFSET, 0x1_0000);
    }

    #[test]
    fn folded_need_resched_makes_enable_one_test() {
        // A thread that is not a CPU still has the per-CPU word; use it as scratch.
        A::preempt_count_set_raw(PREEMPT_ENABLED);
        assert!(!need_resched());
        preempt_count_add(PREEMPT_OFFSET);
        set_need_resched();
        assert!(need_resched());
        assert_eq!(preempt_count(), 1);
        assert_eq!(preempt_count_sub(PREEMPT_OFFSET), 0, "count 0 + resched due = raw 0");
        clear_need_resched();
        assert_eq!(A::preempt_count_raw(), PREEMPT_ENABLED);
    }
}
