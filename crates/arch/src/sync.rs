//! `spin_lock_irqsave`: a spinlock that masks this CPU's interrupts while held.
//!
//! **Invariant.** While a CPU holds the lock its IRQs are soft-masked, so no interrupt handler
//! on the same thread can try to take it (which would spin forever); other CPUs spin. Taking a
//! lock this thread already holds is a `BUG:` (a self-deadlock), reported instead of hanging.

use crate::irq;
use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicI32, Ordering};

/// A spinlock protecting `T`, taken with IRQs masked.
pub struct IrqSpinLock<T> {
    owner: AtomicI32, // 0 = free, else the holder's host tid
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by `owner` (one holder at a time, across threads).
unsafe impl<T: Send> Sync for IrqSpinLock<T> {}
// SAFETY: moving the lock moves the value; T: Send makes that fine.
unsafe impl<T: Send> Send for IrqSpinLock<T> {}

impl<T> IrqSpinLock<T> {
    /// A free lock.
    pub const fn new(value: T) -> Self {
        IrqSpinLock { owner: AtomicI32::new(0), value: UnsafeCell::new(value) }
    }

    /// Masks IRQs and takes the lock.
    pub fn lock(&self) -> IrqSpinGuard<'_, T> {
        let was_masked = irq::local_irq_save();
        let me = tid();
        while let Err(holder) = self.owner.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
            if holder == me {
                crate::cpu::die("BUG: spinlock recursion: this CPU already holds the lock it is taking");
            }
            std::hint::spin_loop();
        }
        IrqSpinGuard { lock: self, was_masked }
    }

    /// The value, through exclusive access (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }
}

impl<T: Default> Default for IrqSpinLock<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

/// The host thread id of the caller, cached per thread. Never inlined: see `percpu::with`.
#[inline(never)]
fn tid() -> i32 {
    thread_local! { static TID: std::cell::Cell<i32> = const { std::cell::Cell::new(0) }; }
    TID.with(|t| {
        if t.get() == 0 {
            t.set(crate::cpu::gettid());
        }
        t.get()
    })
}

/// Holds an [`IrqSpinLock`]; releases it and restores the IRQ state when dropped.
pub struct IrqSpinGuard<'a, T> {
    lock: &'a IrqSpinLock<T>,
    was_masked: bool,
}

impl<T> Deref for IrqSpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this thread holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for IrqSpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and &mut self makes the access unique.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for IrqSpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.owner.store(0, Ordering::Release);
        irq::local_irq_restore(self.was_masked);
    }
}
