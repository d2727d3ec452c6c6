//! Faults in kernel code on bare metal (`#DE`, `#UD`, `#SS`, `#GP`, `#PF`, `#MF`, `#AC`,
//! `#XM`): the exception entry that lets the core kill one task instead of the machine.
//!
//! **Mechanism.** `crate::idt`'s `metal_exception` hands these vectors to [`take`] with the
//! frame on the IST stack. [`take`] builds the core's [`Fault`] from it: the vector and error
//! code, the address (CR2 for `#PF`, else RIP), every general register, whether CR2 is in the
//! guard page below the running task's stack (a stack overflow), whether the CPU was in
//! interrupt context, whether the interrupted code had IF clear, the task's stack bounds, and
//! a backtrace of the task's own stack from the real frame ([`crate::unwind::backtrace`]).
//!
//! - **A task's fault** (the CPU's hooks registered, the running context owns a stack, the
//!   frame's RSP on that stack or its guard page, the in-IRQ flag clear): the frame is rewritten
//!   so that the `iretq` enters `metal_fault_exit` at the top of the task's own stack, with
//!   the record copied just below the top, a zero return address above the entry's `rsp`
//!   (the outermost frame) and `rbp = 0`; RFLAGS keeps the interrupted IF and has DF, TF and
//!   AC clear. There, in task context with the task's own IF and on its own stack (never on
//!   the shared IST stack, where a nested interrupt would land on the live frame), it puts a
//!   clean vector state (`fninit`, MXCSR 0x1F80) and calls the core's `Hooks::fault`, which
//!   reads the IRQ state as the task had it, as the hosted arch's signal handler does. On true
//!   it calls `Hooks::oops_exit`, which ends the task; the faulting frames below are
//!   abandoned, never returned to and never unwound (`panic=abort`).
//! - **Anything else with hooks** (a fault in an interrupt handler, in another exception's
//!   handler on an IST stack, in the idle task): the report goes to the console at once
//!   ([`crate::idt::report`], headed `fault in interrupt context` or `fault in the idle
//!   task`), the in-IRQ flag is set when the RSP is off the task's stack, and the core's
//!   `Hooks::fault` is called on the IST stack with IF clear: it panics ("Fatal exception in
//!   interrupt", "Attempted to kill the idle task!"), which ends the machine with status PANIC.
//! - **No hooks** (the boot, the self-test) or a core that declines: [`take`] returns false
//!   and the caller reports `EXCEPTION` and exits; so does a second fault while the core
//!   decides on one outside a task.
//!
//! A task that faults again while the core decides on its first fault (the top word of its
//! stack still holds the mark `redirect` set) is not redirected again: `EXCEPTION`.
//!
//! **Invariant.** Only a context that owns a stack, whose RSP was on it, is redirected; the
//! redirected `iretq` goes to the task's own stack, never below an IST frame; the decision
//! runs with the interrupted IF, so a fault with IRQs masked is the core's panic, as on the
//! host.

use crate::idt::ExceptionFrame;
use crate::{cpu, percpu, switch, unwind};
use arch_api::{Fault, FixedBuf, Frame, Hooks, Regs, TRACE_DEPTH};
use core::fmt::Write as _;
use core::sync::atomic::{AtomicBool, Ordering};

/// The vectors offered to the core: those the hosted arch's signals stand for (`SIGFPE`:
/// `#DE`, `#MF`, `#XM`; `SIGILL`: `#UD`; `SIGSEGV`: `#GP`, `#PF`; `SIGBUS`: `#SS`, `#AC`).
pub const FAULT_VECTORS: [u64; 8] = [0, 6, 12, 13, 14, 16, 17, 19];

/// The guard page below each task stack (`crate::stack`).
const GUARD: usize = 4096;
/// RFLAGS bits: IF, DF, TF, AC.
const IF: u64 = 1 << 9;
const CLEARED_FLAGS: u64 = (1 << 8) | (1 << 10) | (1 << 18);

/// Set while the core decides on a fault outside a task: a second one is reported and ends
/// the machine at once.
static DECIDING: AtomicBool = AtomicBool::new(false);

