//! Task contexts and the context switch.
//!
//! **Mechanism.** A suspended context is a stack pointer: `metal_switch` pushes the
//! callee-saved registers (`rbp`, `rbx`, `r12`-`r15`) and the callee-saved control words
//! (MXCSR, the x87 control word) on the old stack, stores `rsp` in the old context, loads the
//! new one's and pops the same frame; everything caller-saved is saved by the compiler around
//! the call (the hosted arch's switch, `crates/arch/src/switch.rs`, for this arch). A new
//! context's stack (heap memory mapped above a guard page, `crate::stack`) holds a hand-made frame whose return address is
//! `metal_task_bootstrap`, which calls `task_start` with the entry and its argument:
//!
//! ```text
//!   top - 8   metal_task_bootstrap     "return address" of the first switch
//!   top - 16  rbp = 0                  (ends frame-pointer walks)
//!   top - 24  rbx = 0
//!   top - 32  r12 = arg
//!   top - 40  r13 = entry
//!   top - 48  r14 = 0, top - 56: r15 = 0
//!   top - 64  MXCSR 0x1f80, FCW 0x037f  <- saved sp
//! ```
//!
//! **Invariant.** Switches run with IF clear on one CPU. A context left for good
//! ([`switch_to_final`]) is released by the context entered, after the switch, on that
//! context's stack ([`finish_switch`]), so no stack is freed while it is in use.

use crate::percpu;
use alloc::string::String;
use alloc::sync::Arc;
use arch_api::FixedBuf;
use core::sync::atomic::{AtomicUsize, Ordering};

/// A task's stack and its saved stack pointer.
pub struct TaskContext {
    saved_sp: AtomicUsize,
    stack: Option<crate::stack::Stack>,
    range: Option<(usize, usize)>,
    name: FixedBuf<32>,
}

core::arch::global_asm!(
    ".section .text.metal_switch, \"ax\"",
    ".global metal_switch",
    "metal_switch:",               // rdi = &prev.saved_sp, rsi = next's saved sp
    "push rbp",                    // callee-saved registers of the old context
    "push rbx",                    // rbx
    "push r12",                    // r12
    "push r13",                    // r13
    "push r14",                    // r14
    "push r15",                    // r15
    "sub rsp, 8",                  // one slot for the two control words
    "stmxcsr dword ptr [rsp]",     // SSE control and status (callee-saved part)
    "fnstcw word ptr [rsp + 4]",   // x87 control word
    "mov qword ptr [rdi], rsp",    // prev.saved_sp = rsp
    "mov rsp, rsi",                // the new context's stack: a frame of the same shape
    "ldmxcsr dword ptr [rsp]",     // its MXCSR
    "fldcw word ptr [rsp + 4]",    // its x87 control word
    "add rsp, 8",                  // drop the control-word slot
    "pop r15",                     // its r15
    "pop r14",                     // r14
    "pop r13",                     // r13
    "pop r12",                     // r12
    "pop rbx",                     // rbx
    "pop rbp",                     // rbp
    "ret",                         // into the new context
    ".global metal_task_bootstrap",
    "metal_task_bootstrap:",       // a new context's first instruction; rsp 16-byte aligned
    "mov rdi, r13",                // task_start(entry, arg): the entry
    "mov rsi, r12",                // its argument
    "call {start}",                // never returns
    "ud2",                         // (a return would be a bug)
    start = sym task_start,
);

extern "C" {
    fn metal_switch(prev_sp: *const AtomicUsize, next_sp: usize);
    fn metal_task_bootstrap();
}

extern "C" fn task_start(entry: usize, arg: usize) -> ! {
    finish_switch();
    // SAFETY: `entry` is the `fn(usize) -> !` that `new` stored in r13.
    let entry: fn(usize) -> ! = unsafe { core::mem::transmute::<usize, fn(usize) -> !>(entry) };
    entry(arg)
}

fn name_buf(name: &str) -> FixedBuf<32> {
    let mut b = FixedBuf::<32>::default();
    let _ = core::fmt::Write::write_str(&mut b, &name[..name.len().min(31)]);
    b
}

impl TaskContext {
    /// A new context on a fresh heap stack of `stack_size` bytes starting in `entry(arg)`.
    pub fn new(name: &str, stack_size: usize, entry: fn(usize) -> !, arg: usize) -> Result<Arc<Self>, String> {
        let stack = crate::stack::Stack::new(stack_size.max(16 * 1024)).map_err(String::from)?;
        let (lo, hi) = (stack.lo as usize, stack.hi as usize);
        let top = hi & !15;
        let words: [usize; 8] = [
            (0x037f << 32) | 0x1f80, // control words: MXCSR low half, FCW at +4
            0,                       // r15
            0,                       // r14
            entry as usize,          // r13
            arg,                     // r12
            0,                       // rbx
            0,                       // rbp
            metal_task_bootstrap as *const () as usize,
        ];
        let sp = top - 64;
        for (i, w) in words.iter().enumerate() {
            // SAFETY: `sp + 8 i` is inside the stack just allocated, 8-byte aligned.
            unsafe { ((sp + 8 * i) as *mut usize).write(*w) };
        }
        Ok(Arc::new(TaskContext {
            saved_sp: AtomicUsize::new(sp),
            stack: Some(stack),
            range: Some((lo, hi)),
            name: name_buf(name),
        }))
    }

