//! The patch models' counters, declared once: each is an atomic per CPU ([`PatchStats`]), a
//! plain number in a report ([`PatchStatsSnapshot`]), and summed over CPUs
//! ([`PatchStatsSnapshot::add`]), all from the one list in [`patch_counters!`].
//!
//! **Mechanism.** A time (`*_ns`) is kept per CPU in cycles of `Arch::cycles` (the handler
//! adds a cycle-counter difference, no conversion on the interrupt path) and converted to ns
//! once, when a snapshot is taken (`Arch::cycles_ns`, linear: the sum of the conversions is
//! the conversion of the sum).
//!
//! **Invariant.** A counter added to the list is in all three; `armed_at_ip` is not a sum but
//! the last arming's address, on whichever CPU had one, and `arm_max_ns` the longest arming.

use crate::arch::{Arch, A};
use core::sync::atomic::{AtomicU64, Ordering};

/// Declares the counters: the per-CPU atomics, their snapshot and the sum over CPUs.
macro_rules! patch_counters {
    ($($(#[doc = $doc:literal])* $name:ident: $merge:ident $read:ident,)*) => {
        /// Counters of the patch models, per CPU.
        #[derive(Debug, Default)]
        pub(crate) struct PatchStats {
            $($(#[doc = $doc])* pub(crate) $name: AtomicU64,)*
        }

        /// The patch counters, as plain numbers.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize))]
        pub struct PatchStatsSnapshot {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl PatchStats {
            pub(crate) fn snapshot(&self) -> PatchStatsSnapshot {
                PatchStatsSnapshot { $($name: $read(self.$name.load(Ordering::Relaxed)),)* }
            }

            /// Every counter back to 0.
            pub(crate) fn reset(&self) {
                $(self.$name.store(0, Ordering::Relaxed);)*
            }
        }

        impl PatchStatsSnapshot {
            /// Adds another CPU's counters to these.
            pub fn add(&mut self, o: &PatchStatsSnapshot) {
                $(self.$name = $merge(self.$name, o.$name);)*
            }
        }
    };
}

/// A counter's sum over CPUs.
fn sum(a: u64, b: u64) -> u64 {
    a + b
}

/// A count, as kept.
fn raw(v: u64) -> u64 {
    v
}

/// A time kept in cycles, in ns.
fn ns(cycles: u64) -> u64 {
    A::cycles_ns(cycles)
}

/// The larger (a longest time, not a count).
fn max(a: u64, b: u64) -> u64 {
    a.max(b)
}

/// The last non-zero value (an address, not a count).
fn last(a: u64, b: u64) -> u64 {
    if b != 0 {
        b
    } else {
        a
    }
}

patch_counters! {
    /// RT events for which points were armed.
    events: sum raw,
    /// Sites armed, over all events.
    sites_armed: sum raw,
    /// Return addresses redirected.
    redirects: sum raw,
    /// Frames unwound to find a function with points.
    frames_walked: sum raw,
    /// Events whose interrupt landed in foreign code (libc, the vDSO).
    foreign: sum raw,
    /// Events the handler could not arm (no table entry within reach): the retry timer looks
    /// again instead.
    fallbacks: sum raw,
    /// Events (or chases) armed from the per-function table because the exact table had the
    /// function unresolved.
    exact_fallbacks: sum raw,
    /// Armed points reached (by `int3` or `call`).
    fired: sum raw,
    /// Redirected returns reached.
    returns: sum raw,
    /// Armed points and redirected returns that preempted the task (the events served there).
    preemptions: sum raw,
    /// Events that moved one frame up (a redirected return that could not preempt).
    chases: sum raw,
    /// Time spent arming, in ns (look-up, unwinding, patching), summed over events (kept in
    /// cycles, as every `*_ns` here).
    arm_ns: sum ns,
    /// The longest single arming at an interrupt's exit, in ns.
    arm_max_ns: max ns,
    /// Of `arm_ns`: the table look-ups, in ns.
    lookup_ns: sum ns,
    /// Of `arm_ns`: unwinding the stack (finding it, stepping to callers, the return slot).
    unwind_ns: sum ns,
    /// Of `arm_ns`: patching the sites (and undoing a previous arming first).
    poke_ns: sum ns,
    /// Of `arm_ns`: redirecting the return address.
    redirect_ns: sum ns,
    /// Time spent disarming once events were served (in `__schedule`), in ns.
    disarm_ns: sum ns,
    /// `SYNC_CORE` rounds the patches made (`patch_sync=ipi`; none under `none`).
    sync_rounds: sum raw,
    /// The instruction pointer whose look-up the last arming used (the interrupted IP, or the
    /// return address of the first frame that reaches points).
    armed_at_ip: last raw,
    /// Collateral `int3`s: armed breakpoints this CPU met while it had no event of its own
    /// (another CPU's, or another instance's), stepped over.
    collateral_int3: sum raw,
    /// Collateral `call`s of `rt_reschedule`: sites armed by another CPU that this CPU called
    /// through while it had no event of its own.
    collateral_calls: sum raw,
    /// Time measured inside the hooks of the collateral hits, in ns (the SIGTRAP hook of an
    /// `int3`, the point hook of a `call`); the host's signal delivery and the call's own
    /// trampoline are outside it.
    collateral_ns: sum ns,
}
