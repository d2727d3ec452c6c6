//! The exact table: for an interrupted instruction pointer, the points first reached on every
//! path forward, and whether some path returns before one.
//!
//! **Mechanism.** Runs of consecutive instructions of an analysed function that share a next
//! set and a "may return" flag become one `Range`; the sets are stored once each in a pool of
//! site indices (a set of one site is kept in its range). Ranges are contiguous over the analysed span: the bytes between analysed
//! functions are `GAP` ranges, an unresolved function is one `UNRESOLVED` range. The index is
//! the seed's hash table: for every `BUCKET`-byte bucket that overlaps an analysed function,
//! an open-addressing slot (at most half the slots are used; Fibonacci hashing, linear
//! probing) holding the range that contains the bucket's first byte. A look-up hashes the
//! address's bucket (a bucket with no slot is outside every analysed function), then steps
//! forward while the next range starts at or before the address: at most the ranges that start
//! inside one bucket, `BUCKET` at worst (every range is at least one byte), however large the
//! table. Memory grows with the analysed code, not with the span of the text. No allocation,
//! no lock.
//!
//! **Invariant.** `ranges` is sorted by start and covers `[lo, hi)` without holes; the slot of
//! bucket `b` holds the range containing `b * BUCKET` (or the first range, if that is later).

use crate::flow::Analysis;
use alloc::collections::BTreeMap;
use alloc::{vec, vec::Vec};

/// Bytes of code per index bucket.
pub const BUCKET: u64 = 64;

const GAP: u8 = 1;
const UNRESOLVED: u8 = 2;
const MAY_RETURN: u8 = 4;

#[derive(Clone, Copy, Debug)]
struct Range {
    start: u64,
    /// The set: `pool[first..first + n]`, or, for a set of one, the site itself (the look-up
    /// then touches no pool line).
    first: u32,
    n: u16,
    flags: u8,
}

/// What the table says about an instruction pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The points (site indices) first reached on every path forward; `may_return`: some path
    /// leaves the function before reaching one.
    Exact {
        /// Site indices, sorted.
        sites: &'a [u32],
        /// Some path returns before a point.
        may_return: bool,
    },
    /// The function was analysed but its graph is not known exactly (an unrecognised indirect
    /// jump): the caller falls back to arming the function's points.
    Unresolved,
}

/// The exact next-point table (see the module docs).
#[derive(Debug, Default)]
pub struct ExactTable {
    lo: u64,
    hi: u64,
    ranges: Vec<Range>,
    pool: Vec<u32>,
    /// Hash slots: (bucket number + 1, 0: empty; its range), key and value in one line.
    slots: Vec<(u64, u32)>,
    /// `keys.len() - 1` (a power of two minus one).
    mask: usize,
    /// log2 of `keys.len()`.
    bits: u32,
}

impl ExactTable {
    /// Builds the table of an analysis.
    pub fn build(a: &Analysis) -> ExactTable {
        let mut t = ExactTable::default();
        let mut placed: BTreeMap<u32, (u32, u16)> = BTreeMap::new();
        let mut end = 0;
        for &f in &a.relevant {
            let c = &a.cfgs[f];
            if c.start < end {
                continue; // overlapping function ranges (aliases): keep the first
            }
            if !t.ranges.is_empty() && c.start > end {
                t.push(Range { start: end, first: 0, n: 0, flags: GAP });
            }
            match a.flows.get(&f) {
                None => t.push(Range { start: c.start, first: 0, n: 0, flags: UNRESOLVED }),
                Some(flow) => {
                    for (insn, &(id, ret)) in c.insns.iter().zip(flow) {
                        let (first, n) = *placed.entry(id).or_insert_with(|| match a.sets[id as usize][..] {
                            [one] => (one, 1),
                            ref s => {
                                t.pool.extend_from_slice(s);
                                ((t.pool.len() - s.len()) as u32, s.len() as u16)
                            }
                        });
                        t.push(Range { start: insn.addr, first, n, flags: if ret { MAY_RETURN } else { 0 } });
                    }
                }
            }
            end = c.end;
        }
        t.push(Range { start: end, first: 0, n: 0, flags: GAP });
        t.index();
        t
    }

