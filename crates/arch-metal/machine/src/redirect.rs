//! Return-address redirection on bare metal: making an interrupted function's `ret` reach the
//! kernel core (the patch models' cover for paths that return before a point).
//!
//! **Mechanism.** The core finds, with the unwinder, the stack slot holding the interrupted
//! function's return address and [`redirect_return`] swaps in `metal_rt_return`. When the
//! function returns there, `rsp` is the caller's. The stub steps below the caller's 128-byte
//! red zone, pushes a 0 (the slot the original return address will go into), the flags and
//! the nine registers the C ABI does not preserve across a call (`rax` and `rdx` may hold the
//! returned value), `rbp`, and the x87/SSE state (`fxsave64`: `xmm0`/`xmm1` may hold a
//! returned value; nothing the compiler emits keeps the upper halves of `ymm` live across a
//! return). Then, IF clear, it calls the core's `Hooks::rt_return(caller_sp, caller_rbp)`,
//! which may schedule (`preempt_schedule_irq`) and returns the original return address; the
//! stub writes it into the slot, restores everything (`popfq` puts IF back) and `ret 128`
//! lands on the original return address with the caller's `rsp`:
//!
//! ```text
//!   caller's rsp S  ->  +---------------------------+
//!                       | gap: S-128 .. S (red zone) |
//!                       | slot: 0, then the original | S - 136  (ret 128 pops it)
//!                       | rflags                     | S - 144
//!                       | rax rcx rdx rsi rdi        |
//!                       | r8 r9 r10 r11              | S - 216 .. S - 152
//!   rbp             ->  | rbp                        | S - 224
//!                       | FXSAVE area (512, 64-aligned)
//! ```
//!
//! **Unwinding.** The stub's CFI says the return address is undefined (`.cfi_undefined rip`:
//! the original is in the core's bookkeeping until the hook returns), so a walk that reaches
//! the stub ends there, as at a task's outermost frame, instead of reading the 0.
//!
//! **Invariant.** A slot is redirected only inside the running task's stack, only if the word
//! there follows a `call` in a known function and is not the stub already; it is restored only
//! if it still holds the stub. The core restores every redirect before another task runs.

use crate::{percpu, switch};

core::arch::global_asm!(
    ".section .text.metal_rt_return, \"ax\"", // its own text section (kept: the core points returns here)
    ".global metal_rt_return",                 // visible to Rust (`target`)
    ".type metal_rt_return, @function",        // a function symbol (its FDE and size)
    "metal_rt_return:",              // a redirected `ret` lands here: rsp = the caller's rsp S
    ".cfi_startproc",                // CFI for the walk that meets the stub
    ".cfi_def_cfa rsp, 0",           //   CFA = S
    ".cfi_undefined rip",            //   the original return address is not on the stack
    "lea rsp, [rsp - 128]",          // below the caller's red zone (lea: the flags stay)
    "push 0",                        // the slot the original return address goes into
    "pushfq",                        // the flags as the function returned them (IF among them)
    "push rax",                      // the returned value
    "push rcx",                      // the C ABI's other caller-saved registers ...
    "push rdx",                      //   (rdx: the returned value's second half)
    "push rsi",                      //   ...
    "push rdi",                      //   ...
    "push r8",                       //   ...
    "push r9",                       //   ...
    "push r10",                      //   ...
    "push r11",                      //   ... all nine
    "push rbp",                      // the caller's rbp (callee-saved: the function restored it)
    "mov rbp, rsp",                  // rbp = S - 224: the frame's base
    ".cfi_def_cfa rbp, 224",         //   CFA = rbp + 224 = S
    "call metal_stamp_return",       // the served point's stamp (crate::account; rax, rdx saved)
    "sub rsp, 512",                  // room for the FXSAVE area
    "and rsp, -64",                  // 64-byte aligned (FXSAVE needs 16; the call needs 16)
    "fxsave64 [rsp]",                // x87, MXCSR, xmm0-15 (a returned float in xmm0/xmm1)
    "cli",                           // the hook runs with IF clear (it may schedule)
    "lea rdi, [rbp + 224]",          // first argument: S, the caller's rsp
    "mov rsi, [rbp]",                // second argument: the caller's rbp
    "mov rdx, [rbp + 80]",           // third: the flags the function returned with (IF)
    "call {body}",                   // the core's rt_return: rax = the original return address
    "mov [rbp + 88], rax",           // into the slot (S - 136)
    "fxrstor64 [rsp]",               // the vector state back
    "mov rsp, rbp",                  // drop the FXSAVE area
    "pop rbp",                       // the caller's rbp
    "pop r11",                       // the caller-saved registers, in reverse ...
    "pop r10",                       //   ...
    "pop r9",                        //   ...
    "pop r8",                        //   ...
    "pop rdi",                       //   ...
    "pop rsi",                       //   ...
    "pop rdx",                       //   ...
    "pop rcx",                       //   ...
    "pop rax",                       //   ... the returned value last
    "popfq",                         // the flags, IF as the function left it
    "ret 128",                       // to the original return address; rsp = S
    ".cfi_endproc",                  // end of the stub's CFI
    ".size metal_rt_return, . - metal_rt_return", // the symbol's size
    body = sym rt_return_body,
);

