//! The final page tables: the kernel image mapped with W^X, a writable alias of its text
//! for patching, and the rest of the first 1 GiB identity-mapped read-write, never executable.
//!
//! **Mechanism.** [`init`] builds 4-level tables (4 KiB pages) from a pool of page-aligned
//! tables in `.bss`, with physical = virtual for everything but the alias:
//!
//! ```text
//!   virtual                          physical          rights  what
//!   0 .. 4 KiB                       -                 none    null page (unmapped)
//!   4 KiB .. __text_start            same              rw- NX  low memory (loader data)
//!   __text_start .. __text_end       same              r-x     kernel text
//!   __rodata_start .. __rodata_end   same              r-- NX  rodata, PVH note, eh_frame
//!   __data_start .. __data_end       same              rw- NX  data, bss (but the guard)
//!   metal_boot_stack_bottom + 4 KiB  -                 none    boot stack guard page
//!   below each IST stack, 4 KiB      -                 none    IST guard pages (4)
//!   __image_end .. 2 MiB boundary    same              rw- NX  free RAM (4 KiB pages)
//!   next 2 MiB boundary .. 1 GiB     same              rw- NX  RAM, heap (2 MiB pages)
//!   TEXT_ALIAS .. + text size        __text_start ..   rw- NX  the text's patching alias
//!   0xFEE0_0000 (4 KiB)              same              rw- NX  local APIC (uncached)
//! ```
//!
//! then loads CR3 and sets `CR0.WP`, so that ring-0 writes honour read-only pages too.
//! Intermediate entries are present and writable without NX; each leaf carries the rights.
//! [`map_mmio`] later adds the device pages the ACPI tables name (the HPET's and the
//! IOAPIC's, for `crate::hpet`), uncached, rw- NX, from the same pool.
//! [`check_wx`] walks the loaded tables from CR3 and counts the leaves.
//!
//! **Invariant (W^X).** No leaf entry is both writable and executable: the text is
//! executable and read-only, and written only through its alias, which is not executable.
//! `EFER.NXE` must be on (the 32-bit entry sets it when CPUID offers NX; [`init`] refuses to
//! go on without it).

use crate::cpu;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Where the text's writable alias starts (PML4 entry 1: 512 GiB).
pub const TEXT_ALIAS: u64 = 0x0000_0080_0000_0000;

const PAGE: u64 = 4096;
const LARGE: u64 = 2 << 20;
const IDENTITY_END: u64 = 1 << 30;

/// Present.
const P: u64 = 1;
/// Writable.
const W: u64 = 1 << 1;
/// Write-through (with [`PCD`]: uncached, for device registers).
const PWT: u64 = 1 << 3;
/// Cache disabled.
const PCD: u64 = 1 << 4;
/// A 2 MiB page (in a PD entry).
const PS: u64 = 1 << 7;
/// Not executable.
const NX: u64 = 1 << 63;
/// The physical-address bits of an entry.
const ADDR: u64 = 0x000F_FFFF_FFFF_F000;

extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __data_end: u8;
    static __image_end: u8;
    static metal_boot_stack_bottom: u8;
}

/// The image's regions, from the linker script's symbols.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// `[start, end)` of the text.
    pub text: (u64, u64),
    /// `[start, end)` of rodata.
    pub rodata: (u64, u64),
    /// `[start, end)` of data and bss.
    pub data: (u64, u64),
    /// The end of the image.
    pub image_end: u64,
    /// The boot stack's unmapped guard page.
    pub stack_guard: u64,
    /// The IST stacks' unmapped guard pages.
    pub ist_guards: [u64; 4],
}

impl Layout {
    /// Every guard page: the boot stack's, then the IST stacks'.
    pub fn guards(&self) -> [u64; 5] {
        let g = self.ist_guards;
        [self.stack_guard, g[0], g[1], g[2], g[3]]
    }
}

/// The image's regions.
pub fn layout() -> Layout {
    Layout {
        text: ((&raw const __text_start) as u64, (&raw const __text_end) as u64),
        rodata: ((&raw const __rodata_start) as u64, (&raw const __rodata_end) as u64),
        data: ((&raw const __data_start) as u64, (&raw const __data_end) as u64),
        image_end: (&raw const __image_end) as u64,
        stack_guard: (&raw const metal_boot_stack_bottom) as u64,
        ist_guards: crate::gdt::ist_guards(),
    }
}

type Table = [u64; 512];

#[repr(C, align(4096))]
struct Pool([Table; POOL_TABLES]);

const POOL_TABLES: usize = 24;

static mut POOL: Pool = Pool([[0; 512]; POOL_TABLES]);
/// The pool's tables handed out so far (by [`init`], then by [`map_mmio`]).
static POOL_USED: AtomicUsize = AtomicUsize::new(0);

