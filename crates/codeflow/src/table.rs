//! The exact table: for an interrupted instruction pointer, the points first reached on every
//! path forward, and whether some path returns before one.
//!
//! **Mechanism.** Runs of consecutive instructions of an analysed function that share a next
//! set and a "may return" flag become one `Range`; the sets are stored once each in a pool of
//! site indices (a set of one site is kept in its range). Ranges are contiguous over the analysed span: the bytes between analysed
//! functions are `GAP` ranges, an unresolved function is one `UNRESOLVED` range. The index is
//! direct: one `u32` per `BUCKET`-byte bucket of `[lo, hi)`, the range that contains the
//! bucket's first byte, flagged `WHOLE` when that range covers the whole bucket, or `NOTHING`
//! for a bucket inside a gap. A look-up reads the address's bucket word; a `WHOLE` word is
//! its answer's range at once, else it steps forward while the next range starts at or before
//! the address: at most the ranges that start inside one bucket, `BUCKET` at worst (every
//! range is at least one byte), however large the table. A
//! miss (an address between analysed functions) costs what a hit does: the same two reads,
//! with no probing and so no cost that depends on where the code was linked. The index takes
//! 4 bytes per 64 of the analysed span (the span, not the analysed code: on this build's
//! hosted binary about 90 KiB). No allocation, no lock.
//!
//! **Invariant.** `ranges` is sorted by start and covers `[lo, hi)` without holes, the last
//! one starting at `hi`; `index[b]` is the range containing `base + b * BUCKET` (or the first
//! range, for a bucket that starts before `lo`), with `WHOLE` if it covers the whole bucket,
//! or `NOTHING` if that range is a gap that covers the whole bucket. Fewer than `WHOLE` ranges.

use crate::flow::Analysis;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// Bytes of code per index bucket.
pub const BUCKET: u64 = 64;
/// The index word of a bucket that holds no analysed byte.
const NOTHING: u32 = u32::MAX;
/// An index word's flag: its range covers the whole bucket (the look-up scans nothing).
const WHOLE: u32 = 1 << 30;

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
    /// `lo` rounded down to a bucket: where bucket 0 starts.
    base: u64,
    /// Per bucket of `[base, hi)`, the range containing its first byte.
    index: Vec<u32>,
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

    fn index(&mut self) {
        let (Some(first), Some(last)) = (self.ranges.first(), self.ranges.last()) else { return };
        assert!(self.ranges.len() < WHOLE as usize, "more ranges than an index word holds");
        (self.lo, self.hi) = (first.start, last.start);
        self.base = self.lo / BUCKET * BUCKET;
        let mut at = 0;
        let ranges = &self.ranges;
        self.index = (0..(self.hi - self.base).div_ceil(BUCKET))
            .map(|b| {
                let start = self.base + b * BUCKET;
                while ranges.get(at + 1).is_some_and(|r| r.start <= start) {
                    at += 1;
                }
                // A bucket inside one range answers at once: nothing if it is a gap (no
                // analysed byte in it), else that range.
                let whole = ranges[at].start <= start && ranges.get(at + 1).is_none_or(|r| r.start >= start + BUCKET);
                match (whole, ranges[at].flags == GAP) {
                    (true, true) => NOTHING,
                    (true, false) => at as u32 | WHOLE,
                    (false, _) => at as u32,
                }
            })
            .collect();
    }

    /// The index word of `ip`'s bucket (`NOTHING` if it holds no analysed byte); `None` outside
    /// `[lo, hi)`.
    #[inline]
    fn bucket(&self, ip: u64) -> Option<&u32> {
        if ip < self.lo || ip >= self.hi {
            return None;
        }
        self.index.get(((ip - self.base) / BUCKET) as usize)
    }

    /// The address of the index word a look-up of `ip` reads first (to prefetch it); `None`
    /// outside the table's span.
    pub fn first_line(&self, ip: u64) -> Option<usize> {
        self.bucket(ip).map(|w| w as *const u32 as usize)
    }

    /// The address of the range a look-up of `ip` reads after its index word (to prefetch it
    /// once the word is cached); `None` outside the table.
    pub fn second_line(&self, ip: u64) -> Option<usize> {
        self.ranges.get((*self.bucket(ip)? & !WHOLE) as usize).map(|r| r as *const Range as usize)
    }

    /// The table's answer for `ip`; `None` outside the analysed functions (a function that
    /// reaches no point, foreign code).
    pub fn lookup(&self, ip: u64) -> Option<Lookup<'_>> {
        let w = *self.bucket(ip).filter(|&&w| w != NOTHING)?;
        let r = if w & WHOLE != 0 {
            self.ranges.get((w & !WHOLE) as usize)?
        } else {
            let mut i = w as usize;
            while self.ranges.get(i + 1).is_some_and(|x| x.start <= ip) {
                i += 1;
            }
            self.ranges.get(i).filter(|r| r.start <= ip)?
        };
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
        self.ranges.len() * core::mem::size_of::<Range>() + self.pool.len() * 4 + self.index.len() * 4
    }
}
