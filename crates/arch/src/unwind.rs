//! Frame unwinding from a signal handler, driven by the loaded objects' DWARF CFI.
//!
//! **Mechanism.** [`prepare`] walks every loaded object with `dl_iterate_phdr` (the program,
//! libc, the dynamic loader, the vDSO, ...), finds its `.eh_frame` through `PT_GNU_EH_FRAME`
//! (the `.eh_frame_hdr`, whose first pointer locates `.eh_frame`), and evaluates every FDE's
//! call-frame program once with `gimli`. Each resulting row is reduced to the two rules an
//! x86-64 unwind step needs: the CFA (`rsp + off` or `rbp + off`), where the return address
//! is (`CFA + off`: `CFA - 8` after a call, `CFA - 136` in the preemption trampoline), where
//! the caller's `rbp` was saved (`CFA + off`, or not saved), and whether the frame is a signal
//! frame (augmentation `S`: its "return address" is an interrupted instruction). The rows
//! of all objects go into one flat table sorted by address, with a bucket index (an `Index`)
//! so that a look-up touches a few cache lines however large the table; [`step`] looks up the
//! row, reads two stack words and returns the caller's frame: the "find where the interrupted code will
//! return to" that the patch models need (patch the callers' preemption points, or redirect a
//! return address through [`Step::ra_slot`]).
//!
//! **Invariants.** The tables are built once, outside signal context, and only read afterwards:
//! [`step`] and [`function_of`] take no lock, make no system call and never allocate. [`step`]
//! reads memory only inside the stack bounds its caller passes, 8-byte aligned, so a corrupt
//! frame yields `None`, never a wild read; and every step moves strictly up the stack, so a
//! loop of steps always ends. Rows the reduction cannot express (a CFA or register rule that
//! is a DWARF expression: PLT entries, the host's signal trampoline; a return address that is
//! not saved on the stack) are left out, and an ip they cover has no row: [`step`] answers `None` there.

use gimli::{BaseAddresses, CfaRule, CieOrFde, EhFrame, EhFrameHdr, NativeEndian, RegisterRule, UnwindSection};
use std::sync::OnceLock;

pub use arch_api::{Frame, Step, UnwindRule};

/// One CFI row, reduced: its rule ([`UnwindRule`]: the CFA, the return address's and the
/// caller's `rbp`'s places, whether the FDE is a signal frame's) holds for ip in
/// `[start, end)`.
#[derive(Clone, Copy, Debug)]
struct Row {
    start: usize,
    end: usize,
    rule: UnwindRule,
}

struct Tables {
    /// Supported rows, sorted by `start`, non-overlapping.
    rows: Vec<Row>,
    rows_index: Index,
    /// FDE ranges, sorted by start.
    fdes: Vec<(usize, usize)>,
    fdes_index: Index,
}

/// Bytes of code per bucket of an [`Index`].
const BUCKET: usize = 256;
/// A gap this large between two ranges starts a new cluster (another object's text).
const GAP: usize = 1 << 20;

/// Constant-time look-up over sorted, non-overlapping ranges, so that the interrupt path does
/// not binary-search tables of tens of thousands of rows with cold caches. The ranges fall
/// into clusters (one per object's text); per cluster, one bucket per [`BUCKET`] bytes holds
/// the first range that ends after the bucket starts, and a look-up scans from there.
#[derive(Default)]
struct Index {
    /// (lo, hi, first bucket in `buckets`) per cluster.
    clusters: Vec<(usize, usize, usize)>,
    buckets: Vec<u32>,
}

impl Index {
    fn build(ranges: &[(usize, usize)]) -> Index {
        let mut ix = Index::default();
        let mut i = 0;
        while i < ranges.len() {
            let (lo, mut hi, mut j) = (ranges[i].0 / BUCKET * BUCKET, ranges[i].1, i + 1);
            while j < ranges.len() && ranges[j].0 < hi + GAP {
                hi = hi.max(ranges[j].1);
                j += 1;
            }
            ix.clusters.push((lo, hi, ix.buckets.len()));
            let mut r = i;
            for b in 0..(hi - lo).div_ceil(BUCKET) {
                while r < j && ranges[r].1 <= lo + b * BUCKET {
                    r += 1;
                }
                ix.buckets.push(r as u32);
            }
            i = j;
        }
        ix
    }

    /// The bucket a look-up of `x` starts from.
    fn bucket_of(&self, x: usize) -> Option<&u32> {
        let &(lo, _, first) = self.clusters.iter().find(|&&(lo, hi, _)| x >= lo && x < hi)?;
        self.buckets.get(first + (x - lo) / BUCKET)
    }

