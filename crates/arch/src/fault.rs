//! Faults in kernel code (`SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE`, a foreign `SIGTRAP`): the
//! exception entry that lets the core kill one task instead of the process.
//!
//! **Mechanism.** The handler runs on the CPU's alternate stack. On a CPU thread it hands the
//! core a [`Fault`]: the signal and address, every register of the faulting context, whether
//! the address hit the guard page of the running task's stack, whether the CPU was in
//! interrupt context or had IRQs masked, and a backtrace of the task's own stack taken with
//! [`crate::unwind::backtrace`] (signal-safe: no allocation, no locks). The core's
//! `Hooks::fault` either keeps the fault for an oops and answers `true`, or stops the machine
//! (a kernel panic: it never returns), or answers `false`. For `true`, the handler does not
//! unwind anything: it rewrites the saved context so that `sigreturn` enters
//! `atomkernel_oops_exit` at the top of the task's own stack, with a zero return address
//! (the outermost frame) and `rbp = 0`, where the core's `Hooks::oops_exit` ends the task in
//! task context. The frames below, the faulting function's and its callers', are abandoned,
//! never returned to and never unwound, so no code runs in a half-done frame and no unwinder
//! crosses the signal frame. For `false` (and on threads that are not CPUs) it prints one
//! `BUG:` line and returns with the default action set, so the fault kills the process.
//!
//! **Invariant.** A task is redirected only when its context owns a stack (never the idle
//! task, whose stack is the CPU thread's) and the core said so; the kernel restores the
//! pre-signal mask at `sigreturn`, so the task's last code runs with the signals it had.

use crate::cpu::FixedBuf;
use crate::percpu;
use crate::unwind::{self, Frame};
pub use arch_api::{Fault, Regs, GP_NAMES, TRACE_DEPTH};
use std::fmt::Write as _;

/// `si_code` of an integer divide by zero (Linux's `FPE_INTDIV`).
const FPE_INTDIV: i32 = 1;

/// The registers and the backtrace of the caller, for a report made in task context (a Rust
/// panic) or inside an interrupt handler (the handler's frames on the IRQ stack): `rip`, `rsp`
/// and `rbp` are the caller's at the call, the other registers are not captured (zero).
/// Signal-safe.
#[inline(never)]
pub fn capture_here(trace: &mut [usize]) -> (Regs, usize) {
    let (ip, sp, bp): (usize, usize, usize);
    // SAFETY: reads three registers into outputs; touches no memory, changes no flags.
    unsafe {
        std::arch::asm!("lea {ip}, [rip]", "mov {sp}, rsp", "mov {bp}, rbp", ip = out(reg) ip, sp = out(reg) sp, bp = out(reg) bp, options(nomem, nostack, preserves_flags))
    };
    let mut regs = Regs { rip: ip as u64, rsp: sp as u64, ..Regs::default() };
    regs.gp[6] = bp as u64;
    let stack = irq_stack_holding(sp).or_else(crate::redirect::current_stack);
    let depth = stack.map_or(0, |stack| unwind::backtrace(Frame::interrupted(ip, sp, bp), stack, trace));
    (regs, depth)
}

/// The bounds of this thread's alternate signal stack (the CPU's IRQ stack) if `sp` is on it:
/// a report taken inside an interrupt handler walks the handler's own frames there.
fn irq_stack_holding(sp: usize) -> Option<(usize, usize)> {
    // SAFETY: a zeroed stack_t is a valid out-parameter; a null new stack only queries.
    let mut ss: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigaltstack writes only `ss`.
    if unsafe { libc::sigaltstack(std::ptr::null(), &mut ss) } != 0 || ss.ss_flags & libc::SS_ONSTACK == 0 {
        return None;
    }
    let (lo, hi) = (ss.ss_sp as usize, ss.ss_sp as usize + ss.ss_size);
    (lo..hi).contains(&sp).then_some((lo, hi))
}

pub(crate) extern "C" fn fault_signal_handler(sig: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // SAFETY: errno is thread-local; the core's hook may make system calls.
    let saved_errno = unsafe { *libc::__errno_location() };
    // SAFETY: valid pointers from the kernel for an SA_SIGINFO handler, used only until it
    // returns.
    let (info, uc) = unsafe { (&*info, &mut *(uc as *mut libc::ucontext_t)) };
    if !take_fault(sig, info, uc) {
        unhandled(sig, info, uc);
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved_errno };
}

fn regs_from_gregs(g: &[libc::greg_t; 23]) -> Regs {
    use libc::*;
    let r = |i: c_int| g[i as usize] as u64;
    Regs {
        rip: r(REG_RIP),
        rsp: r(REG_RSP),
        rflags: r(REG_EFL),
        gp: [
            r(REG_RAX),
            r(REG_RBX),
            r(REG_RCX),
            r(REG_RDX),
            r(REG_RSI),
            r(REG_RDI),
            r(REG_RBP),
            r(REG_R8),
            r(REG_R9),
            r(REG_R10),
            r(REG_R11),
            r(REG_R12),
            r(REG_R13),
            r(REG_R14),
            r(REG_R15),
        ],
    }
}

