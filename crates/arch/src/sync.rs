//! `spin_lock_irqsave`: a spinlock that masks this CPU's interrupts while held.
//!
//! **Mechanism.** [`RawIrqSpinLock`] is a `lock_api::RawMutex`: `lock` masks interrupts, then
//! spins on one word until it swaps in the holder's thread pointer; `unlock` stores 0 and puts
//! the mask back as `lock` found it (kept in the lock, which only its holder reads). The typed
//! lock is `lock_api`'s [`IrqSpinLock`] over it; the kernel core builds its own the same way
//! from `Arch::RawIrqSpinLock`.
//!
//! **Invariant.** While a CPU holds the lock its IRQs are soft-masked, so no interrupt handler
//! on the same thread can try to take it (which would spin forever); other CPUs spin. Taking a
//! lock this thread already holds is a `BUG:` (a self-deadlock), reported instead of hanging.

use crate::irq;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The raw lock (see the module docs).
pub struct RawIrqSpinLock {
    owner: AtomicUsize, // 0 = free, else the holder's thread pointer (see `thread_id`)
    was_masked: AtomicBool,
}

// SAFETY: `lock` returns only once this thread swapped its (non-zero) id into `owner`, which
// only `unlock` puts back to 0, so one holder at a time holds the lock across all threads;
// Acquire on the swap and Release on the store order the protected data.
unsafe impl lock_api::RawMutex for RawIrqSpinLock {
    const INIT: RawIrqSpinLock = RawIrqSpinLock { owner: AtomicUsize::new(0), was_masked: AtomicBool::new(false) };
    // The holder may not move to another thread (IRQs are masked, so it cannot be switched).
    type GuardMarker = lock_api::GuardNoSend;

    #[inline]
    fn lock(&self) {
        let was_masked = irq::local_irq_save();
        let me = thread_id();
        while let Err(holder) = self.owner.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
            if holder == me {
                crate::cpu::die("BUG: spinlock recursion: this CPU already holds the lock it is taking");
            }
            std::hint::spin_loop();
        }
        self.was_masked.store(was_masked, Ordering::Relaxed);
    }

    #[inline]
    fn try_lock(&self) -> bool {
        let was_masked = irq::local_irq_save();
        if self.owner.compare_exchange(0, thread_id(), Ordering::Acquire, Ordering::Relaxed).is_ok() {
            self.was_masked.store(was_masked, Ordering::Relaxed);
            true
        } else {
            irq::local_irq_restore(was_masked);
            false
        }
    }

    #[inline]
    unsafe fn unlock(&self) {
        let was_masked = self.was_masked.load(Ordering::Relaxed);
        self.owner.store(0, Ordering::Release);
        irq::local_irq_restore(was_masked);
    }
}

/// A spinlock protecting `T`, taken with IRQs masked.
pub type IrqSpinLock<T> = lock_api::Mutex<RawIrqSpinLock, T>;
/// Holds an [`IrqSpinLock`]; releases it and restores the IRQ state when dropped.
pub type IrqSpinGuard<'a, T> = lock_api::MutexGuard<'a, RawIrqSpinLock, T>;

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
