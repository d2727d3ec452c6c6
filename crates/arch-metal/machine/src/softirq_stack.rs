//! Each CPU's softirq stack, on which the core's softirqs run at an interrupt's exit with IF
//! set (Linux's `do_softirq_own_stack`, `call_on_irqstack`).
//!
//! **Mechanism.** Every IDT gate names an IST stack (the red-zone rule, `crate::gdt`), so a
//! nested interrupt always starts at the TSS's IST 4 top. Code running with IF set on IST 4
//! itself cannot be protected: its frames grow down from its `rsp`, right where a nested
//! interrupt's frame, vector state and handler would go. So the softirqs move off IST 4:
//! [`alloc()`] gives each CPU, at its bring-up (the boot CPU in `metal_rust_entry`, each AP in
//! `crate::smp`), a stack of [`SOFTIRQ_STACK_SIZE`] bytes above an unmapped guard page
//! (`crate::stack::Stack`, kept for as long as the CPU runs), and [`run_on_softirq_stack`]
//! points IST 4's top just below its own frame on IST 4 (everything above is live, nothing
//! below is used while the softirqs run) and calls the closure on the softirq stack through
//! `metal_call_on_stack` (below: saves `rsp` in `rbp`, loads the new stack's top, calls,
//! moves back; its CFI follows `rbp`, so a frame walk from the softirq stack steps back onto
//! IST 4).
//!
//! **Invariant.** While a closure runs on a CPU's softirq stack, that CPU's IST 4 top lies
//! below every live byte of IST 4, and the softirq stack is used by nothing else: only the
//! outermost interrupt's exit runs softirqs (the core does not run them in a nested one), and
//! nothing is pushed on an interrupted stack below its red zone (the switch is a `call` on
//! IST 4 and a load of a fresh stack's top).

use crate::stack::Stack;
use core::sync::atomic::{AtomicU64, Ordering};

/// The size of each CPU's softirq stack (as an IST stack's).
pub const SOFTIRQ_STACK_SIZE: usize = crate::gdt::IST_STACK_SIZE;

/// Each CPU's softirq stack `[lo, hi)` by CPU number; `(0, 0)` until [`alloc()`].
static STACKS: [(AtomicU64, AtomicU64); crate::smp::MAX_CPUS] =
    [const { (AtomicU64::new(0), AtomicU64::new(0)) }; crate::smp::MAX_CPUS];

core::arch::global_asm!(
    ".section .text.metal_call_on_stack, \"ax\"",
    ".global metal_call_on_stack",
    ".type metal_call_on_stack, @function",
    "metal_call_on_stack:",      // rdi = the argument, rsi = the function, rdx = the stack's top
    ".cfi_startproc",            // CFI: a walk from the new stack steps back to the caller
    "push rbp",                  // the caller's rbp, on the caller's stack
    ".cfi_def_cfa_offset 16",    //   CFA = rsp + 16 (the return address and rbp)
    ".cfi_offset rbp, -16",      //   the caller's rbp at CFA - 16
    "mov rbp, rsp",              // rbp = this frame, on the caller's stack
    ".cfi_def_cfa_register rbp", //   CFA = rbp + 16 from here on, whatever rsp is
    "mov rsp, rdx",              // onto the new stack (16-byte aligned: the ABI's at a call)
    "call rsi",                  // function(argument), rdi unchanged
    "mov rsp, rbp",              // back onto the caller's stack
    ".cfi_def_cfa_register rsp", //   CFA = rsp + 16 again
    "pop rbp",                   // the caller's rbp
    ".cfi_def_cfa_offset 8",     //   CFA = rsp + 8: only the return address left
    "ret",                       // to the caller
    ".cfi_endproc",              // end of the CFI
    ".size metal_call_on_stack, . - metal_call_on_stack",
);

extern "C" {
    /// Calls `function(arg)` with `rsp` at `top`, and returns on the caller's stack.
    fn metal_call_on_stack(arg: *mut u8, function: extern "C" fn(*mut u8), top: u64);
}

/// Gives CPU `cpu` its softirq stack; at its bring-up, on the boot CPU, IF clear.
pub fn alloc(cpu: usize) -> Result<(), &'static str> {
    let slot = STACKS.get(cpu).ok_or("softirq stack: CPU number out of range")?;
    let stack = Stack::new(SOFTIRQ_STACK_SIZE)?;
    slot.0.store(stack.lo, Ordering::Release);
    slot.1.store(stack.hi, Ordering::Release);
    // The CPU uses it for as long as it runs.
    core::mem::forget(stack);
    Ok(())
}

/// This CPU's softirq stack `[lo, hi)`, if [`alloc()`] gave it one.
pub fn this() -> Option<(u64, u64)> {
    of(crate::percpu::cpu_number() as usize)
}

/// CPU `cpu`'s softirq stack `[lo, hi)`, if [`alloc()`] gave it one.
pub fn of(cpu: usize) -> Option<(u64, u64)> {
    let slot = STACKS.get(cpu)?;
    let (lo, hi) = (slot.0.load(Ordering::Acquire), slot.1.load(Ordering::Acquire));
    (hi != 0).then_some((lo, hi))
}

/// Calls the closure in `arg` (an `Option<F>`), taking it.
extern "C" fn call_closure<F: FnOnce()>(arg: *mut u8) {
    // SAFETY: `run_on_softirq_stack` passes its own `Option<F>`, live across the call.
    let f = unsafe { (*arg.cast::<Option<F>>()).take() };
    if let Some(f) = f {
        f();
    }
}

/// Runs `f` on this CPU's softirq stack `top`, IST 4's top moved below this frame for the
/// while (see the module's description). Call on IST 4 with IF clear; `f` may set IF, and
/// returns with it clear.
///
/// # Safety
/// `top` is the top of this CPU's softirq stack, which nothing is using.
#[inline(never)]
pub unsafe fn run_on_softirq_stack<F: FnOnce()>(top: u64, f: F) {
    let sp: u64;
    // SAFETY: copies rsp, this frame's bottom: the call below pushes its return address and
    // `metal_call_on_stack` the caller's rbp under it, nothing else is pushed here.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    let mut f = Some(f);
    // SAFETY: IF clear (the caller's contract); the new top is below this frame, the two words
    // `metal_call_on_stack` pushes and a red zone's worth more, 16-byte aligned, and nothing
    // of IST 4 below it is used while `f` runs on the other stack.
    let old = unsafe { crate::gdt::set_ist_other_top((sp - 128) & !15) };
    // SAFETY: `top` is a free stack's 16-byte aligned top (the caller's contract; `alloc`'s
    // stacks are page-aligned); `call_closure::<F>` takes the `Option<F>` passed.
    unsafe { metal_call_on_stack((&raw mut f).cast(), call_closure::<F>, top & !15) };
    // SAFETY: IF clear again (`f` returns with it clear); `old` is the top this found.
    unsafe { crate::gdt::set_ist_other_top(old) };
}
