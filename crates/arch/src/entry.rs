//! Interrupt entry and exit: host signals in, preemption by context injection out.
//!
//! **Entry.** [`irq::sig_irq`] is taken on the CPU's alternate signal stack (its "IRQ stack").
//! If the soft mask is set, the lines are recorded as pending and the handler returns. Otherwise
//! it sets the mask (as an interrupt gate clears `IF`), calls the core's `Hooks::irq`, and looks
//! at the answer.
//!
//! **Exit with preemption.** To preempt, the handler does not switch stacks itself: it rewrites
//! the saved context so that, when the kernel's `sigreturn` restores the interrupted code, that
//! code "calls" [`atomkernel_preempt_trampoline`], leaving the soft mask set. The interrupted
//! code's red zone (the 128 bytes below its `rsp`, which leaf functions use without moving
//! `rsp`) is skipped. The interrupted task's stack then looks like this:
//!
//! ```text
//!   higher addresses
//!   +-----------------------------+ <- interrupted rsp
//!   | red zone (128 bytes, kept)  |
//!   +-----------------------------+
//!   | interrupted rip             | <- rsp on entry to the trampoline ("return address")
//!   +-----------------------------+
//!   | rflags, rax, rcx, rdx, rbx, |    pushed by the trampoline (16 words)
//!   | rbp, rsi, rdi, r8 .. r15    | <- rbx (kept across the call)
//!   +-----------------------------+
//!   | padding to 64 bytes         |
//!   | XSAVE area (x87, SSE, AVX,  |    every enabled state component but AMX tiles
//!   | AVX-512, ...)               | <- rsp at `call trampoline_body`, 64-byte aligned
//!   +-----------------------------+
//!   lower addresses
//! ```
//!
//! `trampoline_body` calls `Hooks::preempt_schedule_irq` (which switches away and, much later,
//! back), then clears the soft mask with replay. The trampoline restores everything and returns
//! with `ret 128`, which pops the interrupted rip and releases the red-zone gap, so the
//! interrupted code resumes with every register, flag and vector register as it left them.
//!
//! **Faults.** `SIGSEGV` and `SIGBUS` are taken on the same alternate stack; a fault in the
//! guard page of the running task's stack is reported as a kernel stack overflow naming the
//! task, any other fault as an unhandled page fault; then the default action kills the process.

use crate::cpu::FixedBuf;
use crate::{irq, percpu, text};
use std::arch::global_asm;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Once;

/// What the core wants done when an interrupt returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqExit {
    /// Return to the interrupted code.
    Resume,
    /// Call `preempt_schedule_irq` before returning to the interrupted code.
    Preempt,
}

/// Where an interrupt found the CPU.
#[derive(Clone, Copy, Debug)]
pub struct IrqFrame {
    /// The interrupted instruction pointer (0 for a replayed interrupt).
    pub ip: usize,
    /// The interrupted stack pointer (0 for a replayed interrupt).
    pub sp: usize,
    /// The interrupted frame pointer register `rbp` (0 for a replayed interrupt).
    pub bp: usize,
    /// True when the interrupt is replayed by `local_irq_enable` in task context rather than
    /// taken from a signal: the "interrupted" code is then the enable call itself.
    pub replayed: bool,
}

impl IrqFrame {
    pub(crate) fn replayed() -> Self {
        IrqFrame { ip: 0, sp: 0, bp: 0, replayed: true }
    }

    /// True if the interrupted code is the program's own code (kernel text), false for foreign
    /// code such as libc or the vDSO, where preemption must wait for the next safe point.
    pub fn in_kernel_text(&self) -> bool {
        self.replayed || text::contains(self.ip)
    }
}

/// Size in bytes of the XSAVE area the trampoline reserves (CPUID leaf 0xD, set at install).
#[no_mangle]
static mut ATOMKERNEL_XSAVE_SIZE: u64 = 0;
/// Requested-feature bitmap for XSAVE/XRSTOR: XCR0 without the AMX tile components.
#[no_mangle]
static mut ATOMKERNEL_XSAVE_MASK: [u32; 2] = [0, 0];

