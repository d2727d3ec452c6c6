//! The image's `.eh_frame` unwinder: one frame up from an interrupted instruction, in constant
//! time, with no allocation.
//!
//! **Mechanism.** `link.ld` keeps the image's `.eh_frame` (every function's DWARF call-frame
//! information: `rustc` emits it for the host target even with `panic=abort`, the image's
//! precompiled `core` and `alloc` carry theirs, and the asm entry points that a walk may meet
//! carry `.cfi_*` directives) between `__eh_frame_start` and `__eh_frame_end`. [`prepare`]
//! evaluates every FDE's call-frame program once, at boot, with `gimli` (`no_std`, `read`),
//! and reduces each row to what an x86-64 step needs: the CFA (`rsp + off` or `rbp + off`),
//! the return address at `CFA + off`, the caller's `rbp` at `CFA + off` or unchanged. Rows
//! are sorted into one flat table with a bucket index (`Index`: per 16 bytes of text, the
//! first row ending after the bucket starts, flagged when that row covers the whole bucket, as
//! it does in most of a function's body), so a look-up reads one index word and either has
//! its row at once or scans a few rows, however large the table; [`prepare`] checks the index
//! against every row before publishing it. The FDE ranges (the functions) get the same index.
//! [`step`] looks up the row of an instruction pointer, reads two stack words and returns
//! the caller's frame and the slot its return address is in: what the patch models need to
//! walk to a caller with points, or to redirect a return.
//!
//! **Invariants.** The tables are built once, before any task runs, and only read afterwards:
//! [`step`], [`function_of`] and the prefetches take no lock and never allocate, so the
//! interrupt path may use them. [`step`] reads only aligned words inside the stack bounds its
//! caller passes, and each step moves strictly up the stack: a corrupt frame ends the walk
//! (`None`), never a wild read or a loop. A row whose CFA or return address the reduction
//! cannot express (a DWARF expression, `.cfi_undefined rip` at an entry point's outermost
//! frame) is left out, and an ip it covers has no row: the walk ends there.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicPtr, Ordering};
use gimli::{BaseAddresses, CfaRule, CieOrFde, EhFrame, LittleEndian, RegisterRule, UnwindSection};

pub use arch_api::{Frame, Step, UnwindRule};
/// Bytes of text per index bucket. Epilogues make a row per `pop` (one or two bytes each), so
/// a 64-byte bucket can hold 30 rows to scan (a step measured 178 instructions); 16 bytes
/// bound the scan to a few rows for 4 bytes of index per 16 of text.
const BUCKET: usize = 16;

/// One CFI row, reduced (see the module's description): its rule holds for ip in
/// `[start, end)`.
#[derive(Clone, Copy, Debug)]
struct Row {
    start: usize,
    end: usize,
    rule: UnwindRule,
}

/// Constant-time look-up over sorted, non-overlapping ranges inside `[lo, lo + BUCKET *
/// buckets.len())`: `buckets[b]` is the first range that ends after bucket `b` starts, with
/// [`WHOLE`] set when that range covers the whole bucket (most buckets of a function's body:
/// the look-up then reads no bounds).
struct Index {
    lo: usize,
    buckets: Vec<u32>,
}

/// An index word's flag: its range covers the whole bucket.
const WHOLE: u32 = 1 << 31;

impl Index {
    fn build(ranges: &[(usize, usize)]) -> Index {
        let (Some(first), Some(hi)) = (ranges.first(), ranges.iter().map(|r| r.1).max()) else {
            return Index { lo: 0, buckets: Vec::new() };
        };
        let lo = first.0 / BUCKET * BUCKET;
        let mut r = 0;
        assert!(ranges.len() < WHOLE as usize, "more ranges than an index word holds");
        let buckets = (0..(hi - lo).div_ceil(BUCKET))
            .map(|b| {
                let start = lo + b * BUCKET;
                while r < ranges.len() && ranges[r].1 <= start {
                    r += 1;
                }
                let whole = ranges.get(r).is_some_and(|&(s, e)| s <= start && e >= start + BUCKET);
                r as u32 | if whole { WHOLE } else { 0 }
            })
            .collect();
        Index { lo, buckets }
    }

    /// The index word a look-up of `x` reads first.
    fn bucket_of(&self, x: usize) -> Option<&u32> {
        self.buckets.get(x.checked_sub(self.lo)? / BUCKET)
    }