    /// Appends a range, merging it into the last one when they say the same.
    fn push(&mut self, r: Range) {
        if let Some(l) = self.ranges.last() {
            if (l.first, l.n, l.flags) == (r.first, r.n, r.flags) {
                return;
            }
        }
        self.ranges.push(r);
    }

    fn slot(&self, bucket: u64) -> usize {
        (bucket.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - self.bits)) as usize
    }

    fn index(&mut self) {
        let (Some(first), Some(last)) = (self.ranges.first(), self.ranges.last()) else { return };
        (self.lo, self.hi) = (first.start, last.start);
        let mut buckets: Vec<(u64, u32)> = Vec::new();
        for (i, r) in self.ranges.iter().enumerate() {
            let Some(next) = self.ranges.get(i + 1).filter(|_| r.flags != GAP) else { continue };
            for b in r.start / BUCKET..=(next.start - 1) / BUCKET {
                if buckets.last().is_none_or(|&(l, _)| l < b) {
                    let at = self.ranges.partition_point(|x| x.start <= b * BUCKET).saturating_sub(1);
                    buckets.push((b, at as u32));
                }
            }
        }
        self.bits = (2 * buckets.len()).next_power_of_two().max(2).trailing_zeros();
        self.mask = (1 << self.bits) - 1;
        self.slots = vec![(0, 0); self.mask + 1];
        for (b, at) in buckets {
            let mut h = self.slot(b);
            while self.slots[h].0 != 0 {
                h = (h + 1) & self.mask;
            }
            self.slots[h] = (b + 1, at);
        }
    }

    /// The range containing `ip`'s bucket start, from the hash index.
    fn bucket_range(&self, ip: u64) -> Option<usize> {
        let b = ip / BUCKET;
        let mut h = self.slot(b);
        loop {
            match *self.slots.get(h)? {
                (0, _) => return None,
                (k, at) if k == b + 1 => return Some(at as usize),
                _ => h = (h + 1) & self.mask,
            }
        }
    }

    /// The address of the index slot a look-up of `ip` reads first (to prefetch it); `None`
    /// outside the table's span.
    pub fn first_line(&self, ip: u64) -> Option<usize> {
        if ip < self.lo || ip >= self.hi {
            return None;
        }
        self.slots.get(self.slot(ip / BUCKET)).map(|s| s as *const (u64, u32) as usize)
    }

    /// The address of the range a look-up of `ip` reads after its slot (to prefetch it once
    /// the slot is cached); `None` outside the table.
    pub fn second_line(&self, ip: u64) -> Option<usize> {
        if ip < self.lo || ip >= self.hi {
            return None;
        }
        self.ranges.get(self.bucket_range(ip)?).map(|r| r as *const Range as usize)
    }

    /// The table's answer for `ip`; `None` outside the analysed functions (a function that
    /// reaches no point, foreign code).
    pub fn lookup(&self, ip: u64) -> Option<Lookup<'_>> {
        if ip < self.lo || ip >= self.hi {
            return None;
        }
        let mut i = self.bucket_range(ip)?;
        while self.ranges.get(i + 1).is_some_and(|x| x.start <= ip) {
            i += 1;
        }
        let r = self.ranges.get(i).filter(|r| r.start <= ip)?;
        match r.flags {
            GAP => None,
            UNRESOLVED => Some(Lookup::Unresolved),
            f => Some(Lookup::Exact {
                sites: match r.n {
                    1 => core::slice::from_ref(&r.first),
                    n => &self.pool[r.first as usize..r.first as usize + n as usize],
                },
                may_return: f & MAY_RETURN != 0,
            }),
        }
    }

    /// Ranges stored (runs of instructions sharing a set).
    pub fn ranges(&self) -> usize {
        self.ranges.len()
    }

    /// Bytes the table occupies (ranges, set pool, bucket index).
    pub fn memory_bytes(&self) -> usize {
        self.ranges.len() * core::mem::size_of::<Range>()
            + self.pool.len() * 4
            + self.slots.len() * core::mem::size_of::<(u64, u32)>()
    }
}
