//! Measurements of the interrupt path: TSC cycles of the core's interrupt hook, taken on
//! every external interrupt (one `rdtsc` at each end), and the interrupts that nested in the
//! window where [`crate::irq::irq_exit_irqs_on`] runs with IF set.
//!
//! **Mechanism.** [`irq_hook`] adds one measurement to a sum and a count and keeps the
//! minimum; the image prints them (its `irq_hook_cycles` JSON line).
//!
//! **Invariant.** Called with IF clear on one CPU: the updates never race.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

static SUM: AtomicU64 = AtomicU64::new(0);
static COUNT: AtomicU64 = AtomicU64::new(0);
static MIN: AtomicU64 = AtomicU64::new(u64::MAX);
static NESTED: AtomicU64 = AtomicU64::new(0);
static WINDOWS: AtomicU64 = AtomicU64::new(0);

/// `irq_exit_irqs_on` opened a window with IF set on an interrupt's exit.
pub fn irqs_on_window() {
    WINDOWS.fetch_add(1, Relaxed);
}

/// The windows `irq_exit_irqs_on` opened on an interrupt's exit.
pub fn irqs_on_windows() -> u64 {
    WINDOWS.load(Relaxed)
}

/// One run of the core's interrupt hook took `cycles`; `nested`: it interrupted another
/// interrupt's exit.
pub fn irq_hook(cycles: u64, nested: bool) {
    SUM.fetch_add(cycles, Relaxed);
    COUNT.fetch_add(1, Relaxed);
    MIN.fetch_min(cycles, Relaxed);
    NESTED.fetch_add(u64::from(nested), Relaxed);
}

/// (count, mean, min, nested) of the core's interrupt hook, in TSC cycles.
pub fn irq_figures() -> (u64, u64, u64, u64) {
    let n = COUNT.load(Relaxed);
    (n, SUM.load(Relaxed) / n.max(1), MIN.load(Relaxed), NESTED.load(Relaxed))
}
