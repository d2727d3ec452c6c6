//! Kernel text: the address ranges of the program's own machine code.
//!
//! **Mechanism.** At install time `dl_iterate_phdr` lists the executable `PT_LOAD` segments of
//! the main program (the first object it reports). Code there is atomkernel's own ("kernel
//! text"); anything else (libc, the dynamic loader, the vDSO) is foreign code, where an
//! interrupt must never preempt: the host's locks and reentrancy rules apply there.
//!
//! **Invariant.** The ranges are written once, before any CPU thread exists, and only read
//! afterwards (from signal handlers too): no lock, no allocation on the look-up.

use std::sync::OnceLock;

static RANGES: OnceLock<Vec<(usize, usize)>> = OnceLock::new();
static LOAD_BIAS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn collect(info: *mut libc::dl_phdr_info, _size: libc::size_t, data: *mut libc::c_void) -> libc::c_int {
    // SAFETY: the loader passes a valid dl_phdr_info whose dlpi_phdr array has dlpi_phnum
    // entries; `data` is the &mut Vec passed to dl_iterate_phdr below.
    unsafe {
        let info = &*info;
        let out = &mut *(data as *mut Vec<(usize, usize)>);
        let phdrs = std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
        LOAD_BIAS.store(info.dlpi_addr as usize, std::sync::atomic::Ordering::Relaxed);
        for ph in phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_X != 0) {
            let lo = info.dlpi_addr as usize + ph.p_vaddr as usize;
            out.push((lo, lo + ph.p_memsz as usize));
        }
    }
    1 // stop after the first object: the main program
}

/// Finds the program's text ranges (idempotent).
pub fn init() {
    RANGES.get_or_init(|| {
        let mut v: Vec<(usize, usize)> = Vec::new();
        // SAFETY: `collect` matches the callback signature and only uses `data` as &mut Vec.
        unsafe { libc::dl_iterate_phdr(Some(collect), &mut v as *mut _ as *mut libc::c_void) };
        v
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