    /// The entry of `v` (the ranges this index was built from) covering `x`.
    #[inline]
    fn find<'a, T>(&self, x: usize, v: &'a [T], range: impl Fn(&T) -> (usize, usize)) -> Option<&'a T> {
        let w = *self.bucket_of(x)?;
        if w & WHOLE != 0 {
            return v.get((w & !WHOLE) as usize);
        }
        let mut r = w as usize;
        while let Some(e) = v.get(r).filter(|e| range(e).0 <= x) {
            if x < range(e).1 {
                return Some(e);
            }
            r += 1;
        }
        None
    }
}

/// The reduced tables, built once by [`prepare`].
struct Tables {
    rows: Vec<Row>,
    rows_index: Index,
    /// FDE ranges (the functions), sorted, non-overlapping.
    fdes: Vec<(usize, usize)>,
    fdes_index: Index,
    /// FDEs read, and rows left out by the reduction (for the boot line).
    fde_count: usize,
    dropped: usize,
}

impl Tables {
    /// Every row and every function found by its index at its first and last byte, and every
    /// bucket marked [`WHOLE`] covered by its entry: the indexes' self-check at boot (a few
    /// instructions per entry).
    fn check_index(&self) -> Result<(), alloc::string::String> {
        let rows: &[Row] = &self.rows;
        for (k, r) in rows.iter().enumerate() {
            for x in [r.start, r.end - 1] {
                let found = self.rows_index.find(x, rows, |r| (r.start, r.end)).map(|f| f as *const Row);
                if found != Some(&rows[k] as *const Row) {
                    return Err(alloc::format!(
                        "the unwind index misses row {k} ({:#x}..{:#x}) at {x:#x}",
                        r.start,
                        r.end
                    ));
                }
            }
        }
        for (k, &(lo, hi)) in self.fdes.iter().enumerate() {
            for x in [lo, hi - 1] {
                if self.fdes_index.find(x, &self.fdes, |&r| r) != Some(&self.fdes[k]) {
                    return Err(alloc::format!("the function index misses {lo:#x}..{hi:#x} at {x:#x}"));
                }
            }
        }
        let rows_whole = whole_buckets(&self.rows_index, |i| rows.get(i).map(|r| (r.start, r.end)));
        let fdes_whole = whole_buckets(&self.fdes_index, |i| self.fdes.get(i).copied());
        match rows_whole.and(fdes_whole) {
            Some(()) => Ok(()),
            None => Err("the unwind index marks a bucket whole that its entry does not cover".into()),
        }
    }
}

/// `Some` if every bucket of `index` marked [`WHOLE`] is covered by its entry (`range(i)`).
fn whole_buckets(index: &Index, range: impl Fn(usize) -> Option<(usize, usize)>) -> Option<()> {
    for (b, &w) in index.buckets.iter().enumerate().filter(|(_, &w)| w & WHOLE != 0) {
        let start = index.lo + b * BUCKET;
        let (s, e) = range((w & !WHOLE) as usize)?;
        if s > start || e < start + BUCKET {
            return None;
        }
    }
    Some(())
}

/// Set once by [`prepare`] to a leaked `Tables`; never freed or changed afterwards.
static TABLES: AtomicPtr<Tables> = AtomicPtr::new(core::ptr::null_mut());

extern "C" {
    static __eh_frame_start: u8;
    static __eh_frame_end: u8;
}

/// The image's `.eh_frame` section.
fn section() -> &'static [u8] {
    let (s, e) = (&raw const __eh_frame_start as usize, &raw const __eh_frame_end as usize);
    // SAFETY: `link.ld` places `.eh_frame` between the two symbols, in rodata, which is
    // mapped read-only for the image's life and never written.
    unsafe { core::slice::from_raw_parts(s as *const u8, e - s) }
}

/// Reduces one gimli row; `None` if a rule needs more than `rsp`/`rbp` plus an offset.
fn reduce<T: gimli::ReaderOffset>(row: &gimli::UnwindTableRow<T>, ra: gimli::Register) -> Option<Row> {
    let (cfa_rbp, cfa_off) = match *row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } if register == gimli::X86_64::RSP => (false, offset),
        CfaRule::RegisterAndOffset { register, offset } if register == gimli::X86_64::RBP => (true, offset),
        _ => return None,
    };
    let Some(RegisterRule::Offset(ra_off)) = row.register(ra) else { return None };
    let rbp_off = match row.register(gimli::X86_64::RBP) {
        None | Some(RegisterRule::Undefined | RegisterRule::SameValue) => UnwindRule::RBP_SAME,
        Some(RegisterRule::Offset(n)) => i32::try_from(n).ok().filter(|&n| n != UnwindRule::RBP_SAME)?,
        _ => return None,
    };
    let (start, end) = (row.start_address() as usize, row.end_address() as usize);
    let (cfa_off, ra_off) = (i32::try_from(cfa_off).ok()?, i32::try_from(ra_off).ok()?);
    Some(Row { start, end, rule: UnwindRule { cfa_off, ra_off, rbp_off, cfa_rbp, signal: false } })
}

