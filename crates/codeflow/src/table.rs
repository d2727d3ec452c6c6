//! The exact table: for an interrupted instruction pointer, the points first reached on every
//! path forward, and whether some path returns before one.
//!
//! **Mechanism.** Runs of consecutive instructions of an analysed function that share a next
//! set and a "may return" flag become one [`Range`]; the sets are stored once each in a pool of
//! site indices. Ranges are contiguous over the analysed span: the bytes between analysed
//! functions are `GAP` ranges, an unresolved function is one `UNRESOLVED` range. A look-up
//! takes the address's bucket (`BUCKET` bytes each) to the last range that starts at or before
//! the bucket, and steps forward while the next range starts at or before the address: at most
//! the ranges that start inside one bucket, `BUCKET` at worst (every range is at least one
//! byte), however large the table. No allocation, no lock.
//!
//! **Invariant.** `ranges` is sorted by start and covers `[lo, hi)` without holes; `buckets[b]`
//! is the last range starting at or before `lo + b * BUCKET`.

use crate::flow::Analysis;
use std::collections::HashMap;

/// Bytes of code per index bucket.
pub const BUCKET: u64 = 64;

const GAP: u8 = 1;
const UNRESOLVED: u8 = 2;
const MAY_RETURN: u8 = 4;

#[derive(Clone, Copy, Debug)]
struct Range {
    start: u64,
    /// The set: `pool[first..first + n]`.
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
    buckets: Vec<u32>,
}

impl ExactTable {
    /// Builds the table of an analysis.
    pub fn build(a: &Analysis) -> ExactTable {
        let mut t = ExactTable::default();
        let mut placed: HashMap<u32, (u32, u16)> = HashMap::new();
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
                        let (first, n) = *placed.entry(id).or_insert_with(|| {
                            let s = &a.sets[id as usize];
                            t.pool.extend_from_slice(s);
                            ((t.pool.len() - s.len()) as u32, s.len() as u16)
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

    fn index(&mut self) {
        let (Some(first), Some(last)) = (self.ranges.first(), self.ranges.last()) else { return };
        self.lo = first.start / BUCKET * BUCKET;
        self.hi = last.start;
        let n = (self.hi - self.lo).div_ceil(BUCKET) as usize;
        let mut r = 0;
        self.buckets = (0..n)
            .map(|b| {
                let at = self.lo + b as u64 * BUCKET;
                while self.ranges.get(r + 1).is_some_and(|x| x.start <= at) {
                    r += 1;
                }
                r as u32
            })
            .collect();
    }

    /// The table's answer for `ip`; `None` outside the analysed functions (a function that
    /// reaches no point, foreign code).
    pub fn lookup(&self, ip: u64) -> Option<Lookup<'_>> {
        if ip < self.lo || ip >= self.hi {
            return None;
        }
        let mut i = *self.buckets.get(((ip - self.lo) / BUCKET) as usize)? as usize;
        while self.ranges.get(i + 1).is_some_and(|x| x.start <= ip) {
            i += 1;
        }
        let r = self.ranges.get(i).filter(|r| r.start <= ip)?;
        match r.flags {
            GAP => None,
            UNRESOLVED => Some(Lookup::Unresolved),
            f => Some(Lookup::Exact {
                sites: &self.pool[r.first as usize..r.first as usize + r.n as usize],
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
        self.ranges.len() * std::mem::size_of::<Range>() + self.pool.len() * 4 + self.buckets.len() * 4
    }
}