/// Where the fault happened, as far as the decision goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Place {
    /// In a task, on its own stack: the core may kill it.
    Task,
    /// In an interrupt handler or another exception's (the in-IRQ flag, or an RSP off the
    /// task's stack).
    Interrupt,
    /// In a context with no stack of its own (the idle task, the boot).
    Idle,
}

/// A short name of the fault, as Linux's oops headers say it.
fn fault_name(vector: u64, addr: usize, stack_overflow: bool) -> &'static str {
    match vector {
        _ if stack_overflow => "kernel stack overflow (guard page hit)",
        14 if addr < 4096 => "kernel NULL pointer dereference",
        14 => "unable to handle page fault",
        0 => "divide error",
        6 => "invalid opcode",
        12 => "stack segment fault",
        13 => "general protection fault",
        16 => "coprocessor error",
        17 => "alignment check",
        19 => "SIMD floating-point exception",
        _ => "fault",
    }
}

fn regs_of(f: &ExceptionFrame) -> Regs {
    Regs {
        rip: f.rip,
        rsp: f.rsp,
        rflags: f.rflags,
        gp: [f.rax, f.rbx, f.rcx, f.rdx, f.rsi, f.rdi, f.rbp, f.r8, f.r9, f.r10, f.r11, f.r12, f.r13, f.r14, f.r15],
    }
}

fn place_of(frame: &ExceptionFrame, stack: Option<(usize, usize)>) -> Place {
    match stack {
        None => Place::Idle,
        Some(_) if percpu::in_irq() => Place::Interrupt,
        Some((lo, hi)) if (lo.saturating_sub(GUARD)..hi).contains(&(frame.rsp as usize)) => Place::Task,
        Some(_) => Place::Interrupt,
    }
}

/// The core's record of the fault in `frame`.
fn record(frame: &ExceptionFrame, stack: Option<(usize, usize)>, place: Place) -> Fault {
    let addr = if frame.vector == 14 { cpu::cr2() as usize } else { frame.rip as usize };
    let stack_overflow =
        frame.vector == 14 && stack.is_some_and(|(lo, _)| (lo.saturating_sub(GUARD)..lo).contains(&addr));
    let mut source = FixedBuf::new();
    let _ = write!(
        source,
        "vector {} ({}), error {:#x}",
        frame.vector,
        crate::idt::exception_name(frame.vector),
        frame.error
    );
    let mut fault = Fault {
        what: fault_name(frame.vector, addr, stack_overflow),
        source,
        addr,
        regs: regs_of(frame),
        stack_overflow,
        in_irq: place == Place::Interrupt,
        irqs_masked: frame.rflags & IF == 0,
        stack,
        trace: [0; TRACE_DEPTH],
        depth: 0,
    };
    if let (Some(s), Place::Task) = (stack, place) {
        let from = Frame::interrupted(frame.rip as usize, frame.rsp as usize, frame.rbp as usize);
        fault.depth = unwind::backtrace(from, s, &mut fault.trace);
    }
    fault
}

/// Offers the fault in `frame` (one of [`FAULT_VECTORS`]) to the core. True: the frame now
/// returns to `metal_fault_exit` on the task's stack. False: nobody took it (no hooks, or
/// the core declined); the caller reports it and exits. A fault outside a task is the core's
/// panic and does not return.
pub fn take(frame: &mut ExceptionFrame) -> bool {
    let Some(hooks) = percpu::this().hooks.get() else { return false };
    let stack = switch::current_stack();
    let place = place_of(frame, stack);
    let fault = record(frame, stack, place);
    match (place, stack) {
        (Place::Task, Some((_, hi))) => {
            let redirected = redirect(frame, &fault, hi);
            if !redirected {
                let name = switch::current_name();
                let name = core::str::from_utf8(name.as_bytes()).unwrap_or("?");
                crate::kprintln!("fault: task '{name}' faulted again while the kernel decided on its first fault");
            }
            redirected
        }
        _ if DECIDING.swap(true, Ordering::AcqRel) => false, // a fault while the core decides
        _ => {
            let what = if place == Place::Idle { "fault in the idle task" } else { "fault in interrupt context" };
            crate::idt::report(frame, what);
            crate::kprintln!(
                "  the core decides: {} ({})",
                fault.what,
                core::str::from_utf8(fault.source.as_bytes()).unwrap_or("?")
            );
            let was = percpu::replace_in_irq(percpu::in_irq() || place == Place::Interrupt);
            // The core panics here (it kills tasks only); it answers at all only when this
            // CPU runs no kernel, and either answer leaves the fault to the caller.
            (hooks.fault)(&fault);
            percpu::replace_in_irq(was);
            DECIDING.store(false, Ordering::Release);
            false
        }
    }
}

