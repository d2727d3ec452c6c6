//! Measurements of the interrupt path: TSC cycles from an external vector's entry into Rust to
//! the core's return, taken on every interrupt (one `rdtsc` at each end).
//!
//! **Mechanism.** [`irq_enter`] stores the TSC, [`irq_exit`] adds the difference to a sum and
//! counts it, keeping the minimum; the image prints them (`figures` JSON line).
//!
//! **Invariant.** Called with IF clear on one CPU: the stores never race.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

static START: AtomicU64 = AtomicU64::new(0);
static SUM: AtomicU64 = AtomicU64::new(0);
static COUNT: AtomicU64 = AtomicU64::new(0);
static MIN: AtomicU64 = AtomicU64::new(u64::MAX);

/// The core's interrupt hook is about to run.
pub fn irq_enter() {
    START.store(crate::cpu::rdtsc(), Relaxed);
}

/// The core's interrupt hook returned.
pub fn irq_exit() {
    let d = crate::cpu::rdtsc() - START.load(Relaxed);
    SUM.fetch_add(d, Relaxed);
    COUNT.fetch_add(1, Relaxed);
    MIN.fetch_min(d, Relaxed);
}

/// (count, mean, min) of the core's interrupt hook in TSC cycles.
pub fn irq_figures() -> (u64, u64, u64) {
    let n = COUNT.load(Relaxed);
    (n, SUM.load(Relaxed) / n.max(1), MIN.load(Relaxed))
}
