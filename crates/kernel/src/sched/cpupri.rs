//! `cpupri`: which CPUs run at which priority, so that an RT wakeup finds the CPU running the
//! lowest priority without scanning every run queue (Linux's `kernel/sched/cpupri.c`).
//!
//! **Mechanism.** Each CPU is at one level: 0 idle, 1 fair, `1 + p` for an RT task of priority
//! `p` (its running task, or a higher RT task queued there). One atomic mask per level holds the
//! CPUs at that level. A CPU moves between levels with the two mask updates done under its own
//! run-queue lock, so a CPU is in one mask at a time up to the instant between the two
//! (readers may see it in neither or both, which only makes a placement less than ideal, never
//! wrong: the placement is checked again under the target's lock). [`CpuPri::find`] walks the
//! levels from the bottom up to (not including) the waking task's and returns the first
//! non-empty intersection with the allowed CPUs: at most 100 loads, independent of the number
//! of CPUs, and usually one or two.
//!
//! **Invariant.** `level[c]` is the level whose mask holds `c` (outside a move); only CPU `c`'s
//! lock holder moves `c`.

use crate::task::CpuMask;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// Levels: idle, fair, and RT priorities 1..=99.
const LEVELS: usize = 101;

/// The per-level CPU masks.
pub(crate) struct CpuPri {
    masks: [AtomicU64; LEVELS],
    level: Vec<AtomicU8>,
}

impl CpuPri {
    /// `cpus` CPUs, all idle.
    pub(crate) fn new(cpus: usize) -> CpuPri {
        let c = CpuPri {
            masks: core::array::from_fn(|_| AtomicU64::new(0)),
            level: (0..cpus).map(|_| AtomicU8::new(0)).collect(),
        };
        let all = if cpus >= 64 { u64::MAX } else { (1u64 << cpus) - 1 };
        c.masks[0].store(all, Ordering::Relaxed);
        c
    }

    /// CPU `cpu` now runs at `level` (call with its run-queue lock held).
    pub(crate) fn set(&self, cpu: usize, level: usize) {
        let level = level.min(LEVELS - 1);
        let old = self.level[cpu].load(Ordering::Relaxed) as usize;
        if old == level {
            return;
        }
        self.masks[level].fetch_or(1 << cpu, Ordering::AcqRel);
        self.masks[old].fetch_and(!(1 << cpu), Ordering::AcqRel);
        self.level[cpu].store(level as u8, Ordering::Relaxed);
    }

    /// The CPUs of `allowed` at the lowest level below `below` (none if all run at or above
    /// it).
    pub(crate) fn find(&self, allowed: CpuMask, below: usize) -> CpuMask {
        self.masks[..below.min(LEVELS)]
            .iter()
            .map(|m| m.load(Ordering::Acquire) & allowed)
            .find(|&m| m != 0)
            .unwrap_or(0)
    }

    /// The level CPU `cpu` runs at.
    pub(crate) fn level(&self, cpu: usize) -> usize {
        self.level[cpu].load(Ordering::Relaxed) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2021::*;

    #[test]
    fn find_returns_the_lowest_allowed_level_below_the_waker() {
        let c = CpuPri::new(4);
        c.set(0, 1); // fair
        c.set(1, 1 + 50); // rt 50
        c.set(2, 1 + 10); // rt 10
        c.set(3, 1); // fair
        assert_eq!(c.find(0b1111, 1 + 60), 0b1001);
        assert_eq!(c.find(0b0110, 1 + 60), 0b0100);
        assert_eq!(c.find(0b0010, 1 + 50), 0, "equal priority does not preempt");
        c.set(3, 0);
        assert_eq!(c.find(0b1111, 1 + 60), 0b1000, "idle first");
        assert_eq!(c.level(3), 0);
    }
}
