//! `preempt_count`, `need_resched` and the guards that disable preemption and IRQs: the public
//! face of `count` (the word and its layout) and `guard` (disabling and enabling).
//!
//! **Invariant.** Kernel code inside the crate names `preempt::count` or `preempt::guard`, never
//! this facade, so the count stays a basic type below every subsystem (`docs/ARCHITECTURE.md`,
//! "Layers").

pub(crate) mod count;
pub(crate) mod guard;

pub use count::{
    in_hardirq, in_interrupt, in_serving_softirq, in_softirq, need_resched, preempt_count, preemptible, softirq_count,
    HARDIRQ_BITS, HARDIRQ_MASK, HARDIRQ_OFFSET, HARDIRQ_SHIFT, NMI_BITS, NMI_MASK, NMI_OFFSET, NMI_SHIFT, PREEMPT_BITS,
    PREEMPT_ENABLED, PREEMPT_MASK, PREEMPT_NEED_RESCHED, PREEMPT_OFFSET, PREEMPT_SHIFT, SOFTIRQ_BITS,
    SOFTIRQ_DISABLE_OFFSET, SOFTIRQ_MASK, SOFTIRQ_OFFSET, SOFTIRQ_SHIFT,
};
pub use guard::{local_irq_save, preempt_disable, IrqGuard, PreemptGuard};