/// A short name of the fault signal `sig` with `code` at `addr`, as Linux's oops headers say it.
fn fault_name(sig: i32, code: i32, addr: usize, stack_overflow: bool) -> &'static str {
    match sig {
        _ if stack_overflow => "kernel stack overflow (guard page hit)",
        libc::SIGSEGV if addr < 4096 => "kernel NULL pointer dereference",
        libc::SIGSEGV => "unable to handle page fault",
        libc::SIGBUS => "bus error",
        libc::SIGILL => "invalid opcode",
        libc::SIGFPE if code == FPE_INTDIV => "divide error",
        libc::SIGFPE => "floating-point exception",
        libc::SIGTRAP => "int3 (a breakpoint that is not a preemption point's)",
        _ => "fault",
    }
}

fn current_ctx() -> Option<&'static crate::switch::TaskContext> {
    let cur = percpu::with(|l| l.current.get());
    // SAFETY: `current` points to the running TaskContext, which its owner keeps alive while
    // it runs (TaskContext's Drop refuses to free a running context); the reference is used
    // only inside this handler.
    (!cur.is_null()).then(|| unsafe { &*cur })
}

/// Offers the fault to the core; on `true`, sends the task to `atomkernel_oops_exit`.
fn take_fault(sig: libc::c_int, info: &libc::siginfo_t, uc: &mut libc::ucontext_t) -> bool {
    let Some(hooks) = percpu::hooks() else { return false };
    // SAFETY: for the fault signals the kernel fills si_addr.
    let addr = unsafe { info.si_addr() } as usize;
    let gregs = &mut uc.uc_mcontext.gregs;
    let regs = regs_from_gregs(gregs);
    let ctx = current_ctx();
    let stack = ctx.and_then(|c| c.stack_bounds());
    let stack_overflow = ctx.is_some_and(|c| c.guard_contains(addr));
    let mut source = FixedBuf::new();
    let _ = write!(source, "signal {sig}, code {}", info.si_code);
    let mut fault = Fault {
        what: fault_name(sig, info.si_code, addr, stack_overflow),
        source,
        addr,
        regs,
        stack_overflow,
        in_irq: percpu::in_irq(),
        irqs_masked: percpu::irqs_masked(),
        stack,
        trace: [0; TRACE_DEPTH],
        depth: 0,
    };
    if let Some(s) = stack {
        let from = Frame::interrupted(regs.rip as usize, regs.rsp as usize, regs.rbp() as usize);
        fault.depth = unwind::backtrace(from, s, &mut fault.trace);
    }
    // The core is told of every fault, a task's or not: one in an interrupt that landed in the
    // idle task (which has no stack of its own here) is as fatal as any other there.
    if !(hooks.fault)(&fault) {
        return false;
    }
    let Some((_, hi)) = stack else { return false };
    let sp = hi - 8; // as if called: a zero return address ends every walk here
                     // SAFETY: [hi - 8, hi) is the top word of the running task's own mapped stack, whose
                     // frames the task will never return to (it dies in `atomkernel_oops_exit`).
    unsafe { (sp as *mut u64).write(0) };
    gregs[libc::REG_RSP as usize] = sp as i64;
    gregs[libc::REG_RBP as usize] = 0;
    gregs[libc::REG_RIP as usize] = atomkernel_oops_exit as *const () as usize as i64;
    gregs[libc::REG_EFL as usize] &= !(1 << 10); // DF clear, as the ABI wants on entry
    true
}

/// Where a task killed by a fault resumes, at the top of its own stack, in task context.
#[no_mangle]
extern "C" fn atomkernel_oops_exit() -> ! {
    match percpu::hooks() {
        Some(h) => (h.oops_exit)(),
        None => crate::cpu::die("BUG: a task killed by a fault on a thread with no kernel"),
    }
}

/// A fault nobody contains: one line, then the default action kills the process.
fn unhandled(sig: libc::c_int, info: &libc::siginfo_t, uc: &libc::ucontext_t) {
    // SAFETY: for the fault signals the kernel fills si_addr.
    let addr = unsafe { info.si_addr() } as usize;
    let ip = uc.uc_mcontext.gregs[libc::REG_RIP as usize] as usize;
    let mut msg = FixedBuf::<512>::new();
    let overflow = current_ctx().filter(|c| c.guard_contains(addr));
    match overflow {
        Some(ctx) => {
            let (lo, hi) = ctx.stack_bounds().unwrap_or((0, 0));
            let _ = writeln!(
                msg,
                "BUG: kernel stack overflow in task '{}': access at {addr:#x} hit the guard page \
                 below its stack {lo:#x}..{hi:#x} (ip {ip:#x}); raise the task's stack size",
                ctx.name()
            );
        }
        None => {
            let _ = writeln!(msg, "BUG: unable to handle fault (signal {sig}) at address {addr:#x}, ip {ip:#x}");
        }
    }
    crate::cpu::console_write(2, msg.as_bytes());
    // SAFETY: resetting to the default action and returning re-executes the faulting
    // instruction, which now kills the process with the original signal (and a core dump).
    unsafe { libc::signal(sig, libc::SIG_DFL) };
}
