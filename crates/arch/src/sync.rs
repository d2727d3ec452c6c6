//! `spin_lock_irqsave`: a spinlock that masks this CPU's interrupts while held.
//!
//! **Invariant.** While a CPU holds the lock its IRQs are soft-masked, so no interrupt handler
//! on the same thread can try to take it (which would spin forever); other CPUs spin. Taking a
//! lock this thread already holds is a `BUG:` (a self-deadlock), reported instead of hanging.

use crate::irq;
use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A spinlock protecting `T`, taken with IRQs masked.
pub struct IrqSpinLock<T> {
    owner: AtomicUsize, // 0 = free, else the holder's thread pointer (see `thread_id`)
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by `owner` (one holder at a time, across threads).
unsafe impl<T: Send> Sync for IrqSpinLock<T> {}
// SAFETY: moving the lock moves the value; T: Send makes that fine.
unsafe impl<T: Send> Send for IrqSpinLock<T> {}

impl<T> IrqSpinLock<T> {
    /// A free lock.
    pub const fn new(value: T) -> Self {
        IrqSpinLock { owner: AtomicUsize::new(0), value: UnsafeCell::new(value) }
    }

    /// Masks IRQs and takes the lock.
    pub fn lock(&self) -> IrqSpinGuard<'_, T> {
        let was_masked = irq::local_irq_save();
        let me = thread_id();
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

/// A number unique to the calling host thread while it lives: its thread pointer, read with
/// one `%fs`-relative load. Always right on the thread the code runs on now (a task may move
/// to another CPU thread between two locks), and never zero.
#[inline(always)]
fn thread_id() -> usize {
    let tp: usize;
    // SAFETY: the x86-64 TLS ABI (glibc's and musl's `tcbhead_t`) makes the first word of the
    // thread control block, at `%fs:0`, the thread pointer itself; the load reads only that
    // word. Not `pure`: the compiler must not reuse one thread's value after a switch.
    unsafe { std::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags)) };
    tp
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
