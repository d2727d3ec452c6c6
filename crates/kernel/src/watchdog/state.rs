//! The soft-lockup detector's state, as data: when the tick last saw each CPU touched, and
//! whether its current stretch was reported. The check itself is `watchdog`'s.
//!
//! **Invariant.** Data only: this file imports no subsystem.

use alloc::boxed::Box;
use core::sync::atomic::{AtomicBool, AtomicU64};

/// One CPU's soft-lockup state.
#[derive(Default)]
pub(crate) struct SoftLockupCpu {
    /// When the tick last saw the CPU touched (ns); 0 = not yet.
    pub(super) touch_ns: AtomicU64,
    /// The current stretch has been reported.
    pub(super) reported: AtomicBool,
}

/// Every CPU's soft-lockup state.
pub(crate) struct Watchdog {
    pub(super) cpus: Box<[SoftLockupCpu]>,
}

impl Watchdog {
    /// The detector's state for `cpus` CPUs, nothing seen yet.
    pub(crate) fn new(cpus: usize) -> Watchdog {
        Watchdog { cpus: (0..cpus).map(|_| SoftLockupCpu::default()).collect() }
    }
}
