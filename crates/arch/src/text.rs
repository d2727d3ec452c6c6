//! Kernel text: the address ranges of the program's own machine code.
//!
//! **Mechanism.** At install time `dl_iterate_phdr` lists the executable `PT_LOAD` segments of
//! the main program (the first object it reports). Code there is atomkernel's own ("kernel
//! text"); anything else (libc, the dynamic loader, the vDSO) is foreign code, where an
//! interrupt must never preempt: the host's locks and reentrancy rules apply there.
//!
//! [`bytes`] and [`read_only`] hand out the program's own code and read-only data as slices,
//! for the machine-code analysis (`codeflow`) that builds the exact point table.
//!
//! **Invariant.** The ranges are written once, before any CPU thread exists, and only read
//! afterwards (from signal handlers too): no lock, no allocation on the look-up.

use std::sync::OnceLock;

static RANGES: OnceLock<Vec<(usize, usize)>> = OnceLock::new();
/// The main program's loaded segments that are neither writable nor executable (`.rodata`),
/// and its RELRO segment (the GOT, read-only after relocation).
static READ_ONLY: OnceLock<Vec<(usize, usize)>> = OnceLock::new();

/// What `collect` gathers: executable and read-only segments.
#[derive(Default)]
struct Segments {
    text: Vec<(usize, usize)>,
    read_only: Vec<(usize, usize)>,
}
static LOAD_BIAS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn collect(info: *mut libc::dl_phdr_info, _size: libc::size_t, data: *mut libc::c_void) -> libc::c_int {
    // SAFETY: the loader passes a valid dl_phdr_info whose dlpi_phdr array has dlpi_phnum
    // entries; `data` is the &mut Vec passed to dl_iterate_phdr below.
    unsafe {
        let info = &*info;
        let out = &mut *(data as *mut Segments);
        let phdrs = std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
        LOAD_BIAS.store(info.dlpi_addr as usize, std::sync::atomic::Ordering::Relaxed);
        for ph in phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD) {
            let lo = info.dlpi_addr as usize + ph.p_vaddr as usize;
            let range = (lo, lo + ph.p_memsz as usize);
            if ph.p_flags & libc::PF_X != 0 {
                out.text.push(range);
            } else if ph.p_flags & libc::PF_W == 0 {
                out.read_only.push(range);
            }
        }
        // The loader makes RELRO (the GOT among it) read-only once it has relocated it.
        for ph in phdrs.iter().filter(|p| p.p_type == libc::PT_GNU_RELRO) {
            let lo = info.dlpi_addr as usize + ph.p_vaddr as usize;
            out.read_only.push((lo, lo + ph.p_memsz as usize));
        }
    }
    1 // stop after the first object: the main program
}

/// Finds the program's text ranges (idempotent).
pub fn init() {
    RANGES.get_or_init(|| {
        let mut seg = Segments::default();
        // SAFETY: `collect` matches the callback signature and only uses `data` as &mut Segments.
        unsafe { libc::dl_iterate_phdr(Some(collect), &mut seg as *mut _ as *mut libc::c_void) };
        let _ = READ_ONLY.set(seg.read_only);
        seg.text
    });
}

/// True if `ip` is in the program's own code.
#[inline]
pub fn contains(ip: usize) -> bool {
    RANGES.get().is_some_and(|r| r.iter().any(|&(lo, hi)| ip >= lo && ip < hi))
}

/// The program's executable ranges.
pub fn ranges() -> &'static [(usize, usize)] {
    init();
    RANGES.get().map(|v| v.as_slice()).unwrap_or(&[])
}

/// The main program's load bias: runtime address = ELF address + bias (PIE).
pub fn load_bias() -> usize {
    init();
    LOAD_BIAS.load(std::sync::atomic::Ordering::Relaxed)
}

/// The program's code bytes `[start, end)`, if the range lies inside one executable segment.
pub fn bytes(start: usize, end: usize) -> Option<&'static [u8]> {
    within(ranges(), start, end)
}

/// `len` bytes of the program's read-only data (or code) at `addr`: jump tables, GOT slots.
pub fn read_only(addr: usize, len: usize) -> Option<&'static [u8]> {
    init();
    let end = addr.checked_add(len)?;
    within(READ_ONLY.get().map_or(&[][..], |v| v.as_slice()), addr, end).or_else(|| bytes(addr, end))
}

fn within(segments: &[(usize, usize)], start: usize, end: usize) -> Option<&'static [u8]> {
    segments.iter().find(|&&(lo, hi)| start >= lo && end <= hi && start <= end)?;
    // SAFETY: `[start, end)` lies inside a segment the loader mapped readable for the whole
    // life of the process (the main program is never unloaded). No byte of it is written
    // through this mapping: code changes only at preemption-point sites, one byte at a time,
    // through `patch`'s second mapping, and the readers (`codeflow`) never interpret a site's
    // bytes (a site is known by its address), so a racing patch cannot change what they read.
    Some(unsafe { std::slice::from_raw_parts(start as *const u8, end - start) })
}