fn build() -> Result<Tables, gimli::Error> {
    let sec = section();
    let mut eh = EhFrame::new(sec, LittleEndian);
    eh.set_address_size(8);
    let bases = BaseAddresses::default().set_eh_frame(sec.as_ptr() as u64).set_text(crate::text::range().0 as u64);
    let mut ctx = Box::new(gimli::UnwindContext::new());
    let (mut rows, mut fdes, mut fde_count, mut dropped) = (Vec::new(), Vec::new(), 0, 0);
    let mut entries = eh.entries(&bases);
    while let Some(entry) = entries.next()? {
        let CieOrFde::Fde(partial) = entry else { continue };
        let fde = partial.parse(|s, b, o| s.cie_from_offset(b, o))?;
        let (lo, hi) = (fde.initial_address() as usize, fde.end_address() as usize);
        if lo >= hi || !crate::text::contains(lo) {
            continue; // an FDE the linker's --gc-sections emptied (address 0), or not text
        }
        fde_count += 1;
        fdes.push((lo, hi));
        let ra = fde.cie().return_address_register();
        let mut table = fde.rows(&eh, &bases, &mut ctx)?;
        while let Some(row) = table.next_row()? {
            match reduce(row, ra) {
                Some(r) if r.start < r.end => rows.push(r),
                Some(_) => {}
                None => dropped += 1,
            }
        }
    }
    rows.sort_unstable_by_key(|r| r.start);
    rows.dedup_by(|next, prev| next.start < prev.end); // overlapping FDEs: keep the first
    fdes.sort_unstable();
    fdes.dedup_by(|next, prev| next.0 < prev.1);
    let spans: Vec<(usize, usize)> = rows.iter().map(|r| (r.start, r.end)).collect();
    let (rows_index, fdes_index) = (Index::build(&spans), Index::build(&fdes));
    Ok(Tables { rows, rows_index, fdes, fdes_index, fde_count, dropped })
}

/// Evaluates the image's CFI into the reduced tables (idempotent). Call at boot, before any
/// task runs: it allocates. Prints one line with what it read.
pub fn prepare() -> Result<(), alloc::string::String> {
    if tables().is_some() {
        return Ok(());
    }
    let t = build().map_err(|e| alloc::format!("the image's .eh_frame: {e}"))?;
    if t.rows.is_empty() {
        return Err("the image's .eh_frame has no usable rows (built without unwind tables?)".into());
    }
    t.check_index()?;
    crate::kprintln!(
        "unwind: .eh_frame {} bytes, {} FDEs, {} rows ({} left out), index {} + {} buckets",
        section().len(),
        t.fde_count,
        t.rows.len(),
        t.dropped,
        t.rows_index.buckets.len(),
        t.fdes_index.buckets.len()
    );
    let p = Box::into_raw(Box::new(t));
    if TABLES.compare_exchange(core::ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire).is_err() {
        // SAFETY: `p` came from Box::into_raw just above and was never published.
        drop(unsafe { Box::from_raw(p) });
    }
    Ok(())
}

fn tables() -> Option<&'static Tables> {
    // SAFETY: TABLES is null or a leaked Box<Tables> published once and never freed or
    // written afterwards (see `prepare`).
    unsafe { TABLES.load(Ordering::Acquire).as_ref() }
}

/// Reads the stack word at `addr` if it lies, aligned, inside `[lo, hi)`.
#[inline]
fn read_word(addr: usize, (lo, hi): (usize, usize)) -> Option<usize> {
    // one compare for both bounds: below `lo` wraps to a huge offset
    let span = hi.checked_sub(lo)?;
    if addr & 7 != 0 || span < 8 || addr.wrapping_sub(lo) > span - 8 {
        return None;
    }
    // SAFETY: [addr, addr + 8) is aligned and inside the stack bounds the caller of `step`
    // vouches for (the running task's mapped stack).
    Some(unsafe { (addr as *const usize).read_volatile() })
}

/// One frame up from `f`, `stack` being the task's stack `[lo, hi)`: the row covering `f.ip`
/// (`f.ip - 1` for a return address), then its rule's step ([`UnwindRule::step`], reading
/// with `read_word`). `None` without tables or a row, or where the rule's step ends.
#[inline]
pub fn step(f: &Frame, stack: (usize, usize)) -> Option<Step> {
    let pc = f.ip.wrapping_sub(usize::from(f.is_return_address)); // 0 - 1 is in no row
    let t = tables()?;
    let row = t.rows_index.find(pc, &t.rows, |r| (r.start, r.end))?;
    row.rule.step(f, |a| read_word(a, stack))
}