/// Hands out the pool's tables, zeroed (the pool is in `.bss`).
struct Builder {
    used: usize,
}

impl Builder {
    fn alloc(&mut self) -> Result<*mut Table, &'static str> {
        if self.used == POOL_TABLES {
            return Err("the page-table pool is exhausted");
        }
        // SAFETY: each index is handed out once, and only `init` (once, on the boot CPU)
        // builds tables: the pointer is the only access to that table until CR3 loads it.
        let t = unsafe { (&raw mut POOL.0[self.used]).cast::<Table>() };
        self.used += 1;
        Ok(t)
    }

    /// The table entry `index` of `table` points at, made if absent.
    fn next(&mut self, table: *mut Table, index: usize) -> Result<*mut Table, &'static str> {
        // SAFETY: `table` is one of the pool's tables (identity-mapped, ours alone).
        let e = unsafe { (*table)[index] };
        if e & P != 0 {
            if e & PS != 0 {
                return Err("a 4 KiB mapping inside a 2 MiB page");
            }
            return Ok((e & ADDR) as *mut Table);
        }
        let t = self.alloc()?;
        // SAFETY: as above.
        unsafe { (*table)[index] = t as u64 | P | W };
        Ok(t)
    }

    fn map_4k(&mut self, pml4: *mut Table, virt: u64, phys: u64, flags: u64) -> Result<(), &'static str> {
        let pdpt = self.next(pml4, idx(virt, 39))?;
        let pd = self.next(pdpt, idx(virt, 30))?;
        let pt = self.next(pd, idx(virt, 21))?;
        // SAFETY: `pt` is one of the pool's tables.
        unsafe { (*pt)[idx(virt, 12)] = phys | flags };
        Ok(())
    }

    fn map_2m(&mut self, pml4: *mut Table, virt: u64, phys: u64, flags: u64) -> Result<(), &'static str> {
        let pdpt = self.next(pml4, idx(virt, 39))?;
        let pd = self.next(pdpt, idx(virt, 30))?;
        // SAFETY: `pd` is one of the pool's tables.
        unsafe { (*pd)[idx(virt, 21)] = phys | flags | PS };
        Ok(())
    }
}

fn idx(virt: u64, shift: u32) -> usize {
    ((virt >> shift) & 511) as usize
}

/// The rights of the identity-mapped 4 KiB page at `a` (`None`: unmapped).
fn rights(l: &Layout, a: u64) -> Option<u64> {
    let within = |(s, e): (u64, u64)| (s..e).contains(&a);
    if a == 0 || l.guards().contains(&a) {
        None
    } else if within(l.text) {
        Some(P)
    } else if within(l.rodata) {
        Some(P | NX)
    } else {
        Some(P | W | NX)
    }
}

/// What [`init`] mapped.
#[derive(Clone, Copy, Debug)]
pub struct Mapped {
    /// The image's layout.
    pub layout: Layout,
    /// The end of the identity map's 4 KiB part.
    pub small_end: u64,
    /// The end of the identity map.
    pub identity_end: u64,
    /// Page tables used.
    pub tables: usize,
}

/// Builds and loads the final tables and sets `CR0.WP` (see the module's description).
///
/// # Safety
/// Called once, on the boot CPU, with interrupts off, while the boot tables are loaded and
/// the code runs in the image and on the boot stack above its guard page.
pub unsafe fn init() -> Result<Mapped, &'static str> {
    // SAFETY: IA32_EFER exists on every long-mode CPU.
    if unsafe { cpu::rdmsr(cpu::MSR_EFER) } & cpu::EFER_NXE == 0 {
        return Err("EFER.NXE is off (the CPU offers no NX): W^X cannot hold");
    }
    let l = layout();
    let mut b = Builder { used: 0 };
    let pml4 = b.alloc()?;
    let small_end = l.image_end.next_multiple_of(LARGE);
    let mut a = 0;
    while a < small_end {
        if let Some(flags) = rights(&l, a) {
            b.map_4k(pml4, a, a, flags)?;
        }
        a += PAGE;
    }
    while a < IDENTITY_END {
        b.map_2m(pml4, a, a, P | W | NX)?;
        a += LARGE;
    }
    // The local APIC's registers (xAPIC, MMIO): uncached, not executable (`crate::apic`).
    b.map_4k(pml4, crate::apic::XAPIC_BASE, crate::apic::XAPIC_BASE, P | W | NX | PWT | PCD)?;
    let mut t = l.text.0;
    while t < l.text.1 {
        b.map_4k(pml4, TEXT_ALIAS + (t - l.text.0), t, P | W | NX)?;
        t += PAGE;
    }
    // SAFETY: the new tables map the image, its stacks and the low memory at the same
    // addresses as the boot tables, with the rights the code uses (text executed, data
    // written); the boot stack's guard page is below the frames in use (64 KiB stack, the
    // boot path uses a few KiB).
    unsafe { cpu::write_cr3(pml4 as u64) };
    // SAFETY: WP only makes ring-0 writes honour read-only pages; nothing writes the text or
    // rodata but through the alias.
    unsafe { cpu::write_cr0(cpu::cr0() | cpu::CR0_WP) };
    POOL_USED.store(b.used, Ordering::Relaxed);
    Ok(Mapped { layout: l, small_end, identity_end: IDENTITY_END, tables: b.used })
}

