//! The per-function point table (`ptable=function`, and the fallback of `ptable=exact` for a
//! function the machine-code analysis left unresolved): for an interrupted kernel instruction
//! pointer, every preemption point of its function, a superset of the ones that come next on
//! every path forward (the exact set is [`super::exact`]'s).
//!
//! **Mechanism.** The table is built once per process from the site table (the addresses of
//! every preemption point) and the machine code's function ranges (the FDEs of `.eh_frame`,
//! which the compiler emits for every function). Every path forward from an instruction in a
//! function either passes one of that function's points or leaves the function through its
//! return. So the table maps an instruction pointer to the points of the function containing
//! it (a superset of the ones next on each path: functions hold a handful of points) and the
//! patch models cover the other paths by redirecting that function's return. An instruction
//! pointer in a function with no points gets nothing, and the caller looks one frame up.
//!
//! **Look-up in constant time.** Only functions that hold points are entries, sorted by
//! address. An index of fixed-size buckets over the span they cover gives, for each bucket, the
//! first entry that ends after the bucket starts; a look-up scans from there while entries
//! start at or before the address. The scan passes only entries that overlap the bucket, at
//! most `BUCKET / 16` of them (functions are 16-byte aligned and at least that long), however
//! many points the program has. No allocation, no lock: the handler may use it.
//!
//! **Invariant.** Entries do not overlap; every registered site inside a listed function is in
//! that function's list, in address order.

use crate::arch::{Arch, A};
use crate::sync::OnceLock;
use alloc::{format, string::String, string::ToString, vec::Vec};

/// Bytes of code per index bucket.
pub const BUCKET: usize = 128;

/// A function that holds preemption points.
#[derive(Clone, Copy, Debug)]
struct Entry {
    start: usize,
    end: usize,
    /// Its points: `points[first..first + n]`.
    first: u32,
    n: u32,
}

/// For an instruction pointer, the points of its function (see the module docs).
#[derive(Debug, Default)]
pub struct PointTable {
    lo: usize,
    entries: Vec<Entry>,
    /// Site indices (positions in the sorted site list the table was built from).
    points: Vec<u32>,
    buckets: Vec<u32>,
    orphans: usize,
}

impl PointTable {
    /// Builds the table from function ranges (`start..end`, any order) and the sorted site
    /// addresses; the points an entry lists are indices into `sites`.
    pub fn build(functions: &[(usize, usize)], sites: &[usize]) -> PointTable {
        debug_assert!(sites.windows(2).all(|w| w[0] < w[1]), "sites must be sorted");
        let mut funcs: Vec<(usize, usize)> = functions.iter().copied().filter(|(s, e)| s < e).collect();
        funcs.sort_unstable();
        let mut t = PointTable::default();
        let mut placed = 0;
        for (start, end) in funcs {
            if t.entries.last().is_some_and(|e| start < e.end) {
                continue; // overlapping FDEs (rare: aliases): keep the first
            }
            let from = sites.partition_point(|&a| a < start);
            let to = sites.partition_point(|&a| a < end);
            if from == to {
                continue;
            }
            let first = t.points.len() as u32;
            t.points.extend((from..to).map(|i| i as u32));
            t.entries.push(Entry { start, end, first, n: (to - from) as u32 });
            placed += to - from;
        }
        t.orphans = sites.len() - placed;
        t.index();
        t
    }

    fn index(&mut self) {
        let (Some(first), Some(last)) = (self.entries.first(), self.entries.last()) else { return };
        self.lo = first.start / BUCKET * BUCKET;
        let n = (last.end - self.lo).div_ceil(BUCKET);
        let mut e = 0;
        self.buckets = (0..n)
            .map(|b| {
                let start = self.lo + b * BUCKET;
                while self.entries[e].end <= start {
                    e += 1;
                }
                e as u32
            })
            .collect();
    }