    /// The entry of `v` (the ranges this index was built from) covering `x`.
    fn find<T: Copy>(&self, x: usize, v: &[T], range: impl Fn(&T) -> (usize, usize)) -> Option<T> {
        let mut r = *self.bucket_of(x)? as usize;
        while let Some(e) = v.get(r).filter(|e| range(e).0 <= x) {
            if x < range(e).1 {
                return Some(*e);
            }
            r += 1;
        }
        None
    }
}

static TABLES: OnceLock<Result<Tables, String>> = OnceLock::new();

/// What the `dl_iterate_phdr` callback collects.
#[derive(Default)]
struct Collect {
    rows: Vec<Row>,
    fdes: Vec<(usize, usize)>,
    /// Objects seen; the first is the main program.
    objects: usize,
    /// The main program's parse error, if any (other objects' errors only drop their rows).
    main_err: Option<String>,
}

/// Reduces one gimli row; `None` if a rule needs more than `rsp`/`rbp` plus an offset.
fn reduce<T: gimli::ReaderOffset>(row: &gimli::UnwindTableRow<T>, ra: gimli::Register, signal: bool) -> Option<Row> {
    let (cfa_rbp, cfa_off) = match *row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } if register == gimli::X86_64::RSP => (false, offset),
        CfaRule::RegisterAndOffset { register, offset } if register == gimli::X86_64::RBP => (true, offset),
        _ => return None,
    };
    let Some(RegisterRule::Offset(ra_off)) = row.register(ra) else { return None };
    let rbp_off = match row.register(gimli::X86_64::RBP) {
        None | Some(RegisterRule::Undefined | RegisterRule::SameValue) => UnwindRule::RBP_SAME,
        Some(RegisterRule::Offset(n)) => i32::try_from(n).ok().filter(|&n| n != UnwindRule::RBP_SAME)?,
        Some(_) => return None,
    };
    let (start, end) = (row.start_address() as usize, row.end_address() as usize);
    let (cfa_off, ra_off) = (i32::try_from(cfa_off).ok()?, i32::try_from(ra_off).ok()?);
    Some(Row { start, end, rule: UnwindRule { cfa_off, ra_off, rbp_off, cfa_rbp, signal } })
}

/// Parses one object's `.eh_frame`, appending its rows and FDE ranges.
///
/// # Safety
///
/// `info` must be a `dl_phdr_info` the loader passed to a `dl_iterate_phdr` callback, for the
/// duration of that callback.
unsafe fn parse_object(info: &libc::dl_phdr_info, out: &mut Collect) -> Result<(), String> {
    // SAFETY: the loader's dlpi_phdr array has dlpi_phnum entries (the caller's contract).
    let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    let bias = info.dlpi_addr as usize;
    let Some(hdr) = phdrs.iter().find(|p| p.p_type == libc::PT_GNU_EH_FRAME) else { return Ok(()) };
    let hdr_addr = bias + hdr.p_vaddr as usize;
    // SAFETY: PT_GNU_EH_FRAME describes p_memsz bytes the loader mapped readable; mappings of
    // loaded objects stay for the process's lifetime (nothing here is ever dlclose'd).
    let hdr_bytes: &'static [u8] = unsafe { std::slice::from_raw_parts(hdr_addr as *const u8, hdr.p_memsz as usize) };
    let text = phdrs.iter().find(|p| p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_X != 0);
    let mut bases = BaseAddresses::default().set_eh_frame_hdr(hdr_addr as u64);
    if let Some(t) = text {
        bases = bases.set_text((bias + t.p_vaddr as usize) as u64);
    }
    let parsed = EhFrameHdr::new(hdr_bytes, NativeEndian).parse(&bases, 8).map_err(|e| format!("eh_frame_hdr: {e}"))?;
    let eh_addr = parsed.eh_frame_ptr().direct().map_err(|e| format!("eh_frame_ptr: {e}"))? as usize;
    // `.eh_frame` has no length of its own here: it runs to its zero terminator, which lies
    // inside the PT_LOAD segment holding it, so that segment's end bounds the slice.
    let seg_end = phdrs
        .iter()
        .filter(|p| p.p_type == libc::PT_LOAD)
        .map(|p| (bias + p.p_vaddr as usize, bias + (p.p_vaddr + p.p_memsz) as usize))
        .find(|&(lo, hi)| eh_addr >= lo && eh_addr < hi)
        .map(|(_, hi)| hi)
        .ok_or_else(|| format!("eh_frame at {eh_addr:#x} is in no PT_LOAD segment"))?;
    // SAFETY: [eh_addr, seg_end) lies inside a loaded PT_LOAD segment, mapped readable for the
    // process's lifetime (as above).
    let eh_bytes: &'static [u8] = unsafe { std::slice::from_raw_parts(eh_addr as *const u8, seg_end - eh_addr) };
    let mut eh = EhFrame::new(eh_bytes, NativeEndian);
    eh.set_address_size(8);
    let bases = bases.set_eh_frame(eh_addr as u64);
    let mut ctx = Box::new(gimli::UnwindContext::new());
    let mut entries = eh.entries(&bases);
    while let Some(entry) = entries.next().map_err(|e| format!("eh_frame entry: {e}"))? {
        let CieOrFde::Fde(partial) = entry else { continue };
        let fde = partial.parse(|s, b, o| s.cie_from_offset(b, o)).map_err(|e| format!("FDE: {e}"))?;
        let (ra, signal) = (fde.cie().return_address_register(), fde.is_signal_trampoline());
        let (lo, hi) = (fde.initial_address() as usize, fde.end_address() as usize);
        if lo < hi {
            out.fdes.push((lo, hi));
        }
        let mut table = fde.rows(&eh, &bases, &mut ctx).map_err(|e| format!("CFI program: {e}"))?;
        while let Some(row) = table.next_row().map_err(|e| format!("CFI row: {e}"))? {
            out.rows.extend(reduce(row, ra, signal).filter(|r| r.start < r.end));
        }
    }
    Ok(())
}

