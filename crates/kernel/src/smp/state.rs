//! The IPIs' state, as data: each CPU's mailboxes (a pending reschedule, queued function
//! calls) and the calls in flight that their sender keeps. Sending and serving them is `smp`'s.
//!
//! **Invariant.** Data only: this file imports no subsystem.

use crate::arch::IrqSpinLock;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::AtomicU64;

/// One queued function call (`call_single_data`).
pub(crate) struct CallData {
    pub(super) func: Box<dyn Fn() + Send + Sync>,
}

/// Calls sent without waiting, kept by the sender until every target has run them, so that no
/// target frees one in its interrupt (the interrupt path must not free memory).
pub(crate) type InFlight = IrqSpinLock<Vec<Arc<CallData>>>;

/// A CPU's IPI mailboxes.
#[derive(Default)]
pub(crate) struct IpiMailbox {
    /// A pending reschedule request: see the `RESCHED_*` bits.
    pub(super) resched: AtomicU64,
    /// Pending function calls, oldest first.
    pub(super) calls: IrqSpinLock<VecDeque<Arc<CallData>>>,
}
