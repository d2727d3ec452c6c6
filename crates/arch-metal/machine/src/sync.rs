//! `spin_lock_irqsave`: the raw lock under the kernel core's `IrqSpinLock`.
//!
//! **Mechanism.** [`RawIrqSpinLock`] is a `lock_api::RawMutex`: `lock` clears IF (the real
//! interrupt flag, `crate::irq`), then spins on one word until it swaps in the holder's CPU
//! number plus one; `unlock` stores 0 and puts IF back as `lock` found it (kept in the lock,
//! read only by its holder).
//!
//! **Invariant.** While a CPU holds the lock its interrupts are masked, so no interrupt handler
//! on that CPU can try to take it; other CPUs (none yet) spin. Taking a lock this CPU already
//! holds is a `BUG:` (a self-deadlock) that stops the machine with a report, not a hang.

use crate::{irq, percpu};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// The raw lock (see the module's description).
pub struct RawIrqSpinLock {
    /// 0: free; else the holder's CPU number plus one.
    owner: AtomicU32,
    was_masked: AtomicBool,
}

// SAFETY: `lock` returns only once this CPU swapped its (non-zero) id into `owner`, which only
// `unlock` puts back to 0: one holder at a time; Acquire on the swap and Release on the store
// order the protected data.
unsafe impl lock_api::RawMutex for RawIrqSpinLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: RawIrqSpinLock = RawIrqSpinLock { owner: AtomicU32::new(0), was_masked: AtomicBool::new(false) };
    // The holder may not move to another CPU (IF is clear: it cannot be switched out).
    type GuardMarker = lock_api::GuardNoSend;

    #[inline]
    fn lock(&self) {
        let was_masked = irq::local_irq_save();
        let me = percpu::cpu_number() + 1;
        while let Err(holder) = self.owner.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
            if holder == me {
                crate::kprintln!("BUG: spinlock recursion: CPU {} already holds the lock it is taking", me - 1);
                crate::serial::exit(crate::exit_codes::PANIC);
            }
            core::hint::spin_loop();
        }
        self.was_masked.store(was_masked, Ordering::Relaxed);
    }

    #[inline]
    fn try_lock(&self) -> bool {
        let was_masked = irq::local_irq_save();
        if self.owner.compare_exchange(0, percpu::cpu_number() + 1, Ordering::Acquire, Ordering::Relaxed).is_ok() {
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
