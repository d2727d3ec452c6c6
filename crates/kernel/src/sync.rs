//! Locks that kernel code and interrupt handlers share.

/// A spin lock protecting a `T`, taken with interrupts (the CPU's soft IRQ mask) masked, as
/// Linux's `spin_lock_irqsave`: the lock task code may share with an interrupt handler, a
/// bottom half or another CPU. `lock()` returns a guard that releases the lock and restores the
/// interrupt state when dropped. Provided by the arch layer.
pub use arch::sync::IrqSpinLock;
