//! Task contexts and the context switch.
//!
//! **Mechanism.** A suspended context is just a stack pointer: [`switch_to`] pushes the
//! callee-saved registers (`rbp`, `rbx`, `r12`–`r15`) and the callee-saved control words (MXCSR
//! and the x87 control word) on the old stack, stores `rsp` in the old context, loads the new
//! context's `rsp` and pops the same frame. Everything caller-saved is already saved by the
//! compiler around the call. A new context gets a hand-made frame whose return address is
//! `atomkernel_task_bootstrap`:
//!
//! ```text
//!   hi (16-byte aligned) ->  +----------------------------+
//!                            | atomkernel_task_bootstrap  |  "return address" of the first switch
//!                            | rbp = 0                    |  (ends frame-pointer walks)
//!                            | rbx = 0                    |
//!                            | r12 = arg                  |  -> rsi of task_start
//!                            | r13 = entry fn             |  -> rdi of task_start
//!                            | r14 = 0, r15 = 0           |
//!   saved sp ->              | MXCSR 0x1f80, FCW 0x037f   |
//!                            +----------------------------+
//! ```
//!
//! **Invariants.** A context is `Running` on exactly one thread or not at all; only a `New` or
//! `Suspended` context can be switched to; a `Running` context's stack is never freed. The
//! context that was left is marked `Suspended` (or `Dead`) by the one that was entered, after
//! the switch, so another CPU can never enter a context whose registers are still being saved.
//! A context left for good ([`switch_to_final`]) has its stack unmapped by that same step, on
//! the next context's stack: the context itself (its name, its stack's range) may outlive it.

use crate::asm::asm_function;
use crate::percpu;
use crate::stack::{Stack, StackRange};
use std::io;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const NEW: u8 = 0;
const RUNNING: u8 = 1;
const SUSPENDING: u8 = 2;
const SUSPENDED: u8 = 3;
const DYING: u8 = 4;
const DEAD: u8 = 5;

/// The first function of a new context. It must never return: a task ends by
/// [`switch_to_final`].
pub type Entry = fn(usize) -> !;

/// A kernel stack and the stack pointer saved in it while the context is not running.
#[derive(Debug)]
pub struct TaskContext {
    saved_sp: AtomicUsize,
    state: AtomicU8,
    /// Where the stack lies (`None`: the thread's own stack); kept when the stack is unmapped.
    range: Option<StackRange>,
    /// The stack's mapping, until the switch away from the context for good unmaps it.
    stack: Mutex<Option<Stack>>,
    name: [u8; 32],
    name_len: u8,
}

