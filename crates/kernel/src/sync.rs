//! Locks and one-time cells that kernel code, interrupt handlers and other CPUs share.
//!
//! **Mechanism.** [`IrqSpinLock`] is `lock_api`'s mutex over the arch's raw spinlock, which
//! masks the CPU's interrupts while held (`spin_lock_irqsave`). `OnceLock` is a cell written
//! once and read without a lock afterwards, over `spin::Once` (the core has no std).
//! `CpuExclusive` is a CPU's own value, touched by that CPU with its interrupts masked: one
//! atomic swap takes it, with no mask to save and nothing to wait for.
//!
//! **Invariant.** None blocks the CPU in the host: a waiter spins, so none may be waited for
//! by the CPU that holds it (the arch reports a spinlock recursion as a `BUG:`; a
//! `CpuExclusive` found taken is one too).

/// A spin lock protecting a `T`, taken with interrupts (the CPU's soft IRQ mask) masked, as
/// Linux's `spin_lock_irqsave`: the lock task code may share with an interrupt handler, a
/// bottom half or another CPU. `lock()` returns a guard that releases the lock and restores the
/// interrupt state when dropped. Its raw lock is the arch's.
pub use crate::arch::IrqSpinLock;
use crate::arch::{Arch, A};

/// A CPU's own value, which only that CPU touches, with its interrupts masked (the patch
/// models' armed set: the interrupt exit, `__schedule` and a redirected return all run so).
/// Nothing can then contend for it, so [`CpuExclusive::borrow`] is one atomic swap, where an
/// [`IrqSpinLock`] would also save and restore the interrupt mask and name its holder: a
/// borrow that finds it taken (re-entered, or reached from another CPU) is a `BUG:` that
/// stops the kernel, never a wait or a second `&mut`.
pub(crate) struct CpuExclusive<T>(spin::mutex::SpinMutex<T>);

impl<T> CpuExclusive<T> {
    /// The value, not borrowed.
    pub(crate) const fn new(value: T) -> Self {
        CpuExclusive(spin::mutex::SpinMutex::new(value))
    }

    /// The value, for this CPU (interrupts masked; checked in debug builds).
    #[inline]
    #[track_caller]
    pub(crate) fn borrow(&self) -> spin::mutex::SpinMutexGuard<'_, T> {
        debug_assert!(A::irqs_disabled(), "CpuExclusive borrowed with interrupts enabled");
        match self.0.try_lock() {
            Some(g) => g,
            None => A::die("BUG: a CPU-exclusive value borrowed twice (re-entered, or from another CPU)"),
        }
    }
}

impl<T: Default> Default for CpuExclusive<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

/// A cell set at most once, then read without a lock (as std's `OnceLock`).
pub(crate) struct OnceLock<T>(spin::Once<T>);

impl<T> OnceLock<T> {
    /// An empty cell.
    pub(crate) const fn new() -> Self {
        OnceLock(spin::Once::new())
    }

    /// The value, once set.
    #[inline]
    pub(crate) fn get(&self) -> Option<&T> {
        self.0.get()
    }

    /// Sets the value; `Err(value)` if it was set already.
    pub(crate) fn set(&self, value: T) -> Result<(), T> {
        let mut value = Some(value);
        self.0.call_once(|| value.take().expect("called once"));
        value.map_or(Ok(()), Err)
    }

    /// The value, set by `f` first if the cell was empty (another CPU setting it meanwhile
    /// is waited for).
    pub(crate) fn get_or_init(&self, f: impl FnOnce() -> T) -> &T {
        self.0.call_once(f)
    }
}

impl<T> From<T> for OnceLock<T> {
    fn from(value: T) -> Self {
        OnceLock(spin::Once::initialized(value))
    }
}

impl<T> Default for OnceLock<T> {
    fn default() -> Self {
        Self::new()
    }
}
