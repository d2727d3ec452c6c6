//! The ACPI tables the machine reads: the MADT (processors, IOAPICs, interrupt source
//! overrides) and the HPET table.
//!
//! **Mechanism.** The PVH start info gives the RSDP's address (QEMU's loader fills
//! `rsdp_paddr`; if it is 0 the BIOS area 0xE0000-0xFFFFF is searched for `"RSD PTR "`); the
//! RSDP leads to the XSDT (revision 2, 8-byte entries) or the RSDT (4-byte entries), which
//! lists the tables by physical address. [`find_table`] returns the first table with a given
//! signature; [`madt_entries`] walks the MADT's variable-length entries from byte 44 on
//! (type, length, body), which `crate::smp` (types 0 and 9: the CPUs) and `crate::ioapic`
//! (types 1 and 2: IOAPICs and interrupt source overrides) read.
//!
//! **Invariant.** Every table read lies in the identity-mapped first 1 GiB (checked before
//! it is read), and every MADT entry read lies inside the MADT's length.

use alloc::vec::Vec;

/// The identity map's end: ACPI tables beyond it are refused.
const MAPPED_END: u64 = 1 << 30;

/// Reads a little-endian `u32` at physical `at` (identity-mapped).
pub fn rd32(at: u64) -> u32 {
    // SAFETY: callers pass addresses inside ACPI tables below 1 GiB (checked), identity-mapped.
    unsafe { core::ptr::read_unaligned(at as *const u32) }
}

/// Reads a little-endian `u64` at physical `at` (identity-mapped).
pub fn rd64(at: u64) -> u64 {
    u64::from(rd32(at)) | u64::from(rd32(at + 4)) << 32
}

/// Reads the byte at physical `at` (identity-mapped).
pub fn rd8(at: u64) -> u8 {
    // SAFETY: as in `rd32`.
    unsafe { core::ptr::read(at as *const u8) }
}

/// The RSDP: `paddr` if non-zero, else the one found in the BIOS area.
fn find_rsdp(paddr: u64) -> Option<u64> {
    if paddr != 0 {
        return Some(paddr);
    }
    (0xE0000..0x100000u64)
        .step_by(16)
        .find(|&a| rd32(a) == u32::from_le_bytes(*b"RSD ") && rd32(a + 4) == u32::from_le_bytes(*b"PTR "))
}

fn below(a: u64) -> Result<u64, &'static str> {
    if a != 0 && a < MAPPED_END {
        Ok(a)
    } else {
        Err("an ACPI table outside the first 1 GiB")
    }
}

/// The physical address of the first table with signature `sig` the RSDT or XSDT lists
/// (`None`: there is none).
pub fn find_table(rsdp_paddr: u64, sig: &[u8; 4]) -> Result<Option<u64>, &'static str> {
    let rsdp = below(find_rsdp(rsdp_paddr).ok_or("no ACPI RSDP")?)?;
    let (sdt, width) = if rd8(rsdp + 15) >= 2 {
        (rd64(rsdp + 24), 8) // a revision-2 RSDP: the XSDT
    } else {
        (u64::from(rd32(rsdp + 16)), 4)
    };
    let sdt = below(sdt)?;
    let len = u64::from(rd32(sdt + 4));
    let want = u32::from_le_bytes(*sig);
    Ok((sdt + 36..sdt + len)
        .step_by(width)
        .map(|at| if width == 8 { rd64(at) } else { u64::from(rd32(at)) })
        .find(|&t| below(t).is_ok() && rd32(t) == want))
}

/// One MADT entry: its type and the physical address of its first byte (the type byte).
#[derive(Clone, Copy, Debug)]
pub struct MadtEntry {
    /// The entry's type (0: local APIC, 1: IOAPIC, 2: interrupt source override, 9: x2APIC).
    pub kind: u8,
    /// Its length in bytes.
    pub len: u8,
    /// Where it starts.
    pub at: u64,
}

/// The MADT's entries.
pub fn madt_entries(rsdp_paddr: u64) -> Result<Vec<MadtEntry>, &'static str> {
    let madt = find_table(rsdp_paddr, b"APIC")?.ok_or("no MADT in the ACPI tables")?;
    let end = madt + u64::from(rd32(madt + 4));
    let mut entries = Vec::new();
    let mut at = madt + 44;
    while at + 2 <= end {
        let (kind, len) = (rd8(at), rd8(at + 1));
        if len < 2 || at + u64::from(len) > end {
            return Err("a MADT entry of length < 2 or past the table's end");
        }
        entries.push(MadtEntry { kind, len, at });
        at += u64::from(len);
    }
    Ok(entries)
}