/// Marks, in the top word of a task's stack, that the core is deciding on a fault of that
/// task (set by [`redirect`], cleared by [`metal_fault_exit`] when the core has answered).
const DECIDING_MARK: u64 = 0x6f6f_7073_2d66_6175; // "oops-fau"

/// Rewrites `frame` so that its `iretq` enters [`metal_fault_exit`] with `fault` at the top
/// of the task's stack (`hi` its top). False, and nothing rewritten, if the task faulted
/// again while the core was deciding on its first fault (the top word holds the mark): the
/// caller reports that and ends the machine, where redirecting again would loop.
fn redirect(frame: &mut ExceptionFrame, fault: &Fault, hi: usize) -> bool {
    let mark = (hi - 8) as *mut u64;
    let rec = (hi - 8 - size_of::<Fault>()) & !15;
    // As if called: a zero return address at `sp`, and rsp % 16 == 8 at a function's entry.
    let sp = rec - 8;
    // SAFETY: [sp, hi) is the top of the running task's own mapped stack (its RSP was on that
    // stack, below it); the task never returns to the frames there: it resumes at
    // `metal_fault_exit` with `rsp = sp` and dies there.
    unsafe {
        if mark.read() == DECIDING_MARK {
            return false;
        }
        mark.write(DECIDING_MARK);
        (rec as *mut Fault).write(*fault);
        (sp as *mut u64).write(0); // the outermost frame: a zero return address ends every walk
    }
    frame.rip = metal_fault_exit as *const () as u64;
    frame.rsp = sp as u64;
    frame.rbp = 0;
    frame.rdi = rec as u64;
    frame.rsi = mark as u64;
    frame.rflags &= !CLEARED_FLAGS;
    true
}

/// Where a task's fault resumes: task context, the top of its own stack, its IF as it had it
/// (see the module's description). Never returns.
extern "C" fn metal_fault_exit(rec: *const Fault, mark: *mut u64) -> ! {
    // SAFETY: a clean vector state for the code that ends the task: the x87 unit reset and
    // MXCSR at its power-up value (every exception masked), whatever the task left.
    unsafe {
        core::arch::asm!(
            "fninit",        // the x87 state reset
            "push 0x1f80",   // MXCSR's default value
            "ldmxcsr [rsp]", // loaded
            "add rsp, 8",    // and popped
            options(preserves_flags),
        )
    };
    // SAFETY: `redirect` wrote the record at `rec`, above this frame at the top of this
    // task's stack, where nothing else writes; it is copied out before anything is called.
    let fault = unsafe { *rec };
    let hooks: Option<&'static Hooks> = percpu::this().hooks.get();
    let taken = hooks.is_some_and(|h| (h.fault)(&fault));
    // SAFETY: `mark` is the top word of this task's stack, where `redirect` set the mark.
    unsafe { mark.write(0) };
    if let (true, Some(h)) = (taken, hooks) {
        (h.oops_exit)()
    }
    crate::kprintln!(
        "EXCEPTION: {} at {:#x} ({}) rip {:#x} rsp {:#x}: not taken by the kernel",
        fault.what,
        fault.addr,
        core::str::from_utf8(fault.source.as_bytes()).unwrap_or("?"),
        fault.regs.rip,
        fault.regs.rsp
    );
    crate::serial::exit(crate::exit_codes::EXCEPTION)
}
