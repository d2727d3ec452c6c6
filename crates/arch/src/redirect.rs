//! Return-address redirection: making a function's `ret` reach the kernel.
//!
//! **Mechanism.** When an interrupt lands after the last preemption point a function will pass
//! (or in a callee with no points), the next place the task can be caught is that function's
//! return. The core finds the slot that holds its return address (from the unwinder) and
//! [`redirect_return`] swaps in `atomkernel_rt_return`. When the function returns there, the
//! stub makes the stack look like an injected call ([`crate::entry`]): it steps over the
//! 128-byte gap and pushes a 0 as the return-address slot, then jumps into the preemption
//! trampoline, which saves every register, flag and vector register. The trampoline's body
//! sees the 0 and calls `serve`, which asks the core (`Hooks::rt_return`) for the original
//! return address (the core may schedule or redirect the next frame up before it answers) and
//! writes it into the slot. The trampoline then restores everything and its `ret 128` lands on
//! the original return address with the caller's `rsp`:
//!
//! ```text
//!   +-----------------------------+ <- caller's rsp S after the redirected `ret`
//!   | gap (128 bytes)             |
//!   +-----------------------------+
//!   | slot: 0, then the original  | <- S - 136 (what the trampoline "returns" through)
//!   | return address              |
//!   +-----------------------------+
//!   | TrampolineFrame (16 words), | <- see `crate::entry::TrampolineFrame`
//!   | XSAVE area                  |
//!   +-----------------------------+
//! ```
//!
//! The stub moves `rsp` with `lea` and `push`, which leave the flags alone, so the caller sees
//! the flags the returning function left (the ABI does not preserve flags across a call
//! anyway).
//!
//! **Unwinding.** The stub's CFI tracks its two `rsp` moves and says the return address is
//! unknown (`.cfi_undefined rip`: the original is in the core's bookkeeping, not on the
//! stack), and the trampoline it jumps to finds 0 in the slot. So a backtrace taken while the
//! core serves a redirected return (in `Hooks::rt_return`, including a schedule from there)
//! walks through the trampoline and ends cleanly at the stub, as at a thread's outermost
//! frame, instead of reading garbage; once the slot holds the original return address, the
//! trampoline's frame unwinds into the caller like any injected call.
//!
//! **Invariant.** A slot is redirected only inside the running task's stack and only if it
//! does not hold the stub already; it is restored only if it still holds the stub. The core
//! restores every redirect before a task can leave kernel code.

use crate::asm::asm_function;
use crate::entry::TrampolineFrame;
use crate::{irq, percpu};

// A redirected `ret` lands here with rsp = the caller's rsp (the return address popped).
asm_function!(
    "atomkernel_rt_return",
    [
        ".cfi_def_cfa_offset 0",                 // CFA = the caller's rsp, where the `ret` left it
        ".cfi_undefined rip",                    // the original return address is not on the stack
        "    lea rsp, [rsp - 128]",              // the gap an injected call skips (lea: flags untouched)
        ".cfi_adjust_cfa_offset 128",            //   CFA = rsp + 128
        "    push 0",                            // the slot: 0 = "a redirected return", not an injection
        ".cfi_adjust_cfa_offset 8",              //   CFA = rsp + 136, as the trampoline expects
        "    jmp atomkernel_preempt_trampoline", // save everything, serve, restore, ret 128
    ],
);

extern "C" {
    fn atomkernel_rt_return();
}

/// The address a redirected return address points at.
fn rt_return_target() -> usize {
    atomkernel_rt_return as *const () as usize
}

/// The running task's stack bounds, if this is a CPU thread running a task.
pub fn current_stack() -> Option<(usize, usize)> {
    let cur = percpu::with(|l| l.current.get());
    // SAFETY: `current` points to the running TaskContext, which its owner keeps alive while
    // it runs (TaskContext's Drop refuses to free a running context).
    (!cur.is_null()).then(|| unsafe { (*cur).stack_bounds() }).flatten()
}

/// Prefetches the running task's context, whose stack bounds [`current_stack`] reads.
/// Signal-safe.
pub fn prefetch_current_stack() {
    let cur = percpu::with(|l| l.current.get());
    // SAFETY: as in `current_stack`: `current` points to the running TaskContext, alive while
    // it runs; only the field's address is taken, nothing is read.
    if let Some(ctx) = unsafe { cur.as_ref() } {
        crate::cpu::prefetch(ctx.stack_bounds_addr());
    }
}

fn slot_ok(slot: usize) -> bool {
    current_stack().is_some_and(|(lo, hi)| slot.is_multiple_of(8) && slot >= lo && slot + 8 <= hi)
}

/// Points the return address stored at `slot` at `atomkernel_rt_return` and returns the
/// original. `None` (nothing written) if the slot is not in the running task's stack or is
/// redirected already. Signal-safe.
pub fn redirect_return(slot: usize) -> Option<usize> {
    if !slot_ok(slot) {
        return None;
    }
    let p = slot as *mut usize;
    // SAFETY: `slot` is an aligned word inside the running task's mapped stack (checked).
    unsafe {
        let orig = p.read_volatile();
        if orig == rt_return_target() || !after_call(orig) {
            return None;
        }
        p.write_volatile(rt_return_target());
        Some(orig)
    }
}

/// True if the code just before `ra` is a `call` of any encoding (`arch_api::unwind::follows_call`):
/// a last check that the unwinder found a real return address.
fn after_call(ra: usize) -> bool {
    let Some((lo, _)) = crate::unwind::function_of(ra.wrapping_sub(1)) else { return false };
    let start = ra.saturating_sub(arch_api::unwind::CALL_MAX).max(lo);
    // SAFETY: [lo, ra) lies in one function of a loaded object (its FDE says so), mapped text
    // that is never unmapped; [start, ra) is inside it.
    let before = unsafe { core::slice::from_raw_parts(start as *const u8, ra - start) };
    arch_api::unwind::follows_call(before)
}

/// The word a redirected `ret` popped (`sp - 8`, `sp` the caller's) if a disarm put a return
/// address back there after the `ret` (`Arch::restored_return`).
pub fn restored_return(sp: usize) -> Option<usize> {
    let slot = sp.checked_sub(8).filter(|&s| slot_ok(s))?;
    // SAFETY: `slot` is an aligned word inside the running task's mapped stack (checked).
    let ra = unsafe { (slot as *const usize).read_volatile() };
    (ra != rt_return_target() && after_call(ra)).then_some(ra)
}

/// Puts `orig` back at `slot` if it still holds the redirect. Returns whether it did.
pub fn restore_return(slot: usize, orig: usize) -> bool {
    if !slot_ok(slot) {
        return false;
    }
    let p = slot as *mut usize;
    // SAFETY: as in `redirect_return`.
    unsafe {
        if p.read_volatile() != rt_return_target() {
            return false;
        }
        p.write_volatile(orig);
    }
    true
}

/// The body's half of a redirected return: runs on the task's stack with IRQs soft-masked
/// around the core's hook, which returns the original return address; it goes into the
/// frame's return-address slot, which the trampoline's `ret 128` pops. The soft mask the
/// function returned with is told to the hook and put back after it.
pub(crate) fn serve(frame: &mut TrampolineFrame) {
    let masked = irq::local_irq_save();
    let (sp, bp) = (frame.interrupted_sp(), frame.rbp as usize);
    let Some(hooks) = percpu::hooks() else {
        crate::cpu::die("BUG: a redirected return on a thread with no kernel: its return address is lost");
    };
    frame.ret = (hooks.rt_return)(sp, bp, masked) as u64;
    irq::local_irq_restore(masked);
}
