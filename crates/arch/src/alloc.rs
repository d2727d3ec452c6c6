//! The global allocator: the host's `malloc` with preemption disabled and IRQs soft-masked
//! around every call.
//!
//! **Why.** All tasks of a CPU share one host thread, so if a task were preempted inside
//! `malloc` and the next task called `malloc` too, the host allocator would be re-entered on
//! one thread (its locks are not recursive). Raising `preempt_count` makes the scheduler treat
//! the call as atomic, exactly like the kernel's slab allocator. IRQs are masked too, as the
//! slab allocator takes its locks with `spin_lock_irqsave`: the host allocator's locks are
//! shared by every CPU thread, and code that holds a run-queue lock allocates (a fork adds the
//! task to every run queue), so an interrupt handler that waits for a run-queue lock must never
//! run on a thread that holds an allocator lock (CPU 0 in `malloc`, interrupted, spinning on
//! CPU 1's run queue; CPU 1 holding it and waiting for `malloc`'s lock: found by the fuzzer).
//!
//! **Invariant.** The interrupt path never allocates: a call while the core's IRQ hook runs is
//! a `BUG:` that aborts the process, because the interrupted code may be inside `malloc`. No
//! interrupt handler runs while a CPU thread is inside the host allocator.

use crate::percpu::{self, PREEMPT_OFFSET};
use std::alloc::{GlobalAlloc, Layout, System};

/// The allocator wrapper.
pub struct KernelAlloc;

/// True where allocating (or freeing) would abort: while the core's IRQ hook runs. Code that
/// may run there (a `BUG:` report) formats into a fixed buffer instead.
pub fn allocation_forbidden() -> bool {
    percpu::in_irq()
}

/// Before the host allocator: the count raised, then IRQs masked; returns whether they were.
#[inline(always)]
fn enter() -> bool {
    percpu::preempt_count_add(PREEMPT_OFFSET); // one `add`: a signal cannot split it
    let in_irq = percpu::in_irq();
    if in_irq {
        if let Some(h) = percpu::hooks() {
            (h.alloc_in_irq)();
        }
        crate::cpu::die("BUG: memory allocation in interrupt context (the interrupted code may be inside malloc)");
    }
    crate::irq::local_irq_save()
}

/// After the host allocator returned: IRQs restored (an interrupt that came meanwhile is
/// replayed here, with the count still raised), then `preempt_enable()`: with need_resched
/// folded in inverted, a raw count of zero means a reschedule came due while the allocator
/// held the CPU; the core decides (by its model) whether to take it now.
#[inline(always)]
fn exit(was_masked: bool) {
    crate::irq::local_irq_restore(was_masked);
    if percpu::preempt_count_sub(PREEMPT_OFFSET) == 0 {
        if let Some(h) = percpu::hooks() {
            (h.preempt_schedule)();
        }
    }
}

// SAFETY: every method forwards to `System` with the same arguments and returns its result;
// the added preempt_count bookkeeping touches no memory the caller owns.
unsafe impl GlobalAlloc for KernelAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let irqs = enter();
        // SAFETY: caller's contract forwarded.
        let p = unsafe { System.alloc(layout) };
        exit(irqs);
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let irqs = enter();
        // SAFETY: caller's contract forwarded.
        unsafe { System.dealloc(ptr, layout) };
        exit(irqs);
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let irqs = enter();
        // SAFETY: caller's contract forwarded.
        let p = unsafe { System.alloc_zeroed(layout) };
        exit(irqs);
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let irqs = enter();
        // SAFETY: caller's contract forwarded.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        exit(irqs);
        p
    }
}

#[global_allocator]
static GLOBAL: KernelAlloc = KernelAlloc;
