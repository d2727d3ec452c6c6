//! CPU 0's way back to the supervisor after a kernel panic.
//!
//! **Mechanism.** The core supervises a run from the context that called `start_cpu` for CPU
//! 0 (`kernel::run`: reports, the hung-task scan, the panic report). On the host that is a
//! thread of its own; here CPU 0's body runs on that very context (the boot stack, which
//! becomes CPU 0's idle task) and `start_cpu` returns only when the body does, so after a
//! panic nobody would print the core's report. [`call`] therefore runs CPU 0's body under a
//! saved context: `metal_escapable_call` pushes the caller's callee-saved registers, keeps
//! the stack pointer in [`SLOT`] and calls the body. When the core stops CPU 0 for a panic
//! (`park_forever`), [`escape`] clears the in-IRQ flag the abandoned context may have held
//! (the panic may come from an interrupt handler), loads [`SLOT`]'s stack pointer and returns
//! from `metal_escapable_call` with 1, as if the body had returned: [`call`] answers `None`,
//! `start_cpu` returns, and the core's supervisor finds the panic record and prints its
//! report. Everything below the slot (the idle task's frames, the running task's context, an
//! interrupt's frame on an IST stack) is abandoned, never returned to and never unwound, as
//! the hosted arch abandons a dying task's frames.
//!
//! **Invariant.** [`escape`] acts only on CPU 0, at most once per [`call`], with IF clear and
//! while [`call`] is running (the slot set); anywhere else it returns and the caller ends
//! the machine as before. The supervisor then runs with IF clear, which it needs: it
//! only sleeps on the TSC and prints.

use crate::{irq, percpu};
use core::sync::atomic::{AtomicUsize, Ordering};

/// The stack pointer `metal_escapable_call` saved (0: no body running under [`call`]).
static SLOT: AtomicUsize = AtomicUsize::new(0);

core::arch::global_asm!(
    ".section .text.metal_escape, \"ax\"",
    ".global metal_escapable_call",
    "metal_escapable_call:", // rdi = f, rsi = its argument, rdx = &SLOT
    ".cfi_startproc",
    "push rbp",                  // the caller's frame pointer
    ".cfi_def_cfa_offset 16",    // CFA = rsp + 16
    ".cfi_offset rbp, -16",      // the caller's rbp at CFA - 16
    "mov rbp, rsp",              // this frame's pointer (the escape rebuilds it)
    ".cfi_def_cfa_register rbp", // CFA = rbp + 16 from here on
    "push rbx",                  // the caller's callee-saved registers
    ".cfi_offset rbx, -24",      // rbx at CFA - 24
    "push r12",                  // r12
    ".cfi_offset r12, -32",      // at CFA - 32
    "push r13",                  // r13
    ".cfi_offset r13, -40",      // at CFA - 40
    "push r14",                  // r14
    ".cfi_offset r14, -48",      // at CFA - 48
    "push r15",                  // r15 (rsp = rbp - 40)
    ".cfi_offset r15, -56",      // at CFA - 56
    "sub rsp, 8",                // 16-byte aligned for the call (rsp = rbp - 48)
    "mov qword ptr [rdx], rsp",  // SLOT = where the escape resumes
    "mov rax, rdi",              // the body
    "mov rdi, rsi",              // its argument
    "call rax",                  // f(arg); returns unless CPU 0 escapes
    "xor eax, eax",              // 0: the body returned
    ".global metal_escapable_resume",
    "metal_escapable_resume:", // the escape lands here with eax = 1, rbp rebuilt
    "add rsp, 8",              // drop the alignment slot
    "pop r15",                 // the caller's r15
    "pop r14",                 // r14
    "pop r13",                 // r13
    "pop r12",                 // r12
    "pop rbx",                 // rbx
    "pop rbp",                 // rbp
    ".cfi_def_cfa rsp, 8",     // CFA = rsp + 8: only the return address left
    "ret",                     // back into `call`
    ".cfi_endproc",
    ".global metal_escape",
    "metal_escape:", // rdi = SLOT's stack pointer; never returns
    ".cfi_startproc",
    ".cfi_undefined rip",         // no caller: a walk ends here
    "mov rsp, rdi",               // the saved frame (alignment slot, r15 .. rbx, rbp, ret)
    "lea rbp, [rdi + 48]",        // this frame's rbp as metal_escapable_call set it
    "mov eax, 1",                 // 1: escaped
    "jmp metal_escapable_resume", // restore the caller's registers and return to it
    ".cfi_endproc",
);

extern "C" {
    fn metal_escapable_call(f: extern "C" fn(*mut u8), arg: *mut u8, slot: *const AtomicUsize) -> u64;
    fn metal_escape(sp: usize) -> !;
}

/// The body and then its result, handed to [`trampoline`] by address.
type State<F, R> = (Option<F>, Option<R>);

extern "C" fn trampoline<F: FnOnce() -> R, R>(arg: *mut u8) {
    // SAFETY: `arg` is the `State<F, R>` in `call`'s frame, which outlives this call (this
    // frame is below it; an escape abandons this frame, never `call`'s).
    let state = unsafe { &mut *arg.cast::<State<F, R>>() };
    if let Some(f) = state.0.take() {
        state.1 = Some(f());
    }
}

/// Runs `body` (CPU 0's) so that a panic's [`escape`] returns here: `Some` with its result,
/// or `None` when CPU 0 was stopped for a panic.
pub(crate) fn call<F: FnOnce() -> R, R>(body: F) -> Option<R> {
    let mut state: State<F, R> = (Some(body), None);
    let f = trampoline::<F, R>;
    // SAFETY: `metal_escapable_call` saves the callee-saved registers, calls `f(&mut state)`
    // on this stack and returns, either when `f` does or through `metal_escape` from below
    // it with this frame intact (everything it saved is above the slot). The frames an escape
    // abandons are never resumed: their destructors do not run (what they held leaks), as
    // when the hosted arch abandons a dying task's frames.
    let escaped = unsafe { metal_escapable_call(f, (&raw mut state).cast(), &SLOT) };
    SLOT.store(0, Ordering::Release);
    if escaped != 0 {
        None
    } else {
        state.1
    }
}

/// Leaves a stopped CPU 0 for the context [`call`] saved (see the module's description);
/// returns, having done nothing, on another CPU or outside [`call`].
pub(crate) fn escape() {
    if percpu::cpu_number() != 0 {
        return;
    }
    irq::local_irq_disable();
    let sp = SLOT.swap(0, Ordering::AcqRel);
    if sp == 0 {
        return;
    }
    percpu::replace_in_irq(false);
    // SAFETY: `sp` is the frame `metal_escapable_call` saved on this CPU (CPU 0) and has not
    // returned from (the slot is cleared when it does); IF is clear, so nothing runs on the
    // abandoned frames again.
    unsafe { metal_escape(sp) }
}