// rdi = &prev.saved_sp, rsi = next's saved sp. Pushes a switch frame (drawn in the module
// docs) on the old stack and pops one off the new. Every switch frame has the same shape, so
// the CFI stays true across the `mov rsp, rsi`: after it, the rows describe the next
// context's frame, whose return address leads into that context's caller (or its bootstrap).
asm_function!(
    "atomkernel_switch",
    [
        "    push rbp",                  // callee-saved registers of the old context
        ".cfi_adjust_cfa_offset 8",      //   CFA = rsp + 16
        ".cfi_rel_offset rbp, 0",        //   rbp saved at [rsp]
        "    push rbx",                  // callee-saved rbx
        ".cfi_adjust_cfa_offset 8",      //   CFA = rsp + 24
        ".cfi_rel_offset rbx, 0",        //   rbx saved at [rsp]
        "    push r12",                  // callee-saved r12
        ".cfi_adjust_cfa_offset 8",      //   CFA = rsp + 32
        ".cfi_rel_offset r12, 0",        //   r12 saved at [rsp]
        "    push r13",                  // callee-saved r13
        ".cfi_adjust_cfa_offset 8",      //   CFA = rsp + 40
        ".cfi_rel_offset r13, 0",        //   r13 saved at [rsp]
        "    push r14",                  // callee-saved r14
        ".cfi_adjust_cfa_offset 8",      //   CFA = rsp + 48
        ".cfi_rel_offset r14, 0",        //   r14 saved at [rsp]
        "    push r15",                  // callee-saved r15
        ".cfi_adjust_cfa_offset 8",      //   CFA = rsp + 56
        ".cfi_rel_offset r15, 0",        //   r15 saved at [rsp]
        "    sub rsp, 8",                // one slot for the two control words
        ".cfi_adjust_cfa_offset 8",      //   CFA = rsp + 64: the whole switch frame
        "    stmxcsr dword ptr [rsp]",   // SSE rounding/exception control (callee-saved)
        "    fnstcw word ptr [rsp + 4]", // x87 control word (callee-saved)
        "    mov qword ptr [rdi], rsp",  // prev.saved_sp = rsp
        "    mov rsp, rsi",              // enter the new stack: a frame of the same shape
        "    ldmxcsr dword ptr [rsp]",   // its control words ...
        "    fldcw word ptr [rsp + 4]",  //   and the x87 control word
        "    add rsp, 8",                // drop the control-word slot
        ".cfi_adjust_cfa_offset -8",     //   CFA = rsp + 56
        "    pop r15",                   // ... and callee-saved registers
        ".cfi_adjust_cfa_offset -8",     //   each pop: one word less, the register restored
        ".cfi_restore r15",              //   r15 holds its own value again
        "    pop r14",                   // next context's r14
        ".cfi_adjust_cfa_offset -8",     //   CFA = rsp + 40
        ".cfi_restore r14",              //   r14 holds its own value again
        "    pop r13",                   // next context's r13
        ".cfi_adjust_cfa_offset -8",     //   CFA = rsp + 32
        ".cfi_restore r13",              //   r13 holds its own value again
        "    pop r12",                   // next context's r12
        ".cfi_adjust_cfa_offset -8",     //   CFA = rsp + 24
        ".cfi_restore r12",              //   r12 holds its own value again
        "    pop rbx",                   // next context's rbx
        ".cfi_adjust_cfa_offset -8",     //   CFA = rsp + 16
        ".cfi_restore rbx",              //   rbx holds its own value again
        "    pop rbp",                   // next context's rbp
        ".cfi_adjust_cfa_offset -8",     //   CFA = rsp + 8: just the return address left
        ".cfi_restore rbp",              //   rbp holds its own value again
        "    ret",                       // into the new context
    ],
);

// A new context's first "return": rsp = the stack top (16-aligned), r13 = entry, r12 = arg.
// Nothing called it, so its CFI ends every walk here, as `_start` ends a thread's.
asm_function!(
    "atomkernel_task_bootstrap",
    [
        ".cfi_def_cfa_offset 0",         // CFA = the stack top
        ".cfi_undefined rip",            // no return address: the outermost frame
        "    mov rdi, r13",              // task_start(entry, arg)
        "    mov rsi, r12",            //   arg
        "    call {start}",              // rsp is 16-aligned at the call, as the ABI wants
        "    ud2",                       // task_start never returns
    ],
    start = sym task_start,
);

extern "C" {
    fn atomkernel_switch(prev_sp: *mut usize, next_sp: usize);
    fn atomkernel_task_bootstrap();
}

extern "C" fn task_start(entry: usize, arg: usize) -> ! {
    finish_switch();
    // SAFETY: `entry` was stored from an `Entry` by `TaskContext::new`.
    let entry: Entry = unsafe { std::mem::transmute::<usize, Entry>(entry) };
    entry(arg)
}