extern "C" fn collect(info: *mut libc::dl_phdr_info, _size: libc::size_t, data: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `data` is the &mut Collect passed to dl_iterate_phdr in `build`; the loader passes
    // a valid dl_phdr_info for the duration of this call, which is parse_object's contract.
    unsafe {
        let out = &mut *(data as *mut Collect);
        let (rows, fdes) = (out.rows.len(), out.fdes.len());
        if let Err(e) = parse_object(&*info, out) {
            if out.objects == 0 {
                out.main_err = Some(e);
            } else {
                // A foreign object with CFI we cannot read: drop all of it rather than keep part.
                out.rows.truncate(rows);
                out.fdes.truncate(fdes);
            }
        }
        out.objects += 1;
    }
    0 // continue with the next object
}

fn build() -> Result<Tables, String> {
    let mut c = Collect::default();
    // SAFETY: `collect` matches the callback signature and only uses `data` as &mut Collect.
    unsafe { libc::dl_iterate_phdr(Some(collect), &mut c as *mut Collect as *mut libc::c_void) };
    if let Some(e) = c.main_err {
        return Err(format!("main program CFI: {e}"));
    }
    if c.rows.is_empty() {
        return Err("no usable CFI rows in any loaded object".into());
    }
    c.rows.sort_unstable_by_key(|r| r.start);
    // Overlapping rows (only from overlapping FDEs, a toolchain bug) would make the binary
    // search ambiguous: keep the first of any overlapping pair.
    c.rows.dedup_by(|next, prev| next.start < prev.end);
    c.fdes.sort_unstable();
    c.fdes.dedup_by(|next, prev| next.0 < prev.1);
    let spans: Vec<(usize, usize)> = c.rows.iter().map(|r| (r.start, r.end)).collect();
    let (rows_index, fdes_index) = (Index::build(&spans), Index::build(&c.fdes));
    Ok(Tables { rows: c.rows, rows_index, fdes: c.fdes, fdes_index })
}

/// Parses the CFI of every object loaded now (main program, libc, ld.so, the vDSO, ...) into a
/// flat, sorted row table. Idempotent. Call outside signal context (it allocates); objects
/// loaded later (`dlopen`) are not covered. Fails if the main program's CFI cannot be read; a
/// foreign object whose CFI cannot be read is left out whole (its ips then have no row).
pub fn prepare() -> Result<(), String> {
    TABLES.get_or_init(build).as_ref().map(|_| ()).map_err(Clone::clone)?;
    crate::entry::note_return_path(); // now the tables know trampoline_body's extent
    Ok(())
}

fn tables() -> Option<&'static Tables> {
    TABLES.get().and_then(|t| t.as_ref().ok())
}

