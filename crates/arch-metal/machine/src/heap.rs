//! The kernel heap: `talc` as the `#[global_allocator]`, over the RAM the PVH memory map
//! reports above the image, behind a spin lock that masks interrupts while held.
//!
//! **Mechanism.** [`init`] finds the memory map's RAM region containing `from` (the first
//! 2 MiB boundary past the image, where the 2 MiB identity pages start) and hands talc
//! `[from, min(region end, identity end))` with `Talc::claim`. Every allocation takes
//! [`IrqSpinRaw`]: it saves RFLAGS.IF, masks interrupts, then spins on an atomic flag;
//! releasing restores IF as it was. With interrupts masked no interrupt handler (and so no
//! preemption, once the core preempts on the interrupt return) runs while the allocator's
//! lock is held, as the hosted arch raises `preempt_count` around `malloc`.
//!
//! **Invariant.** The claimed range is RAM (the memory map says so), identity-mapped
//! read-write, and used by nothing else: it starts past the image and its page tables.

use crate::boot::{MemmapEntry, MEMMAP_RAM};
use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};
use talc::source::Manual;
use talc::TalcLock;

/// A raw spin lock that masks interrupts while held (see the module's description).
pub struct IrqSpinRaw {
    locked: AtomicBool,
    /// IF as it was when the holder took the lock (written and read by the holder only).
    irqs_were_on: AtomicBool,
}

/// Saves RFLAGS.IF and masks interrupts; true if they were on.
fn irq_save() -> bool {
    let flags: u64;
    // SAFETY: reads RFLAGS through the stack (pushfq/pop) and clears IF: no memory of the
    // program is touched.
    unsafe { asm!("pushfq", "pop {}", "cli", out(reg) flags, options(nomem)) };
    flags & (1 << 9) != 0
}

// SAFETY: `lock` returns only once this caller changed `locked` from false to true (acquire),
// `unlock` stores false (release): one holder at a time, and the holder's writes are seen by
// the next.
unsafe impl lock_api::RawMutex for IrqSpinRaw {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self { locked: AtomicBool::new(false), irqs_were_on: AtomicBool::new(false) };
    type GuardMarker = lock_api::GuardNoSend;

    fn lock(&self) {
        let was_on = irq_save();
        while self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            core::hint::spin_loop();
        }
        self.irqs_were_on.store(was_on, Ordering::Relaxed);
    }

    fn try_lock(&self) -> bool {
        let was_on = irq_save();
        if self.locked.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            self.irqs_were_on.store(was_on, Ordering::Relaxed);
            return true;
        }
        if was_on {
            // SAFETY: IF was on before `irq_save` cleared it: back as it was.
            unsafe { asm!("sti", options(nomem, nostack)) };
        }
        false
    }

    unsafe fn unlock(&self) {
        let was_on = self.irqs_were_on.load(Ordering::Relaxed);
        self.locked.store(false, Ordering::Release);
        if was_on {
            // SAFETY: IF was on when the holder took the lock: back as it was.
            unsafe { asm!("sti", options(nomem, nostack)) };
        }
    }
}

static HEAP: TalcLock<IrqSpinRaw, Manual> = TalcLock::new(Manual);

/// The global allocator: talc behind [`IrqSpinRaw`] (interrupts masked while it runs, so no
/// interrupt, and so no preemption, lands inside it: what the hosted arch gets from raising
/// `preempt_count` around `malloc`), refusing interrupt context as the core wants: an
/// allocation while this CPU runs the core's interrupt hook is the core's `alloc_in_irq`
/// (a `BUG:` and a kernel panic).
struct Checked;

#[global_allocator]
static ALLOCATOR: Checked = Checked;

fn check_context() {
    if crate::percpu::in_irq() {
        if let Some(h) = crate::percpu::this().hooks.get() {
            (h.alloc_in_irq)();
        }
    }
}

// SAFETY: every call is passed on unchanged to talc's `GlobalAlloc`; the check before it
// reads only this CPU's in-IRQ flag.
unsafe impl core::alloc::GlobalAlloc for Checked {
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        check_context();
        // SAFETY: the caller's contract, passed on.
        unsafe { HEAP.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
        check_context();
        // SAFETY: the caller's contract, passed on.
        unsafe { HEAP.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: core::alloc::Layout) -> *mut u8 {
        check_context();
        // SAFETY: the caller's contract, passed on.
        unsafe { HEAP.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: core::alloc::Layout, new_size: usize) -> *mut u8 {
        check_context();
        // SAFETY: the caller's contract, passed on.
        unsafe { HEAP.realloc(ptr, layout, new_size) }
    }
}

/// The heap's range, once [`init`] claimed it.
#[derive(Clone, Copy, Debug)]
pub struct Heap {
    /// The first byte claimed.
    pub start: u64,
    /// One past the last.
    pub end: u64,
}

/// Claims the RAM at `from` (up to `limit` at most) for the heap.
///
/// # Safety
/// Called once; `[from, limit)` must be identity-mapped read-write and used by nothing else
/// wherever the memory map says it is RAM.
pub unsafe fn init(memmap: &[MemmapEntry], from: u64, limit: u64) -> Result<Heap, &'static str> {
    let region = memmap
        .iter()
        .find(|e| e.kind == MEMMAP_RAM && e.addr <= from && from < e.addr + e.size)
        .ok_or("no RAM in the PVH memory map past the image")?;
    let end = (region.addr + region.size).min(limit);
    if end <= from + (1 << 20) {
        return Err("less than 1 MiB of RAM past the image");
    }
    // SAFETY: `[from, end)` is RAM (the memory map), mapped read-write and used by nothing
    // else (the caller's contract); talc owns it from here on.
    let claimed = unsafe { HEAP.lock().claim(from as *mut u8, (end - from) as usize) };
    claimed.ok_or("talc refused the region")?;
    Ok(Heap { start: from, end })
}
