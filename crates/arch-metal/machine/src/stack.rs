//! Task stacks: heap memory mapped again, with 4 KiB pages, in a region of their own, each
//! above an unmapped guard page.
//!
//! **Mechanism.** The heap is identity-mapped with 2 MiB pages, too coarse for a guard page.
//! So [`Stack::new`] takes page-aligned memory from the heap (physical = virtual there) and
//! maps it a second time at a fresh address of [`STACK_REGION`] (PML4 entry 2), one 4 KiB
//! page at a time, read-write and not executable, leaving the page below it unmapped: a
//! stack overflow is a page fault on that guard page, reported as such (`crate::idt`). The
//! paging structures the region needs come from the heap too (4 KiB aligned, zeroed) and
//! stay. Dropping the stack clears its entries, invalidates them (`invlpg`) and gives the
//! memory back; its addresses are not reused (the region is 512 GiB).
//!
//! **Invariant.** Only this module writes entries of PML4 slot 2, with IF clear on one CPU;
//! every entry it writes is writable and not executable (W^X holds), and the guard page's
//! entry is never present.

use crate::cpu;
use core::alloc::Layout;
use core::sync::atomic::{AtomicU64, Ordering};

/// Where task stacks are mapped (PML4 entry 2).
pub const STACK_REGION: u64 = 0x0000_0100_0000_0000;
const PAGE: u64 = 4096;
const P: u64 = 1;
const W: u64 = 1 << 1;
const NX: u64 = 1 << 63;
const ADDR: u64 = 0x000F_FFFF_FFFF_F000;

/// The next free address of the region.
static NEXT: AtomicU64 = AtomicU64::new(STACK_REGION);

/// A mapped task stack (see the module's description).
pub struct Stack {
    /// The stack's lowest mapped address (the guard page is just below).
    pub lo: u64,
    /// One past its highest.
    pub hi: u64,
    phys: *mut u8,
    layout: Layout,
}

// SAFETY: the stack's memory is owned by this value alone; the raw pointer is only given back
// to the allocator in `drop`.
unsafe impl Send for Stack {}
// SAFETY: `&Stack` gives only its addresses.
unsafe impl Sync for Stack {}

fn idx(virt: u64, shift: u32) -> usize {
    ((virt >> shift) & 511) as usize
}

/// The page-table entry for `virt` in the live tables, made (with its tables) if absent.
fn entry(virt: u64) -> Result<*mut u64, &'static str> {
    let mut table = (cpu::cr3() & ADDR) as *mut u64;
    for shift in [39, 30, 21] {
        // SAFETY: `table` is a paging structure reachable from CR3, identity-mapped (the
        // boot's pool or a table this module took from the heap).
        let e = unsafe { table.add(idx(virt, shift)) };
        // SAFETY: as above.
        let v = unsafe { *e };
        if v & P == 0 {
            let layout = Layout::from_size_align(PAGE as usize, PAGE as usize).map_err(|_| "layout")?;
            // SAFETY: a non-zero size; the table is zeroed (no entry present) and kept forever.
            let t = unsafe { alloc::alloc::alloc_zeroed(layout) };
            if t.is_null() {
                return Err("out of memory for a page table");
            }
            // SAFETY: `e` is an entry of a live table; a new table, writable, executable as
            // far as this level goes (the leaf says NX).
            unsafe { *e = t as u64 | P | W };
            table = t.cast();
        } else {
            if v & (1 << 7) != 0 {
                return Err("the stack region overlaps a large page");
            }
            table = (v & ADDR) as *mut u64;
        }
    }
    // SAFETY: `table` is the page table for `virt`.
    Ok(unsafe { table.add(idx(virt, 12)) })
}

impl Stack {
    /// A stack of `size` bytes (rounded up to pages) above an unmapped guard page.
    pub fn new(size: usize) -> Result<Stack, &'static str> {
        let size = (size as u64).next_multiple_of(PAGE);
        let layout = Layout::from_size_align(size as usize, PAGE as usize).map_err(|_| "bad stack size")?;
        // SAFETY: a non-zero size.
        let phys = unsafe { alloc::alloc::alloc(layout) };
        if phys.is_null() {
            return Err("out of memory for a task stack");
        }
        let base = NEXT.fetch_add(size + PAGE, Ordering::Relaxed);
        let lo = base + PAGE;
        let was = crate::irq::local_irq_save();
        let mut r = Ok(());
        for off in (0..size).step_by(PAGE as usize) {
            match entry(lo + off) {
                // SAFETY: a leaf entry of the stack region, owned by this stack.
                Ok(e) => unsafe { *e = (phys as u64 + off) | P | W | NX },
                Err(why) => {
                    r = Err(why);
                    break;
                }
            }
        }
        crate::irq::local_irq_restore(was);
        r?;
        Ok(Stack { lo, hi: lo + size, phys, layout })
    }

    /// True if `addr` is in this stack's guard page.
    pub fn guards(&self, addr: u64) -> bool {
        (self.lo - PAGE..self.lo).contains(&addr)
    }
}

/// The guard page below a stack whose lowest mapped address is `lo` (page-aligned).
pub fn guard_page(lo: u64) -> u64 {
    lo - PAGE
}

/// True if, read back from the live tables, the page below a stack whose lowest mapped
/// address is `lo` is unmapped (both its ends) and the stack's lowest page is mapped.
pub fn guard_holds(lo: u64) -> bool {
    use crate::paging::is_mapped;
    lo >= PAGE && !is_mapped(guard_page(lo)) && !is_mapped(lo - 1) && is_mapped(lo)
}

impl Drop for Stack {
    fn drop(&mut self) {
        let was = crate::irq::local_irq_save();
        for v in (self.lo..self.hi).step_by(PAGE as usize) {
            if let Ok(e) = entry(v) {
                // SAFETY: this stack's own leaf entry; the TLB entry is dropped after it.
                unsafe {
                    *e = 0;
                    core::arch::asm!("invlpg [{}]", in(reg) v, options(nostack, preserves_flags));
                }
            }
        }
        crate::irq::local_irq_restore(was);
        // SAFETY: `phys` came from `alloc` with this layout, and nothing maps it any more.
        unsafe { alloc::alloc::dealloc(self.phys, self.layout) };
    }
}
