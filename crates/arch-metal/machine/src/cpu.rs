//! The CPU's registers and instructions the rest of the crate needs: port I/O, CPUID, the
//! control registers, XCR0, MSRs, the TSC; and [`enable_vector_state`], which turns on XSAVE
//! and AVX (AVX-512 too) where CPUID offers them.
//!
//! **Mechanism.** Each instruction is one `asm!` with its operands named; reads are safe
//! functions (ring 0 may read any of these), writes are `unsafe fn`s whose callers keep the
//! contract each states. CPUID saves `rbx` itself (LLVM reserves it).
//!
//! **Invariant.** XCR0 only ever holds a combination CPUID reports as supported, with x87
//! and SSE always set (the architectural rule), and AVX-512's three components all or none.

use core::arch::asm;

/// Writes a byte to an I/O port.
///
/// # Safety
/// The port must be one whose write has no effect on memory safety (a UART register, the
/// debug-exit device).
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: an I/O write; the caller vouches for the port.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) }
}

/// Writes a 32-bit word to an I/O port.
///
/// # Safety
/// As [`outb`].
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: an I/O write; the caller vouches for the port.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags)) }
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// The port's read must have no side effect on memory safety.
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: an I/O read; the caller vouches for the port.
    unsafe { asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags)) }
    value
}

/// The four registers CPUID returns.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpuid {
    /// eax
    pub eax: u32,
    /// ebx
    pub ebx: u32,
    /// ecx
    pub ecx: u32,
    /// edx
    pub edx: u32,
}

/// CPUID leaf `leaf`, subleaf `sub`.
pub fn cpuid(leaf: u32, sub: u32) -> Cpuid {
    let (eax, ecx, edx): (u32, u32, u32);
    let ebx: u64;
    // SAFETY: CPUID only writes the four registers named; rbx, which LLVM reserves, is saved
    // in a scratch register around it.
    unsafe {
        asm!(
            "mov {save:r}, rbx",   // keep rbx (LLVM's)
            "cpuid",               // eax, ebx, ecx, edx = the leaf
            "xchg {save:r}, rbx",  // save = the leaf's ebx, rbx = LLVM's again
            save = out(reg) ebx,
            inout("eax") leaf => eax,
            inout("ecx") sub => ecx,
            out("edx") edx,
            options(nomem, nostack, preserves_flags),
        )
    }
    Cpuid { eax, ebx: ebx as u32, ecx, edx }
}

/// The 12-byte vendor string (leaf 0).
pub fn vendor() -> [u8; 12] {
    let r = cpuid(0, 0);
    let mut v = [0u8; 12];
    v[0..4].copy_from_slice(&r.ebx.to_le_bytes());
    v[4..8].copy_from_slice(&r.edx.to_le_bytes());
    v[8..12].copy_from_slice(&r.ecx.to_le_bytes());
    v
}

macro_rules! read_cr {
    ($name:ident, $reg:literal) => {
        #[doc = concat!("Reads ", $reg, ".")]
        pub fn $name() -> u64 {
            let v: u64;
            // SAFETY: reading a control register in ring 0 has no side effect.
            unsafe { asm!(concat!("mov {}, ", $reg), out(reg) v, options(nomem, nostack, preserves_flags)) }
            v
        }
    };
}
read_cr!(cr0, "cr0");
read_cr!(cr2, "cr2");
read_cr!(cr3, "cr3");
read_cr!(cr4, "cr4");

/// Writes CR0.
///
/// # Safety
/// The new value must keep protected mode, paging and long mode on, and whatever the
/// running code relies on (e.g. `EM` off while SSE code runs).
pub unsafe fn write_cr0(v: u64) {
    // SAFETY: the caller's contract.
    unsafe { asm!("mov cr0, {}", in(reg) v, options(nostack, preserves_flags)) }
}

/// Writes CR3: switches page tables (and flushes the non-global TLB entries).
///
/// # Safety
/// `v` must be the physical address of a PML4 mapping the running code, its stack and
/// everything reachable from it at the same addresses with the rights it uses.
pub unsafe fn write_cr3(v: u64) {
    // SAFETY: the caller's contract.
    unsafe { asm!("mov cr3, {}", in(reg) v, options(nostack, preserves_flags)) }
}