/// The entry of sorted, non-overlapping `v` covering `x`, by binary search (the reference the
/// [`Index`] test compares with).
#[cfg(test)]
fn covering<T: Copy>(v: &[T], x: usize, range: impl Fn(&T) -> (usize, usize)) -> Option<T> {
    let i = v.partition_point(|e| range(e).0 <= x).checked_sub(1)?;
    let (lo, hi) = range(&v[i]);
    (x >= lo && x < hi).then_some(v[i])
}

/// Reads the stack word at `addr` if it lies, aligned, inside `[lo, hi)`.
#[inline]
fn read_word(addr: usize, (lo, hi): (usize, usize)) -> Option<usize> {
    if addr & 7 != 0 || addr < lo || addr.checked_add(8)? > hi {
        return None;
    }
    // SAFETY: [addr, addr + 8) is aligned and inside the stack bounds the caller of `step`
    // vouches for (the task's mapped stack).
    Some(unsafe { (addr as *const usize).read_volatile() })
}

/// One frame up from `f`, with `stack` = the task's stack bounds `[lo, hi)`.
///
/// Looks up the row covering `f.ip` (`f.ip - 1` if `f.is_return_address`) and takes its
/// rule's step ([`UnwindRule::step`]: the CFA, the return address and the caller's `rbp` read
/// with `read_word`; `caller.sp = CFA`). `None` if [`prepare`] has not succeeded, no
/// supported row covers the ip, or the rule's step ends the walk. No allocation, no locks, no
/// system calls: callable from a signal handler.
pub fn step(f: &Frame, stack: (usize, usize)) -> Option<Step> {
    let pc = if f.is_return_address { f.ip.checked_sub(1)? } else { f.ip };
    let t = tables()?;
    let row = t.rows_index.find(pc, &t.rows, |r| (r.start, r.end))?;
    row.rule.step(f, |a| read_word(a, stack))
}

/// Walks up from `from` with [`step`] and writes each frame's ip into `out` (`from.ip` first);
/// returns how many it wrote. Stops at the outermost frame, a frame [`step`] cannot leave, or
/// when `out` is full. Signal-safe, as [`step`].
pub fn backtrace(from: Frame, stack: (usize, usize), out: &mut [usize]) -> usize {
    let mut frame = from;
    let mut n = 0;
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

/// Prefetches the index entry [`step`] reads first for `ip` (its cluster list is a few
/// entries, read here): the row it names is then one dependent miss, not two. Signal-safe.
pub fn prefetch_for(ip: usize) {
    let Some(t) = tables() else { return };
    if let Some(b) = t.rows_index.bucket_of(ip) {
        crate::cpu::prefetch(b as *const u32 as usize);
    }
}

/// Prefetches the row [`step`] reads for `ip`, from the index entry (which
/// [`prefetch_for`] brought in). Signal-safe.
pub fn prefetch_row_for(ip: usize) {
    let Some(t) = tables() else { return };
    if let Some(row) = t.rows_index.bucket_of(ip).and_then(|&r| t.rows.get(r as usize)) {
        crate::cpu::prefetch(row as *const Row as usize);
    }
}

/// The start and end of the function (FDE) containing `ip`, if any. Signal-safe after
/// [`prepare`]. For a return address, ask about `ip - 1`: the call may be a function's last
/// instruction.
pub fn function_of(ip: usize) -> Option<(usize, usize)> {
    let t = tables()?;
    t.fdes_index.find(ip, &t.fdes, |&r| r)
}

/// Every FDE's `(start, end)` inside the main program's text, sorted and non-overlapping (for
/// building tables at boot). Empty if [`prepare`] has not succeeded.
pub fn functions_in_text() -> Vec<(usize, usize)> {
    crate::text::init();
    tables().map_or_else(Vec::new, |t| t.fdes.iter().copied().filter(|&(lo, _)| crate::text::contains(lo)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_answers_like_a_binary_search() {
        let mut ranges = Vec::new();
        let mut x = 0x1000usize;
        for i in 0..3000usize {
            let len = 1 + (i * 7919) % 700;
            ranges.push((x, x + len));
            x += len + (i % 3) * 16 + if i % 1000 == 999 { 1 << 24 } else { 0 };
        }
        let ix = Index::build(&ranges);
        assert_eq!(ix.clusters.len(), 3, "three far-apart groups");
        for probe in (0..x + 64).step_by(5).chain([0, usize::MAX, 0xfff]) {
            assert_eq!(ix.find(probe, &ranges, |&r| r), covering(&ranges, probe, |&r| r), "{probe:#x}");
        }
    }
}