impl TaskContext {
    /// A new context on a fresh stack of `stack_size` bytes that will start in `entry(arg)`.
    pub fn new(name: &str, stack_size: usize, entry: Entry, arg: usize) -> io::Result<Arc<TaskContext>> {
        let stack = Stack::new(stack_size)?;
        let hi = stack.range().hi();
        let frame: [u64; 8] = [
            0x037f_0000_1f80,                   // MXCSR (low half), FCW (bits 32..48)
            0,                                  // r15
            0,                                  // r14
            entry as *const () as usize as u64, // r13
            arg as u64,                         // r12
            0,                                  // rbx
            0,                                  // rbp
            atomkernel_task_bootstrap as *const () as usize as u64,
        ];
        let sp = hi - frame.len() * 8;
        // SAFETY: `[sp, hi)` lies inside the stack just mapped, which nothing else uses yet.
        unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), sp as *mut u64, frame.len()) };
        let mut ctx = TaskContext::bare(name, NEW);
        ctx.saved_sp = AtomicUsize::new(sp);
        ctx.range = Some(stack.range());
        ctx.stack = Mutex::new(Some(stack));
        Ok(Arc::new(ctx))
    }

    /// The context of the calling thread itself (a CPU's idle task runs on the thread's own
    /// stack), already running.
    pub fn for_current_thread(name: &str) -> Arc<TaskContext> {
        let ctx = Arc::new(TaskContext::bare(name, RUNNING));
        percpu::with(|l| l.current.set(Arc::as_ptr(&ctx)));
        ctx
    }

    fn bare(name: &str, state: u8) -> TaskContext {
        let mut buf = [0u8; 32];
        let mut len = name.len().min(buf.len());
        while !name.is_char_boundary(len) {
            len -= 1;
        }
        buf[..len].copy_from_slice(&name.as_bytes()[..len]);
        TaskContext {
            saved_sp: AtomicUsize::new(0),
            state: AtomicU8::new(state),
            range: None,
            stack: Mutex::new(None),
            name: buf,
            name_len: len as u8,
        }
    }

    /// The task name given at creation (truncated to 32 bytes).
    pub fn name(&self) -> &str {
        std::str::from_utf8(&self.name[..self.name_len as usize]).unwrap_or("?")
    }

    /// `[lo, hi)` of the owned stack, if any.
    /// Where [`stack_bounds`](Self::stack_bounds) reads, to prefetch it.
    pub(crate) fn stack_bounds_addr(&self) -> usize {
        &self.range as *const Option<StackRange> as usize
    }

    pub(crate) fn stack_bounds(&self) -> Option<(usize, usize)> {
        self.range.map(|s| (s.lo(), s.hi()))
    }

    pub(crate) fn stack_contains(&self, sp: usize) -> bool {
        self.range.is_some_and(|s| sp > s.lo() && sp <= s.hi())
    }

    pub(crate) fn guard_contains(&self, addr: usize) -> bool {
        self.range.is_some_and(|s| {
            let (lo, hi) = s.guard();
            addr >= lo && addr < hi
        })
    }

    /// True while the context runs on some CPU.
    pub(crate) fn is_running(&self) -> bool {
        self.state.load(Ordering::Acquire) == RUNNING
    }

    /// Takes the context for this CPU: one compare-and-swap from `New` or `Suspended`, so two
    /// CPUs that both tried to enter it could never both succeed (the core waits for a context
    /// another CPU is still leaving before it switches to it; see `kernel::sched`).
    fn enter(&self) {
        let s = self.state.load(Ordering::Acquire);
        let ok = (s == NEW || s == SUSPENDED)
            && self.state.compare_exchange(s, RUNNING, Ordering::AcqRel, Ordering::Acquire).is_ok();
        if !ok {
            let now = self.state.load(Ordering::Acquire);
            crate::cpu::die(&format!("BUG: switch to task '{}' which is not runnable (state {now})", self.name()));
        }
    }
}

impl Drop for TaskContext {
    fn drop(&mut self) {
        let s = *self.state.get_mut();
        let mapped = self.stack.get_mut().map_or(true, |m| m.is_some());
        if mapped && (s == RUNNING || s == SUSPENDING || s == DYING) {
            crate::cpu::die(&format!("BUG: freeing the stack of task '{}' while it runs", self.name()));
        }
        percpu::with(|l| {
            if std::ptr::eq(l.current.get(), self) {
                l.current.set(std::ptr::null());
            }
        });
    }
}

