//! The patch handler's time by part: the look-ups, the unwinding, the arming, the redirect.
//!
//! **Mechanism.** Under `patch_parts=on` the handler takes [`Stages`]: one read of the cycle
//! counter (`Arch::cycles`) per boundary between parts, each difference added to its part,
//! the sums added to the CPU's `PatchStats` when the arming ends. Otherwise it takes
//! [`NoLaps`], whose laps compile to nothing: the handler is generic over [`Laps`], so the
//! untimed arming carries no test per lap either.
//!
//! **Invariant.** The parts are laps of one clock from the handler's own start: together they
//! never exceed its total (`arm_ns`), and they are all zero unless `patch_parts=on`.

use super::stats::PatchStats;
use crate::arch::{Arch, A};
use core::sync::atomic::Ordering;

/// A part of the handler's time.
#[derive(Clone, Copy)]
pub(super) enum Part {
    /// The table look-ups (`lookup_ns`).
    Lookup,
    /// The unwinding (`unwind_ns`).
    Unwind,
    /// The arming of the sites (`poke_ns`).
    Poke,
    /// The return's redirect (`redirect_ns`).
    Redirect,
}

/// Where the handler's laps go.
pub(super) trait Laps {
    /// The time since the last lap, for `part`.
    fn lap(&mut self, part: Part);
}

/// No laps (`patch_parts=off`).
pub(super) struct NoLaps;

impl Laps for NoLaps {
    #[inline(always)]
    fn lap(&mut self, _part: Part) {}
}

/// Laps of the cycle counter, in cycles (converted when a snapshot is taken).
pub(super) struct Stages {
    last: u64,
    parts: [u64; 4],
}

impl Stages {
    /// Laps from `t0`.
    pub(super) fn from(t0: u64) -> Stages {
        Stages { last: t0, parts: [0; 4] }
    }

    /// Adds the laps to the CPU's counters.
    pub(super) fn add_to(&self, stats: &PatchStats) {
        let [lookup, unwind, poke, redirect] = self.parts;
        stats.lookup_ns.fetch_add(lookup, Ordering::Relaxed);
        stats.unwind_ns.fetch_add(unwind, Ordering::Relaxed);
        stats.poke_ns.fetch_add(poke, Ordering::Relaxed);
        stats.redirect_ns.fetch_add(redirect, Ordering::Relaxed);
    }
}

impl Laps for Stages {
    #[inline(always)]
    fn lap(&mut self, part: Part) {
        let now = A::cycles();
        self.parts[part as usize] += now - self.last;
        self.last = now;
    }
}
