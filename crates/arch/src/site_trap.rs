//! A fired `int3` site: the SIGTRAP of a preemption point armed as a breakpoint, served as the
//! `call` the site stands for.
//!
//! **Mechanism.** A site's `asm!` block declares the C ABI's caller-saved registers and the
//! flags clobbered and is not `nostack` (see [`crate::ppoint`]): where a site executes, the
//! compiler keeps nothing it needs in those registers, `rsp` is 16-byte aligned, and the word
//! below `rsp` is free, exactly what the site's `call rt_reschedule` form relies on. The SIGTRAP
//! handler steps over the site (`rip` = site + 5) and asks the core's `Hooks::point_trap`.
//! When the answer is [`IrqExit::Preempt`] it rewrites the saved context as that `call` would
//! have left it: site + 5 pushed at `rsp - 8` and `rip` = [`site_trap_served`], an ordinary
//! `extern "C"` function that calls `Hooks::preempt_schedule_irq` and then clears the soft
//! mask, replaying what arrived meanwhile. `sigreturn` then "calls" it, and its `ret` resumes
//! the task after the site with every callee-saved register intact.
//!
//! Stacks drawn, at `sigreturn` (the task's stack, growing down):
//!
//! ```text
//!   interrupted rsp  ->  | caller's frame ...     |   rsp at the site: 16-byte aligned
//!   rsp - 8          ->  | site + 5               |   the pushed "return address"
//!                        v site_trap_served's frame, then the scheduler's
//! ```
//!
//! against the full preemption trampoline an arbitrary interrupted instruction needs
//! (`crate::entry`): the red-zone gap, every general register and the flags, and the XSAVE
//! area, about 3 KB more stack and an XSAVE/XRSTOR pair per preemption.
//!
//! **Invariant.** The call form is injected only for a [`crate::patch::Trap::Fired`] site, whose
//! `rip` is a site's first byte + 1, with the interrupted `rsp` on the running task's own stack.
//! Anywhere else (an interrupt that lands on an arbitrary instruction) only the full trampoline
//! preserves the interrupted state.

use crate::entry::{on_task_stack, IrqExit, IrqFrame};
use crate::{irq, percpu};

/// The SIGTRAP handler: a site's `int3`, or a fault for [`crate::fault`].
pub(crate) extern "C" fn trap_signal_handler(sig: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // SAFETY: errno is thread-local (see `entry::irq_signal_handler`).
    let saved_errno = unsafe { *libc::__errno_location() };
    // SAFETY: a valid ucontext from the kernel for an SA_SIGINFO handler, used only until it
    // returns.
    let gregs = unsafe { &mut (*(uc as *mut libc::ucontext_t)).uc_mcontext.gregs };
    if !take_trap(gregs) {
        crate::fault::fault_signal_handler(sig, info, uc);
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved_errno };
}

/// SIGTRAP: a site's `int3`. A stale one re-executes the site; an armed one is the point
/// firing (preempt=patch-int3): the site is stepped over (its idle form does nothing the
/// interrupted code needs) and the core's `point_trap` hook decides, as an interrupt exit does,
/// whether the task calls `preempt_schedule_irq` now. Returns false if the trap is not ours.
fn take_trap(gregs: &mut [libc::greg_t; 23]) -> bool {
    let rip = gregs[libc::REG_RIP as usize] as usize;
    let site = match crate::patch::classify_trap(rip) {
        crate::patch::Trap::Foreign => return false,
        crate::patch::Trap::Stale => {
            gregs[libc::REG_RIP as usize] = (rip - 1) as i64;
            return true;
        }
        crate::patch::Trap::Fired(site) => site,
    };
    gregs[libc::REG_RIP as usize] = (site + 5) as i64;
    let hooks = percpu::hooks();
    let Some(hooks) = hooks.filter(|_| percpu::is_cpu_thread()) else { return true };
    if percpu::replace_irqs_masked(true) {
        return true; // IRQs off: the point cannot act; the site stays armed for the next one
    }
    let frame = IrqFrame {
        ip: site + 5,
        sp: gregs[libc::REG_RSP as usize] as usize,
        bp: gregs[libc::REG_RBP as usize] as usize,
        replayed: false,
        exiting: false,
    };
    if (hooks.point_trap)(site, &frame) == IrqExit::Preempt && inject_site_call(gregs, &frame) {
        return true; // the mask stays set: site_trap_served clears it after scheduling
    }
    percpu::set_irqs_masked(false);
    true
}

/// Rewrites the saved context as the site's `call` form would have left it: the return address
/// (`frame.ip`, site + 5) pushed, `rip` at [`site_trap_served`].
fn inject_site_call(gregs: &mut [libc::greg_t; 23], frame: &IrqFrame) -> bool {
    if !on_task_stack(frame.sp) {
        return false;
    }
    let new_sp = frame.sp - 8;
    // SAFETY: a site is not `nostack`, so the word below its `rsp` is free for a call's return
    // address (the `call` form pushes there too); `frame.sp` is on the running task's own stack
    // (checked above), and if that stack is exhausted the write hits the guard page and is
    // reported as an overflow.
    unsafe { (new_sp as *mut u64).write(frame.ip as u64) };
    gregs[libc::REG_RSP as usize] = new_sp as i64;
    gregs[libc::REG_RIP as usize] = site_trap_served as *const () as usize as i64;
    true
}

/// Entered from a fired `int3` site as if the site had called it, with the soft mask set:
/// `preempt_schedule_irq`, then the mask cleared with replay, then back to site + 5.
extern "C" fn site_trap_served() {
    if let Some(hooks) = percpu::hooks() {
        (hooks.preempt_schedule_irq)();
    }
    irq::local_irq_enable();
}