    /// The context of the code running now (the boot stack: CPU 0's idle task).
    pub fn for_current(name: &str) -> Arc<Self> {
        let c = Arc::new(TaskContext { saved_sp: AtomicUsize::new(0), stack: None, range: None, name: name_buf(name) });
        percpu::this().current.set(Arc::as_ptr(&c) as usize);
        c
    }

    /// The stack's range, if the context has a stack of its own.
    pub fn range(&self) -> Option<(usize, usize)> {
        self.range
    }
}

impl Drop for TaskContext {
    fn drop(&mut self) {
        let _ = self.stack.take();
    }
}

/// The name of the context running here.
pub fn current_name() -> FixedBuf<32> {
    let c = percpu::this().current.get();
    if c == 0 {
        return name_buf("boot");
    }
    // SAFETY: `current` points at the running context, kept alive by the core's task.
    unsafe { (*(c as *const TaskContext)).name }
}

/// The running context's stack range.
pub fn current_stack() -> Option<(usize, usize)> {
    let c = percpu::this().current.get();
    // SAFETY: as in `current_name`.
    (c != 0).then(|| unsafe { (*(c as *const TaskContext)).range }).flatten()
}

/// Switches from `prev` (running) to `next`; returns when switched back to.
pub fn switch_to(prev: &TaskContext, next: &TaskContext) {
    percpu::this().current.set(next as *const TaskContext as usize);
    // SAFETY: `next` is a new or suspended context (the core's invariant) whose saved sp
    // points at a switch frame; `prev` is the running one and stays alive while suspended.
    unsafe { metal_switch(&prev.saved_sp, next.saved_sp.load(Ordering::Relaxed)) };
    finish_switch();
}

/// Switches away from `prev` for good; the context entered releases it.
pub fn switch_to_final(prev: Arc<TaskContext>, next: Arc<TaskContext>) -> ! {
    finish_switch();
    let p = percpu::this();
    p.current.set(Arc::as_ptr(&next) as usize);
    let next_sp = next.saved_sp.load(Ordering::Relaxed);
    // The core keeps `next` alive through its task; this reference is not needed.
    drop(next);
    let prev_sp = &prev.saved_sp as *const AtomicUsize;
    p.release.set(Arc::into_raw(prev) as usize);
    // SAFETY: as in `switch_to`; the saved sp written into `prev` is never used again, and
    // `prev` (released only after the switch) is alive while it is written.
    unsafe { metal_switch(prev_sp, next_sp) };
    unreachable!("a context left for good was switched back to")
}

/// Releases a context left for good by the switch that entered this one.
pub fn finish_switch() {
    let r = percpu::this().release.replace(0);
    if r != 0 {
        // SAFETY: `r` came from `Arc::into_raw` in `switch_to_final`, released once, here,
        // on another context's stack.
        drop(unsafe { Arc::from_raw(r as *const TaskContext) });
    }
}

/// The contexts of [`bench_switch`]: A (the caller) and B.
static BENCH: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

fn bench_entry(_: usize) -> ! {
    loop {
        let (a, b) = (BENCH[0].load(Ordering::Relaxed), BENCH[1].load(Ordering::Relaxed));
        // SAFETY: both point at contexts `bench_switch` keeps alive while it switches to B.
        unsafe { switch_to(&*(b as *const TaskContext), &*(a as *const TaskContext)) };
    }
}

/// The switch alone, in TSC cycles: `rounds` round trips from the caller to a context that
/// switches straight back (two switches each), with IF clear; returns (min, mean) per
/// switch. Call before the kernel core runs (it borrows the CPU's current context).
pub fn bench_switch(rounds: u64) -> (u64, u64) {
    let was = crate::irq::local_irq_save();
    let saved = percpu::this().current.get();
    let a = TaskContext::for_current("bench-a");
    let Ok(b) = TaskContext::new("bench-b", 16 * 1024, bench_entry, 0) else {
        return (0, 0);
    };
    BENCH[0].store(Arc::as_ptr(&a) as usize, Ordering::Relaxed);
    BENCH[1].store(Arc::as_ptr(&b) as usize, Ordering::Relaxed);
    let (mut min, mut sum) = (u64::MAX, 0);
    for _ in 0..rounds {
        let t0 = crate::cpu::rdtsc();
        switch_to(&a, &b);
        let d = crate::cpu::rdtsc() - t0;
        min = min.min(d);
        sum += d;
    }
    percpu::this().current.set(saved);
    crate::irq::local_irq_restore(was);
    (min / 2, sum / rounds.max(1) / 2)
}