    fn entry(&self, ip: usize) -> Option<&Entry> {
        let b = ip.checked_sub(self.lo)? / BUCKET;
        let mut i = *self.buckets.get(b)? as usize;
        while let Some(e) = self.entries.get(i).filter(|e| e.start <= ip) {
            if ip < e.end {
                return Some(e);
            }
            i += 1;
        }
        None
    }

    /// The points (site indices) of the function containing `ip`; `None` if that function has
    /// none (or `ip` is in no function).
    pub fn lookup(&self, ip: usize) -> Option<&[u32]> {
        self.entry(ip).map(|e| &self.points[e.first as usize..(e.first + e.n) as usize])
    }

    /// The range of the function containing `ip`, if it holds points.
    pub fn function_of(&self, ip: usize) -> Option<(usize, usize)> {
        self.entry(ip).map(|e| (e.start, e.end))
    }

    /// How many functions hold points.
    pub fn functions(&self) -> usize {
        self.entries.len()
    }

    /// How many points the table lists.
    pub fn points(&self) -> usize {
        self.points.len()
    }

    /// Sites that lie in no known function (the table cannot name them for any address).
    pub fn orphans(&self) -> usize {
        self.orphans
    }
}

static TABLE: OnceLock<Result<PointTable, String>> = OnceLock::new();

/// The program's own table, built on first use from the site table and `.eh_frame` (the
/// host's text patcher and unwinder are prepared on the way). Call outside interrupt context
/// first (it allocates); afterwards [`get`] is signal-safe.
pub fn build() -> Result<&'static PointTable, String> {
    TABLE
        .get_or_init(|| {
            A::patch_prepare().map_err(|e| e.to_string())?;
            A::unwind_prepare()?;
            Ok(PointTable::build(&A::functions_in_text(), A::site_addrs()))
        })
        .as_ref()
        .map_err(|e| format!("cannot build the preemption-point table: {e}"))
}

/// The table, if [`build`] has run successfully.
pub fn get() -> Option<&'static PointTable> {
    TABLE.get().and_then(|t| t.as_ref().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2021::*;

    #[test]
    fn points_are_found_for_every_address_of_their_function_and_nowhere_else() {
        let funcs = [(0x1000, 0x1100), (0x1100, 0x1180), (0x2000, 0x2400), (0x9000, 0x9010)];
        let sites = [0x1010, 0x1050, 0x2100, 0x5000];
        let t = PointTable::build(&funcs, &sites);
        assert_eq!((t.functions(), t.points(), t.orphans()), (2, 3, 1));
        for ip in [0x1000, 0x1010, 0x10ff] {
            assert_eq!(t.lookup(ip), Some(&[0u32, 1][..]), "{ip:#x}");
        }
        for ip in [0x2000, 0x23ff] {
            assert_eq!(t.lookup(ip), Some(&[2u32][..]), "{ip:#x}");
        }
        for ip in [0, 0xfff, 0x1100, 0x1150, 0x1fff, 0x2400, 0x5000, 0x9005, usize::MAX] {
            assert_eq!(t.lookup(ip), None, "{ip:#x}");
        }
    }

    #[test]
    fn a_large_table_answers_like_a_linear_search() {
        let funcs: Vec<(usize, usize)> = (0..5000).map(|i| (0x10_0000 + i * 96, 0x10_0000 + i * 96 + 80)).collect();
        let sites: Vec<usize> = (0..5000).filter(|i| i % 3 != 0).map(|i| 0x10_0000 + i * 96 + 8).collect();
        let t = PointTable::build(&funcs, &sites);
        for ip in (0x0f_ff00..0x10_0000 + 5000 * 96 + 64).step_by(7) {
            let want = funcs.iter().position(|&(s, e)| ip >= s && ip < e).and_then(|f| {
                let i = sites.iter().position(|&a| a == 0x10_0000 + f * 96 + 8)?;
                Some(vec![i as u32])
            });
            assert_eq!(t.lookup(ip).map(|p| p.to_vec()), want, "{ip:#x}");
        }
    }
}