/// Maps the 4 KiB page of device registers at physical `phys` at the same virtual address,
/// uncached, writable and not executable (an HPET's or an IOAPIC's, found in the ACPI tables
/// after [`init`]), and flushes its TLB entry. A page inside the identity map is refused (it
/// is RAM there, mapped cacheable).
///
/// # Safety
/// Once per page, on the boot CPU, with interrupts off, before the APs start (the pool's
/// tables are handed out by one CPU at a time); `phys` is a device's register page.
pub unsafe fn map_mmio(phys: u64) -> Result<(), &'static str> {
    if phys < IDENTITY_END || !phys.is_multiple_of(PAGE) {
        return Err("device registers inside the identity map or not page-aligned");
    }
    let mut b = Builder { used: POOL_USED.load(Ordering::Relaxed) };
    b.map_4k((cpu::cr3() & ADDR) as *mut Table, phys, phys, P | W | NX | PWT | PCD)?;
    POOL_USED.store(b.used, Ordering::Relaxed);
    // SAFETY: invlpg only drops a TLB entry (there was no mapping: a negative one at most).
    unsafe { core::arch::asm!("invlpg [{}]", in(reg) phys, options(nostack, preserves_flags)) };
    Ok(())
}

/// What [`check_wx`] found in the loaded tables.
#[derive(Clone, Copy, Debug, Default)]
pub struct WxReport {
    /// Leaf entries (4 KiB and 2 MiB pages).
    pub leaves: usize,
    /// Leaves that are executable (NX clear at every level).
    pub executable: usize,
    /// Leaves that are writable (W set at every level).
    pub writable: usize,
    /// Leaves both writable and executable: W^X holds when 0.
    pub both: usize,
    /// The first such leaf's virtual address.
    pub first_both: Option<u64>,
}

/// Walks the tables CR3 points at and counts the leaves by their effective rights.
pub fn check_wx() -> WxReport {
    let mut r = WxReport::default();
    walk((cpu::cr3() & ADDR) as *const Table, 4, 0, W, 0, &mut r);
    r
}

/// Walks `table` (level 4 = PML4 .. 1 = PT) mapping from `base`; `w` and `nx` are the
/// rights accumulated above (W is ANDed, NX ORed down the levels).
fn walk(table: *const Table, level: u32, base: u64, w: u64, nx: u64, r: &mut WxReport) {
    for i in 0..512 {
        // SAFETY: every table reachable from CR3 lies in the identity-mapped pool.
        let e = unsafe { (*table)[i] };
        if e & P == 0 {
            continue;
        }
        let shift = 12 + 9 * (level - 1);
        let virt = base | ((i as u64) << shift);
        let (w, nx) = (w & e, nx | (e & NX));
        if level == 1 || e & PS != 0 {
            r.leaves += 1;
            let (writable, executable) = (w & W != 0, nx == 0);
            r.writable += usize::from(writable);
            r.executable += usize::from(executable);
            if writable && executable {
                r.both += 1;
                r.first_both.get_or_insert(virt);
            }
        } else {
            walk((e & ADDR) as *const Table, level - 1, virt, w, nx, r);
        }
    }
}

/// The writable alias of the text byte at `addr`, or `None` if `addr` is not in the text.
pub fn text_alias(addr: u64) -> Option<*mut u8> {
    let (s, e) = layout().text;
    (s..e).contains(&addr).then(|| (TEXT_ALIAS + (addr - s)) as *mut u8)
}

/// Whether the loaded tables map `virt` (walks them from CR3).
pub fn is_mapped(virt: u64) -> bool {
    let mut table = (cpu::cr3() & ADDR) as *const Table;
    for level in (1..=4u32).rev() {
        // SAFETY: every table reachable from CR3 lies in the identity-mapped pool.
        let e = unsafe { (*table)[idx(virt, 12 + 9 * (level - 1))] };
        if e & P == 0 {
            return false;
        }
        if level == 1 || e & PS != 0 {
            return true;
        }
        table = (e & ADDR) as *const Table;
    }
    false
}
