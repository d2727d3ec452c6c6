//! The per-CPU event ring: a preallocated array of [`Record`]s written in order.
//!
//! **Mechanism.** `head` counts every record ever pushed; record `n` lives in slot
//! `n % capacity`. A push overwrites the oldest record once the ring is full (ftrace's
//! `overwrite` mode), so the ring always holds the most recent `capacity` events.
//!
//! **Invariant.** Pushing never allocates: the slots are allocated once, at boot. The owner
//! serialises access (the CPU's trace lock, taken with IRQs masked).

use super::types::Record;
use alloc::vec::Vec;

pub(super) struct Ring {
    slots: Vec<Record>,
    cap: usize,
    head: u64,
}

impl Ring {
    pub(super) fn new(cap: usize) -> Ring {
        Ring { slots: Vec::with_capacity(cap), cap, head: 0 }
    }

    pub(super) fn push(&mut self, r: Record) {
        if self.cap == 0 {
            return;
        }
        let i = (self.head % self.cap as u64) as usize;
        if i < self.slots.len() {
            self.slots[i] = r;
        } else {
            self.slots.push(r); // within the reserved capacity: no allocation
        }
        self.head += 1;
    }

    /// The records, oldest first, and how many were overwritten.
    pub(super) fn drain(&self) -> (Vec<Record>, u64) {
        let n = self.slots.len();
        let start = if (self.head as usize) > n { (self.head % self.cap as u64) as usize } else { 0 };
        let out = (0..n).map(|k| self.slots[(start + k) % n.max(1)]).collect();
        (out, self.head - n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Event;
    use std::prelude::rust_2021::*;

    fn rec(i: u64) -> Record {
        Record { ts_ns: i, cpu: 0, pid: 0, event: Event::SoftirqEntry { vec: 0 } }
    }

    #[test]
    fn ring_keeps_the_newest_in_order_and_counts_the_lost() {
        let mut r = Ring::new(4);
        for i in 0..3 {
            r.push(rec(i));
        }
        let (v, lost) = r.drain();
        assert_eq!((v.iter().map(|r| r.ts_ns).collect::<Vec<_>>(), lost), (vec![0, 1, 2], 0));
        for i in 3..10 {
            r.push(rec(i));
        }
        let (v, lost) = r.drain();
        assert_eq!((v.iter().map(|r| r.ts_ns).collect::<Vec<_>>(), lost), (vec![6, 7, 8, 9], 6));
        assert_eq!(r.slots.capacity(), 4, "never grew past its boot-time allocation");
    }
}
