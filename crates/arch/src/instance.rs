//! The instance a CPU belongs to: a per-CPU pointer the core reads on every entry.
//!
//! **Mechanism.** A CPU thread keeps `Arc::into_raw` of its kernel instance in a hot per-CPU
//! word (`percpu`, offset 40): reading it is one `%fs`-relative load, right on whatever thread
//! the task runs on now. [`with`] lends the instance as `&Arc<T>` without touching its
//! reference count (no locked instruction on the core's hot paths); [`set`] replaces it,
//! giving the old reference back. Many instances boot side by side in one process (the tests
//! run many at once): each CPU thread points at its own.
//!
//! **Invariant.** Every pointer ever stored is an `Arc<T>` of one type `T` per process (the
//! first [`set`] fixes it; [`with`] for another type finds nothing, and [`set`] of another type
//! is a `BUG:`), so the word is always read back as the type it was made from. The pointed-to
//! instance lives while lent: [`set`] refuses (a `BUG:`, not a dangling reference) to replace
//! it while a [`with`] on this thread is open, as a `RefCell` refuses a `borrow_mut`.

use crate::percpu;
use std::any::TypeId;
use std::mem::ManuallyDrop;
use std::sync::{Arc, OnceLock};

/// The one instance type of the process.
static INSTANCE_TYPE: OnceLock<TypeId> = OnceLock::new();

/// Makes the calling thread's CPU belong to `instance` (`None`: to none).
pub(crate) fn set<T: Send + Sync + 'static>(instance: Option<Arc<T>>) {
    if *INSTANCE_TYPE.get_or_init(TypeId::of::<T>) != TypeId::of::<T>() {
        crate::cpu::die("BUG: a CPU set to an instance of a second type");
    }
    if percpu::instance_borrows() != 0 {
        crate::cpu::die("BUG: a CPU's instance replaced while it is lent (inside with_this_instance)");
    }
    let new = instance.map_or(0, |a| Arc::into_raw(a) as usize);
    let old = percpu::instance();
    percpu::set_instance(new);
    if old != 0 {
        // SAFETY: `old` was stored by an earlier `set` on this thread from `Arc::<T>::into_raw`
        // (the one instance type, checked above), its reference given to the word; nothing
        // lends it now (no borrow open), and the word no longer holds it.
        drop(unsafe { Arc::from_raw(old as *const T) });
    }
}

/// Runs `f` on the calling thread's instance, lent; `None` when it has none of type `T`.
#[inline(always)]
pub(crate) fn with<T: Send + Sync + 'static, R>(f: impl FnOnce(&Arc<T>) -> R) -> Option<R> {
    let p = percpu::instance();
    if p == 0 || INSTANCE_TYPE.get() != Some(&TypeId::of::<T>()) {
        return None;
    }
    // SAFETY: a non-zero word holds `Arc::<T>::into_raw` of a live instance of this type (the
    // process's one instance type, checked above), whose reference the word owns; the borrow
    // count keeps `set` from releasing it until `f` returns, and `ManuallyDrop` keeps this
    // copy from releasing it at all.
    let a = ManuallyDrop::new(unsafe { Arc::from_raw(p as *const T) });
    percpu::instance_borrow();
    let r = f(&a);
    percpu::instance_unborrow();
    Some(r)
}