/// Writes CR4.
///
/// # Safety
/// As [`write_cr0`]: PAE stays on, and the features the running code uses stay enabled.
pub unsafe fn write_cr4(v: u64) {
    // SAFETY: the caller's contract.
    unsafe { asm!("mov cr4, {}", in(reg) v, options(nostack, preserves_flags)) }
}

/// Reads an MSR.
///
/// # Safety
/// The MSR must exist (reading one that does not is a #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller's contract.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes model-specific register `msr`.
///
/// # Safety
/// `msr` must exist and `value` must be valid for it and keep the machine's invariants.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller's contract.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    }
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC reads a counter (CR4.TSD is 0: it is allowed in every ring).
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// XCR0, the enabled XSAVE components (0 while `CR4.OSXSAVE` is off).
pub fn xcr0() -> u64 {
    if cr4() & CR4_OSXSAVE == 0 {
        return 0;
    }
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV with ecx = 0 reads XCR0; CR4.OSXSAVE is on (checked), so it is allowed.
    unsafe { asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// CR0.WP: supervisor writes honour read-only pages.
pub const CR0_WP: u64 = 1 << 16;
/// CR4.OSXSAVE: XSAVE and XGETBV/XSETBV enabled.
pub const CR4_OSXSAVE: u64 = 1 << 18;
/// IA32_EFER.
pub const MSR_EFER: u32 = 0xC000_0080;
/// EFER.NXE: the NX bit of page entries is honoured.
pub const EFER_NXE: u64 = 1 << 11;

/// What [`enable_vector_state`] found and enabled.
#[derive(Clone, Copy, Debug)]
pub struct VectorState {
    /// XSAVE is on (`CR4.OSXSAVE`).
    pub xsave: bool,
    /// The XCR0 written (0 without XSAVE).
    pub xcr0: u64,
    /// The bytes an XSAVE of every enabled component takes (512 for FXSAVE without XSAVE).
    pub xsave_size: u32,
}

/// Turns on XSAVE and every AVX component CPUID offers; SSE itself was enabled by the
/// 32-bit entry (`crate::boot`).
///
/// # Safety
/// Called once on the boot CPU, before any code that uses AVX (none of the image's does:
/// the host target's baseline is SSE2).
pub unsafe fn enable_vector_state() -> VectorState {
    let leaf1 = cpuid(1, 0);
    let has_xsave = leaf1.ecx & (1 << 26) != 0;
    if !has_xsave {
        return VectorState { xsave: false, xcr0: 0, xsave_size: 512 };
    }
    // SAFETY: setting OSXSAVE only enables XSAVE/XGETBV/XSETBV, which CPUID offers.
    unsafe { write_cr4(cr4() | CR4_OSXSAVE) };
    let supported = {
        let d = cpuid(0xD, 0);
        (u64::from(d.edx) << 32) | u64::from(d.eax)
    };
    let mut xcr0 = 0b11; // x87 | SSE: required
    let has_avx = leaf1.ecx & (1 << 28) != 0;
    if has_avx && supported & 0b100 != 0 {
        xcr0 |= 0b100; // AVX (the upper halves of ymm)
        if supported & 0xE0 == 0xE0 {
            xcr0 |= 0xE0; // AVX-512: opmask, ZMM_Hi256, Hi16_ZMM (all or none)
        }
    }
    // SAFETY: XSETBV with ecx = 0 writes XCR0; the value holds x87 and SSE, only components
    // CPUID reports, and AVX-512's three together with AVX (the architectural rules).
    unsafe {
        asm!("xsetbv", in("ecx") 0u32, in("eax") xcr0 as u32, in("edx") (xcr0 >> 32) as u32, options(nomem, nostack, preserves_flags))
    };
    // CPUID.(0xD,0).EBX: the XSAVE area's size for the components now enabled in XCR0.
    let size = cpuid(0xD, 0).ebx;
    VectorState { xsave: true, xcr0, xsave_size: size }
}

/// Halts forever with interrupts off.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: cli; hlt stops this CPU until an NMI, after which it halts again.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}