/// The name of the context running on this CPU (empty if none). Signal-safe: no lock.
pub fn current_name() -> crate::cpu::FixedBuf<32> {
    use std::fmt::Write as _;
    let mut name = crate::cpu::FixedBuf::new();
    let cur = percpu::with(|l| l.current.get());
    if !cur.is_null() {
        // SAFETY: `current` points to the running TaskContext, alive while it runs (see
        // `TaskContext`'s Drop); only its name bytes are read.
        let _ = name.write_str(unsafe { (*cur).name() });
    }
    name
}

/// Marks the context left by the last switch as suspended (or dead).
fn finish_switch() {
    let last = percpu::with(|l| l.last.replace(std::ptr::null()));
    if !last.is_null() {
        // SAFETY: `last` was set by `switch_inner` from a reference whose owner keeps the
        // context alive at least until it is marked Dead (Drop refuses DYING/SUSPENDING).
        let last = unsafe { &*last };
        if last.state.load(Ordering::Acquire) == DYING {
            // Taken while the context is still Dying (its owner cannot free it yet), unmapped
            // once it is Dead: this stack is not the one being unmapped.
            let stack = last.stack.lock().unwrap_or_else(|e| e.into_inner()).take();
            last.state.store(DEAD, Ordering::Release);
            drop(stack);
        } else {
            last.state.store(SUSPENDED, Ordering::Release);
        }
    }
    for p in percpu::with(|l| l.release.replace([std::ptr::null(); 2])) {
        if !p.is_null() {
            // SAFETY: `p` came from `Arc::into_raw` in `switch_to_final` and is released once.
            drop(unsafe { Arc::from_raw(p) });
        }
    }
}

fn switch_inner(prev: &TaskContext, next: &TaskContext, leaving: u8) {
    assert!(prev.is_running(), "switch from task '{}' which is not running", prev.name());
    assert!(
        std::ptr::eq(percpu::with(|l| l.current.get()), prev),
        "switch from task '{}' which is not this CPU's current context",
        prev.name()
    );
    next.enter();
    prev.state.store(leaving, Ordering::Release);
    percpu::with(|l| {
        l.last.set(prev as *const _);
        l.current.set(next as *const _);
    });
    // SAFETY: `prev` is the running context of this thread (checked), so its saved_sp slot may
    // receive this stack's pointer; `next` was New (frame built by `new`) or Suspended (frame
    // pushed by this function), so its saved sp points at a valid switch frame on a live stack.
    unsafe { atomkernel_switch(prev.saved_sp.as_ptr(), next.saved_sp.load(Ordering::Acquire)) };
    finish_switch();
}

/// Switches this CPU from `prev` (running here) to `next` (new or suspended). Returns when
/// something switches back to `prev`. Call with IRQs soft-masked.
pub fn switch_to(prev: &TaskContext, next: &TaskContext) {
    switch_inner(prev, next, SUSPENDING);
}

/// Switches away from `prev` for the last time: `prev` becomes dead and its stack is unmapped
/// right after the switch, on the next context's stack, whoever else still holds the context.
/// Both references are handed to the CPU and released there too, so that the dying stack
/// (which is never unwound) holds none.
pub fn switch_to_final(prev: Arc<TaskContext>, next: Arc<TaskContext>) -> ! {
    let (p, n) = (Arc::into_raw(prev), Arc::into_raw(next));
    percpu::with(|l| l.release.set([p, n]));
    // SAFETY: both pointers come from live Arcs whose counts were just handed to `release`,
    // which is not drained before the switch completes.
    let (prev, next) = unsafe { (&*p, &*n) };
    switch_inner(prev, next, DYING);
    crate::cpu::die("BUG: a dead task was switched back to")
}