global_asm!(
    ".pushsection .text.atomkernel_entry,\"ax\",@progbits",
    ".globl atomkernel_preempt_trampoline",
    ".type atomkernel_preempt_trampoline,@function",
    ".p2align 4",
    "atomkernel_preempt_trampoline:",
    "    pushfq",                        // flags first, before anything can change them
    "    push rax",                      // then every general register ...
    "    push rcx",
    "    push rdx",
    "    push rbx",
    "    push rbp",
    "    push rsi",
    "    push rdi",
    "    push r8",
    "    push r9",
    "    push r10",
    "    push r11",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",                      // ... 16 words pushed in all
    "    mov rbx, rsp",                  // rbx (callee-saved) remembers where they are
    "    sub rsp, qword ptr [rip + ATOMKERNEL_XSAVE_SIZE]", // room for the XSAVE area
    "    and rsp, -64",                  // XSAVE needs 64-byte alignment
    "    xor eax, eax",                  // the XSAVE header must be zero before the first
    "    mov qword ptr [rsp + 512], rax", // save, or XRSTOR faults on its reserved bytes
    "    mov qword ptr [rsp + 520], rax",
    "    mov qword ptr [rsp + 528], rax",
    "    mov qword ptr [rsp + 536], rax",
    "    mov qword ptr [rsp + 544], rax",
    "    mov qword ptr [rsp + 552], rax",
    "    mov qword ptr [rsp + 560], rax",
    "    mov qword ptr [rsp + 568], rax",
    "    mov eax, dword ptr [rip + ATOMKERNEL_XSAVE_MASK]",     // edx:eax = components
    "    mov edx, dword ptr [rip + ATOMKERNEL_XSAVE_MASK + 4]",
    "    xsave64 [rsp]",                 // save x87, MXCSR, SSE, AVX, AVX-512 state
    "    cld",                           // the ABI wants DF clear in Rust code
    "    mov rdi, rbx",                  // the body's argument: the saved registers
    "    call {body}",                   // schedule; returns when this task runs again
    "    mov eax, dword ptr [rip + ATOMKERNEL_XSAVE_MASK]",
    "    mov edx, dword ptr [rip + ATOMKERNEL_XSAVE_MASK + 4]",
    "    xrstor64 [rsp]",                // restore the vector state exactly
    "    mov rsp, rbx",                  // back to the saved general registers
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop r11",
    "    pop r10",
    "    pop r9",
    "    pop r8",
    "    pop rdi",
    "    pop rsi",
    "    pop rbp",
    "    pop rbx",
    "    pop rdx",
    "    pop rcx",
    "    pop rax",
    "    popfq",                         // flags last
    "    ret 128",                       // pop the interrupted rip, skip the red-zone gap
    ".size atomkernel_preempt_trampoline, . - atomkernel_preempt_trampoline",
    ".popsection",
    body = sym trampoline_body,
);

extern "C" {
    fn atomkernel_preempt_trampoline();
}

/// The Rust half of the trampoline, on the task's stack. `regs` points at the 16 saved words
/// (r15 first) with the return-address slot after them. An injected call (slot = the
/// interrupted rip) arrives with IRQs soft-masked and calls `preempt_schedule_irq`; a
/// redirected return (slot = 0, see [`crate::redirect`]) is served there.
extern "C" fn trampoline_body(regs: *mut u64) {
    // SAFETY: the trampoline passes the address of the 17 words it pushed or found on this
    // task's stack; they stay there until it pops them.
    let slot = unsafe { &mut *regs.add(crate::redirect::SLOT) };
    if *slot == 0 {
        // SAFETY: as above.
        unsafe { crate::redirect::serve(regs) };
        return;
    }
    if let Some(hooks) = percpu::with(|l| l.hooks.get()) {
        (hooks.preempt_schedule_irq)();
    }
    irq::local_irq_enable();
}

/// Runs the core's IRQ hook for `lines` with the mask set. For a replayed interrupt, a
/// `Preempt` answer is served at once by a direct call: the caller is task context already.
pub(crate) fn run_irq(lines: u64, frame: &IrqFrame) -> IrqExit {
    let Some(hooks) = percpu::with(|l| l.hooks.get()) else {
        return IrqExit::Resume;
    };
    // Save and restore rather than clear: a hard interrupt may nest in the softirq window of
    // `irq_exit_irqs_on`, and the outer handler is still interrupt context after it.
    let was_in_irq = percpu::with(|l| l.in_irq.replace(true));
    let was_in_signal = percpu::with(|l| l.in_signal.replace(!frame.replayed));
    let exit = (hooks.irq)(lines, frame);
    percpu::with(|l| {
        l.in_irq.set(was_in_irq);
        l.in_signal.set(was_in_signal);
    });
    if exit == IrqExit::Preempt && frame.replayed {
        (hooks.preempt_schedule_irq)();
    }
    exit
}