extern "C" {
    fn metal_rt_return();
}

/// RFLAGS' interrupt flag.
const RFLAGS_IF: usize = 1 << 9;

/// The stub's call into the core: the original return address (the core may schedule first).
/// `flags`: RFLAGS as the function returned (IF clear: an IRQ-off section goes on).
extern "C" fn rt_return_body(sp: usize, bp: usize, flags: usize) -> usize {
    let Some(hooks) = percpu::this().hooks.get() else {
        <crate::Metal as arch_api::Arch>::die(
            "BUG: a redirected return on a CPU with no kernel: its return address is lost",
        );
    };
    (hooks.rt_return)(sp, bp, flags & RFLAGS_IF == 0)
}

/// The address a redirected return address points at.
pub fn target() -> usize {
    metal_rt_return as *const () as usize
}

fn slot_ok(slot: usize) -> bool {
    switch::current_stack().is_some_and(|(lo, hi)| slot.is_multiple_of(8) && slot >= lo && slot + 8 <= hi)
}

/// True if the code just before `ra` is a `call` of any encoding
/// (`arch_api::unwind::follows_call`) inside one known function: a last check that the
/// unwinder found a return address.
fn after_call(ra: usize) -> bool {
    let Some((lo, _)) = crate::unwind::function_of(ra.wrapping_sub(1)) else { return false };
    let start = ra.saturating_sub(arch_api::unwind::CALL_MAX).max(lo);
    crate::text::bytes(start, ra).is_some_and(arch_api::unwind::follows_call)
}

/// Points the return address at `slot` at the stub; returns the original (`None`: nothing
/// written).
pub fn redirect_return(slot: usize) -> Option<usize> {
    if !slot_ok(slot) {
        return None;
    }
    let p = slot as *mut usize;
    // SAFETY: `slot` is an aligned word inside the running task's mapped stack (checked).
    let orig = unsafe { p.read_volatile() };
    if orig == target() || !after_call(orig) {
        return None;
    }
    // SAFETY: as above.
    unsafe { p.write_volatile(target()) };
    Some(orig)
}

/// The word a redirected `ret` popped (`sp - 8`, `sp` the caller's) if a disarm put a return
/// address back there after the `ret` (`Arch::restored_return`).
pub fn restored_return(sp: usize) -> Option<usize> {
    let slot = sp.checked_sub(8).filter(|&s| slot_ok(s))?;
    // SAFETY: `slot` is an aligned word inside the running task's mapped stack (checked).
    let ra = unsafe { (slot as *const usize).read_volatile() };
    (ra != target() && after_call(ra)).then_some(ra)
}

/// Puts `orig` back at `slot` if it still holds the stub; returns whether it did.
pub fn restore_return(slot: usize, orig: usize) -> bool {
    if !slot_ok(slot) {
        return false;
    }
    let p = slot as *mut usize;
    // SAFETY: as in `redirect_return`.
    unsafe {
        if p.read_volatile() != target() {
            return false;
        }
        p.write_volatile(orig);
    }
    true
}