/// Each frame's ip from `from` up (`from.ip` first) into `out`; returns how many.
pub fn backtrace(from: Frame, stack: (usize, usize), out: &mut [usize]) -> usize {
    let (mut frame, mut n) = (from, 0);
    while n < out.len() {
        out[n] = frame.ip;
        n += 1;
        match step(&frame, stack) {
            Some(s) => frame = s.caller,
            None => break,
        }
    }
    n
}

/// The function (FDE) containing `ip`.
pub fn function_of(ip: usize) -> Option<(usize, usize)> {
    let t = tables()?;
    t.fdes_index.find(ip, &t.fdes, |&r| r).copied()
}

/// Every function's `[start, end)`, sorted (empty before [`prepare`]).
pub fn functions() -> Vec<(usize, usize)> {
    tables().map_or_else(Vec::new, |t| t.fdes.clone())
}

/// Requests the index word [`step`] reads first for `ip`.
pub fn prefetch_for(ip: usize) {
    if let Some(b) = tables().and_then(|t| t.rows_index.bucket_of(ip)) {
        <crate::Metal as arch_api::Arch>::prefetch(b as *const u32 as usize);
    }
}

/// Requests the row the index word (cached by [`prefetch_for`]) names for `ip`.
pub fn prefetch_row_for(ip: usize) {
    let Some(t) = tables() else { return };
    if let Some(row) = t.rows_index.bucket_of(ip).and_then(|&r| t.rows.get((r & !WHOLE) as usize)) {
        <crate::Metal as arch_api::Arch>::prefetch(row as *const Row as usize);
    }
}

/// One warm [`step`] timed by [`self_check`], in TSC cycles (instructions under `-icount
/// shift=0`).
pub static STEP_CYCLES: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Walks up from inside three nested functions (`probe_c` called by `probe_b` called by
/// `probe_a`, none inlined) on the running task's stack and checks that the walk names them in
/// order, then the caller of `probe_a`: `Ok(frames walked)`, or what went wrong.
pub fn self_check() -> Result<usize, &'static str> {
    let r = probe_a(core::hint::black_box(1));
    core::hint::black_box(r.1);
    r.0
}

type Probe = (Result<usize, &'static str>, u64);

#[inline(never)]
fn probe_a(x: u64) -> Probe {
    let r = probe_b(core::hint::black_box(x + 1));
    (r.0, core::hint::black_box(r.1) + 1) // work after the call: no tail call
}

#[inline(never)]
fn probe_b(x: u64) -> Probe {
    let r = probe_c(core::hint::black_box(x + 1));
    (r.0, core::hint::black_box(r.1) + 1)
}

#[inline(never)]
fn probe_c(x: u64) -> Probe {
    let (ip, sp, bp): (usize, usize, usize);
    // SAFETY: reads rip, rsp and rbp at one instruction; writes nothing else.
    unsafe {
        core::arch::asm!(
            "lea {ip}, [rip]", // the address of the next instruction (inside probe_c)
            "mov {sp}, rsp",   // rsp there (the asm does not move it)
            "mov {bp}, rbp",   // rbp there
            ip = out(reg) ip,
            sp = out(reg) sp,
            bp = out(reg) bp,
            options(nomem, nostack, preserves_flags),
        )
    };
    let check = || {
        let stack = crate::switch::current_stack().ok_or("no task stack")?;
        let mut out = [0usize; 8];
        let n = backtrace(Frame { ip, sp, bp, is_return_address: false }, stack, &mut out);
        let func = |a: usize| function_of(a).ok_or("a function without an FDE");
        let want = [
            func(probe_c as *const () as usize)?,
            func(probe_b as *const () as usize)?,
            func(probe_a as *const () as usize)?,
        ];
        if n < 4 {
            return Err("the walk ended before the caller of probe_a");
        }
        for (i, w) in want.iter().enumerate() {
            let pc = if i == 0 { out[0] } else { out[i] - 1 };
            if function_of(pc) != Some(*w) {
                return Err("a frame's return address is not in the function that called");
            }
        }
        // one step from probe_c, warm (its rows are cached now), in TSC cycles
        let f = Frame { ip, sp, bp, is_return_address: false };
        let t0 = crate::cpu::rdtsc();
        let up = core::hint::black_box(step(core::hint::black_box(&f), stack));
        STEP_CYCLES.store(crate::cpu::rdtsc() - t0, Ordering::Relaxed);
        up.ok_or("no step")?;
        Ok(n)
    };
    (check(), x)
}