/// Runs `f` with IRQs on at the end of an interrupt, as Linux's `irq_exit` runs softirqs with
/// `IF` set: the soft mask is cleared (replaying what arrived while it was set) and, if the
/// interrupt came from the host signal (not a replay), the signal is unblocked for this thread
/// so that a hard interrupt can nest on the same alternate stack. Both are masked again before
/// it returns, the signal first, so a line raised at the end goes to the IRR and is delivered
/// after `sigreturn` rather than recorded as pending and left there. Costs two
/// `pthread_sigmask` calls from a signal handler; nothing from a replay or task context.
pub fn irq_exit_irqs_on(f: impl FnOnce()) {
    let in_signal = percpu::with(|l| l.in_signal.get());
    if in_signal {
        sigmask_irq(libc::SIG_UNBLOCK);
    }
    irq::local_irq_enable();
    f();
    if in_signal {
        sigmask_irq(libc::SIG_BLOCK);
    }
    irq::local_irq_disable();
}

fn sigmask_irq(how: libc::c_int) {
    // SAFETY: pthread_sigmask is async-signal-safe and only changes this thread's mask; the
    // set is a local value. The kernel restores the pre-signal mask at sigreturn anyway.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, irq::sig_irq());
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// Installs the process-wide signal handlers (once; every CPU thread of every kernel instance
/// shares them and is told apart by its per-CPU words).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        init_xsave();
        text::init();
        set_handler(irq::sig_irq(), irq_signal_handler);
        set_handler(libc::SIGSEGV, fault_signal_handler);
        set_handler(libc::SIGBUS, fault_signal_handler);
        set_handler(libc::SIGTRAP, trap_signal_handler);
    });
}

type SigAction = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

fn set_handler(sig: libc::c_int, handler: SigAction) {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler has the
    // SA_SIGINFO signature; sigemptyset/sigaddset only write the mask we own.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaddset(&mut sa.sa_mask, irq::sig_irq());
        let rc = libc::sigaction(sig, &sa, std::ptr::null_mut());
        assert_eq!(rc, 0, "sigaction({sig}) failed: {}", std::io::Error::last_os_error());
    }
}

fn init_xsave() {
    // SAFETY: CPUID is always available on x86-64; XGETBV(0) is valid when CPUID.1:ECX.OSXSAVE
    // (bit 27) is set, which is checked first.
    unsafe {
        use std::arch::x86_64::{__cpuid, __cpuid_count, _xgetbv};
        let osxsave = __cpuid(1).ecx & (1 << 27) != 0;
        assert!(osxsave, "atomkernel needs a CPU and OS with XSAVE (CPUID.1:ECX.OSXSAVE)");
        let xcr0 = _xgetbv(0) & !((1 << 17) | (1 << 18)); // leave AMX tiles to the host
        let size = __cpuid_count(0xd, 0).ebx as u64;
        ATOMKERNEL_XSAVE_SIZE = size.max(576);
        ATOMKERNEL_XSAVE_MASK = [xcr0 as u32, (xcr0 >> 32) as u32];
    }
}

extern "C" fn irq_signal_handler(_sig: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // SAFETY: errno is thread-local; the handler may call into libc (timers, write), so the
    // interrupted code's errno is saved and put back.
    let saved_errno = unsafe { *libc::__errno_location() };
    if percpu::is_cpu_thread() {
        // SAFETY: the kernel passes valid siginfo and ucontext pointers to an SA_SIGINFO
        // handler; they stay valid until the handler returns.
        unsafe { take_irq(&*info, &mut *(uc as *mut libc::ucontext_t)) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved_errno };
}

/// Decodes the lines a signal carries: a timer names its line in `si_value`, a `tgkill` means
/// "look in the IRR".
fn signal_lines(info: &libc::siginfo_t) -> u64 {
    let irr = irq::take_irr();
    if info.si_code == libc::SI_TIMER {
        // SAFETY: for SI_TIMER the kernel fills si_value with the timer's sigev_value.
        let line = unsafe { info.si_value().sival_ptr } as usize as u32;
        irr | (1u64 << (line & 63))
    } else {
        irr
    }
}

fn take_irq(info: &libc::siginfo_t, uc: &mut libc::ucontext_t) {
    let lines = signal_lines(info);
    if lines == 0 {
        return; // a doorbell whose lines an earlier signal already took
    }
    // Enter with the mask set, as an interrupt gate clears IF; if it was set already, the
    // interrupted code runs masked: only record the lines for its local_irq_enable.
    let was_masked = percpu::with(|l| {
        let was = l.irqs_masked.replace(true);
        if was {
            l.pending.fetch_or(lines, Ordering::Relaxed);
        }
        was
    });
    if was_masked {
        return;
    }
    let gregs = &mut uc.uc_mcontext.gregs;
    let frame = IrqFrame {
        ip: gregs[libc::REG_RIP as usize] as usize,
        sp: gregs[libc::REG_RSP as usize] as usize,
        bp: gregs[libc::REG_RBP as usize] as usize,
        replayed: false,
    };
    if run_irq(lines, &frame) == IrqExit::Preempt && inject_trampoline(gregs, &frame) {
        return; // the mask stays set: the trampoline clears it after scheduling
    }
    percpu::with(|l| l.irqs_masked.set(false));
}

/// Rewrites the saved context so the interrupted code calls the trampoline on return.
pub(crate) fn inject_trampoline(gregs: &mut [libc::greg_t; 23], frame: &IrqFrame) -> bool {
    let on_task_stack = percpu::with(|l| {
        let cur = l.current.get();
        // SAFETY: `current` points to the running TaskContext, which its owner keeps alive
        // while it runs (TaskContext's Drop refuses to free a running context).
        !cur.is_null() && unsafe { (*cur).stack_contains(frame.sp) }
    });
    if !on_task_stack {
        return false;
    }
    let new_sp = frame.sp - 128 - 8;
    // SAFETY: `new_sp` lies below the interrupted rsp on the interrupted task's own stack
    // (checked above), in memory that task is not using (beyond its red zone); if the stack is
    // exhausted the write hits the guard page and is reported as an overflow.
    unsafe { (new_sp as *mut u64).write(frame.ip as u64) };
    gregs[libc::REG_RSP as usize] = new_sp as i64;
    gregs[libc::REG_RIP as usize] = atomkernel_preempt_trampoline as *const () as usize as i64;
    true
}

extern "C" fn trap_signal_handler(sig: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // SAFETY: errno is thread-local (see `irq_signal_handler`).
    let saved_errno = unsafe { *libc::__errno_location() };
    // SAFETY: a valid ucontext from the kernel for an SA_SIGINFO handler, used only until it
    // returns.
    let gregs = unsafe { &mut (*(uc as *mut libc::ucontext_t)).uc_mcontext.gregs };
    if !take_trap(gregs) {
        fault_signal_handler(sig, info, uc);
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
    let hooks = percpu::with(|l| l.hooks.get());
    let Some(hooks) = hooks.filter(|_| percpu::is_cpu_thread()) else { return true };
    if percpu::with(|l| l.irqs_masked.replace(true)) {
        return true; // IRQs off: the point cannot act; the site stays armed for the next one
    }
    let frame = IrqFrame {
        ip: site + 5,
        sp: gregs[libc::REG_RSP as usize] as usize,
        bp: gregs[libc::REG_RBP as usize] as usize,
        replayed: false,
    };
    if (hooks.point_trap)(site, &frame) == IrqExit::Preempt && inject_trampoline(gregs, &frame) {
        return true; // the mask stays set: the trampoline clears it after scheduling
    }
    percpu::with(|l| l.irqs_masked.set(false));
    true
}

extern "C" fn fault_signal_handler(sig: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // SAFETY: valid pointers from the kernel for an SA_SIGINFO handler (see above).
    let (addr, ip) = unsafe {
        let uc = &*(uc as *const libc::ucontext_t);
        ((*info).si_addr() as usize, uc.uc_mcontext.gregs[libc::REG_RIP as usize] as usize)
    };
    let mut msg = FixedBuf::<512>::new();
    let cur = percpu::with(|l| l.current.get());
    // SAFETY: see `inject_trampoline`: the running context outlives its run.
    let overflow = (!cur.is_null()).then(|| unsafe { &*cur }).filter(|c| c.guard_contains(addr));
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
