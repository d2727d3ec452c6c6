//! Interrupt entry and exit: host signals in, preemption by context injection out.
//!
//! **Entry.** `irq::sig_irq` is taken on the CPU's alternate signal stack (its "IRQ stack").
//! If the soft mask is set, the lines are recorded as pending and the handler returns. Otherwise
//! it sets the mask (as an interrupt gate clears `IF`), calls the core's `Hooks::irq`, and looks
//! at the answer.
//!
//! **Exit with preemption.** To preempt, the handler does not switch stacks itself: it rewrites
//! the saved context so that, when the kernel's `sigreturn` restores the interrupted code, that
//! code "calls" `atomkernel_preempt_trampoline`, leaving the soft mask set. The interrupted
//! code's red zone (the 128 bytes below its `rsp`, which leaf functions use without moving
//! `rsp`) is skipped: the handler writes the interrupted rip 136 bytes below the interrupted
//! `rsp` and points `rsp` at it, as if the interrupted instruction had called the trampoline
//! from 128 bytes further down. The trampoline pushes the flags and every general register on
//! top (a `TrampolineFrame`, drawn there), saves the whole vector state below them, calls
//! `trampoline_body`, which calls `Hooks::preempt_schedule_irq` (which switches away and, much
//! later, back), then clears the soft mask with replay. The trampoline restores everything and
//! returns with `ret 128`, which pops the interrupted rip and releases the red-zone gap, so the
//! interrupted code resumes with every register, flag and vector register as it left them.
//!
//! **Unwinding.** The trampoline's CFI describes exactly that frame (its CFA is the interrupted
//! `rsp`, its return address the interrupted rip at CFA - 136, every saved register where it
//! was pushed) and marks it a signal frame, so a backtrace taken inside
//! `preempt_schedule_irq` (gdb's `bt`, `std::backtrace`, [`crate::unwind::step`]) goes on into
//! the interrupted function and up its callers.
//!
//! **Faults.** `SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE` and a `SIGTRAP` that is no preemption
//! point's are taken on the same alternate stack and handed to the core as an oops
//! ([`crate::fault`]).

use crate::asm::asm_function;
use crate::{irq, percpu, text, unwind};
use std::sync::{Once, OnceLock};

pub use arch_api::{IrqExit, IrqFrame};

/// The 17 words at the bottom of the interrupted task's stack while the preemption trampoline
/// runs, lowest address first: the 15 general registers and the flags the trampoline pushed
/// (`r15` last pushed, so first here), then the return-address slot an injected call or a
/// redirected return ([`crate::redirect`]) left above them. Above the slot lies the 128-byte
/// red-zone gap, and above that the interrupted code's own stack:
///
/// ```text
///   higher addresses
///   +-----------------------------+ <- interrupted rsp = the trampoline's CFA
///   | red zone (128 bytes, kept)  |
///   +-----------------------------+ <- CFA - 128
///   | ret: interrupted rip        |    (0 for a redirected return until it is served)
///   +-----------------------------+ <- CFA - 136: rsp on entry to the trampoline
///   | rflags                      |    pushed first
///   | rax, rcx, rdx, rbx,         |
///   | rbp, rsi, rdi, r8 .. r14    |
///   | r15                         |    pushed last
///   +-----------------------------+ <- CFA - 264: &TrampolineFrame, kept in rbp
///   | padding to 64 bytes         |
///   | XSAVE area                  | <- rsp at `call trampoline_body`
///   +-----------------------------+
///   lower addresses
/// ```
#[repr(C)]
#[derive(Debug)]
pub(crate) struct TrampolineFrame {
    pub(crate) r15: u64,
    pub(crate) r14: u64,
    pub(crate) r13: u64,
    pub(crate) r12: u64,
    pub(crate) r11: u64,
    pub(crate) r10: u64,
    pub(crate) r9: u64,
    pub(crate) r8: u64,
    pub(crate) rdi: u64,
    pub(crate) rsi: u64,
    pub(crate) rbp: u64,
    pub(crate) rbx: u64,
    pub(crate) rdx: u64,
    pub(crate) rcx: u64,
    pub(crate) rax: u64,
    pub(crate) rflags: u64,
    /// The return-address slot: the interrupted rip (an injected call) or 0 (a redirected
    /// return, which [`crate::redirect::serve`] fills with the original return address).
    pub(crate) ret: u64,
}

/// The red zone below the interrupted `rsp` that an injected call leaves alone.
pub(crate) const RED_ZONE: usize = 128;

// The asm below pushes exactly these words in this order and its CFI says so in numbers
// (`.cfi_def_cfa rsp, 136`, `ret 128`, `.cfi_def_cfa_register rbp` at CFA - 264): keep them
// in step with the struct.
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<TrampolineFrame>() == 17 * 8);
    assert!(offset_of!(TrampolineFrame, r15) == 0);
    assert!(offset_of!(TrampolineFrame, rbp) == 10 * 8);
    assert!(offset_of!(TrampolineFrame, rax) == 14 * 8);
    assert!(offset_of!(TrampolineFrame, rflags) == 15 * 8);
    assert!(offset_of!(TrampolineFrame, ret) == 16 * 8);
    assert!(size_of::<TrampolineFrame>() + RED_ZONE == 264);
};

impl TrampolineFrame {
    /// The interrupted code's stack pointer (the caller's, for a redirected return): just above
    /// the slot and the red-zone gap.
    pub(crate) fn interrupted_sp(&self) -> usize {
        self as *const TrampolineFrame as usize + std::mem::size_of::<TrampolineFrame>() + RED_ZONE
    }
}

/// Size in bytes of the XSAVE area the trampoline reserves (CPUID leaf 0xD, set at install).
#[no_mangle]
static mut ATOMKERNEL_XSAVE_SIZE: u64 = 0;
/// Requested-feature bitmap for XSAVE/XRSTOR: XCR0 without the AMX tile components.
#[no_mangle]
static mut ATOMKERNEL_XSAVE_MASK: [u32; 2] = [0, 0];

// The preemption trampoline. Reached not by a call but by a rewritten signal context (or the
// redirect stub's jump): rsp points at the interrupted rip, 128 bytes below the interrupted
// rsp. Its CFI therefore starts from that frame, not the CIE's: the CFA is the interrupted rsp,
// the "return address" is the interrupted rip at CFA - 136, and the frame is a signal frame,
// so an unwinder looks that rip up as it is (it is the next instruction to run, not the one
// after a call) and goes on into the interrupted function with every register it needs.
asm_function!(
    "atomkernel_preempt_trampoline",
    [
        ".cfi_signal_frame",           // the "return address" below is an interrupted rip
        ".cfi_def_cfa rsp, 136",       // CFA = interrupted rsp = rsp + 8 (slot) + 128 (gap)
        ".cfi_offset rip, -136",       // the interrupted rip: the slot at CFA - 136
        "    pushfq",                  // flags first, before anything can change them
        ".cfi_adjust_cfa_offset 8",    //   CFA = rsp + 144
        ".cfi_rel_offset 49, 0",       //   rflags (DWARF register 49) saved at [rsp]
        "    push rax",                // then every general register ...
        ".cfi_adjust_cfa_offset 8",    //   each push: CFA one word further from rsp,
        ".cfi_rel_offset rax, 0",      //   and the register's interrupted value at [rsp]
        "    push rcx",                // interrupted rcx
        ".cfi_adjust_cfa_offset 8",    //   CFA = rsp + 160
        ".cfi_rel_offset rcx, 0",      //   rcx saved at [rsp]
        "    push rdx",                // interrupted rdx
        ".cfi_adjust_cfa_offset 8",    //   CFA = rsp + 168
        ".cfi_rel_offset rdx, 0",      //   rdx saved at [rsp]
        "    push rbx",                // interrupted rbx
        ".cfi_adjust_cfa_offset 8",    //   CFA = rsp + 176
        ".cfi_rel_offset rbx, 0",      //   rbx saved at [rsp]
        "    push rbp",                // interrupted rbp
        ".cfi_adjust_cfa_offset 8",    //   CFA = rsp + 184
        ".cfi_rel_offset rbp, 0",      //   rbp saved at [rsp]
        "    push rsi",                // interrupted rsi
        ".cfi_adjust_cfa_offset 8",    //   CFA = rsp + 192
        ".cfi_rel_offset rsi, 0",      //   rsi saved at [rsp]
        "    push rdi",                // interrupted rdi
        ".cfi_adjust_cfa_offset 8",    //   CFA = rsp + 200
        ".cfi_rel_offset rdi, 0",      //   rdi saved at [rsp]
        "    push r8",                 // interrupted r8
        ".cfi_adjust_cfa_offset 8",    //   CFA = rsp + 208
        ".cfi_rel_offset r8, 0",       //   r8 saved at [rsp]
        "    push r9",                 // interrupted r9
        ".cfi_adjust_cfa_offset 8",    //   CFA = rsp + 216
        ".cfi_rel_offset r9, 0",       //   r9 saved at [rsp]
        "    push r10",                // interrupted r10
        ".cfi_adjust_cfa_offset 8",    //   CFA = rsp + 224
        ".cfi_rel_offset r10, 0",      //   r10 saved at [rsp]
        "    push r11",                // interrupted r11
        ".cfi_adjust_cfa_offset 8",    //   CFA = rsp + 232
        ".cfi_rel_offset r11, 0",      //   r11 saved at [rsp]
        "    push r12",                // interrupted r12
        ".cfi_adjust_cfa_offset 8",    //   CFA = rsp + 240
        ".cfi_rel_offset r12, 0",      //   r12 saved at [rsp]
        "    push r13",                // interrupted r13
        ".cfi_adjust_cfa_offset 8",    //   CFA = rsp + 248
        ".cfi_rel_offset r13, 0",      //   r13 saved at [rsp]
        "    push r14",                // interrupted r14
        ".cfi_adjust_cfa_offset 8",    //   CFA = rsp + 256
        ".cfi_rel_offset r14, 0",      //   r14 saved at [rsp]
        "    push r15",                // ... 16 words pushed in all: a TrampolineFrame
        ".cfi_adjust_cfa_offset 8",    //   CFA = rsp + 264
        ".cfi_rel_offset r15, 0",      //   r15 saved at [rsp]
        "    mov rbp, rsp",            // rbp (callee-saved) = &TrampolineFrame from now on
        ".cfi_def_cfa_register rbp",   //   CFA = rbp + 264 while rsp moves below
        "    sub rsp, qword ptr [rip + ATOMKERNEL_XSAVE_SIZE]", // room for the XSAVE area
        "    and rsp, -64",            // XSAVE needs 64-byte alignment
        "    xor eax, eax",            // the XSAVE header must be zero before the first
        "    mov qword ptr [rsp + 512], rax", // save, or XRSTOR faults on its reserved bytes
        "    mov qword ptr [rsp + 520], rax", //   (the header is the 64 bytes at 512)
        "    mov qword ptr [rsp + 528], rax", //   zero
        "    mov qword ptr [rsp + 536], rax", //   zero
        "    mov qword ptr [rsp + 544], rax", //   zero
        "    mov qword ptr [rsp + 552], rax", //   zero
        "    mov qword ptr [rsp + 560], rax", //   zero
        "    mov qword ptr [rsp + 568], rax", //   zero
        "    mov eax, dword ptr [rip + ATOMKERNEL_XSAVE_MASK]",     // edx:eax = the components
        "    mov edx, dword ptr [rip + ATOMKERNEL_XSAVE_MASK + 4]", //   to save
        "    xsave64 [rsp]",           // save x87, MXCSR, SSE, AVX, AVX-512 state
        "    cld",                     // the ABI wants DF clear in Rust code
        "    mov rdi, rbp",            // the body's argument: &mut TrampolineFrame
        "    call {body}",             // schedule; returns when this task runs again
        ".globl atomkernel_preempt_trampoline_return", // from here on IRQs may be on again
        ".hidden atomkernel_preempt_trampoline_return", //   (`in_return_path`)
        "atomkernel_preempt_trampoline_return:",
        "    mov eax, dword ptr [rip + ATOMKERNEL_XSAVE_MASK]",     // the same components
        "    mov edx, dword ptr [rip + ATOMKERNEL_XSAVE_MASK + 4]", //   high half
        "    xrstor64 [rsp]",          // restore the vector state exactly
        "    mov rsp, rbp",            // back to the saved general registers
        ".cfi_def_cfa_register rsp",   //   CFA = rsp + 264 again
        "    pop r15",                 // each pop: the register holds its interrupted value
        ".cfi_adjust_cfa_offset -8",   //   again, and the CFA is one word closer
        ".cfi_restore r15",            //   r15 holds its own value again
        "    pop r14",                 // interrupted r14 back
        ".cfi_adjust_cfa_offset -8",   //   CFA = rsp + 248
        ".cfi_restore r14",            //   r14 holds its own value again
        "    pop r13",                 // interrupted r13 back
        ".cfi_adjust_cfa_offset -8",   //   CFA = rsp + 240
        ".cfi_restore r13",            //   r13 holds its own value again
        "    pop r12",                 // interrupted r12 back
        ".cfi_adjust_cfa_offset -8",   //   CFA = rsp + 232
        ".cfi_restore r12",            //   r12 holds its own value again
        "    pop r11",                 // interrupted r11 back
        ".cfi_adjust_cfa_offset -8",   //   CFA = rsp + 224
        ".cfi_restore r11",            //   r11 holds its own value again
        "    pop r10",                 // interrupted r10 back
        ".cfi_adjust_cfa_offset -8",   //   CFA = rsp + 216
        ".cfi_restore r10",            //   r10 holds its own value again
        "    pop r9",                  // interrupted r9 back
        ".cfi_adjust_cfa_offset -8",   //   CFA = rsp + 208
        ".cfi_restore r9",             //   r9 holds its own value again
        "    pop r8",                  // interrupted r8 back
        ".cfi_adjust_cfa_offset -8",   //   CFA = rsp + 200
        ".cfi_restore r8",             //   r8 holds its own value again
        "    pop rdi",                 // interrupted rdi back
        ".cfi_adjust_cfa_offset -8",   //   CFA = rsp + 192
        ".cfi_restore rdi",            //   rdi holds its own value again
        "    pop rsi",                 // interrupted rsi back
        ".cfi_adjust_cfa_offset -8",   //   CFA = rsp + 184
        ".cfi_restore rsi",            //   rsi holds its own value again
        "    pop rbp",                 // interrupted rbp back
        ".cfi_adjust_cfa_offset -8",   //   CFA = rsp + 176
        ".cfi_restore rbp",            //   rbp holds its own value again
        "    pop rbx",                 // interrupted rbx back
        ".cfi_adjust_cfa_offset -8",   //   CFA = rsp + 168
        ".cfi_restore rbx",            //   rbx holds its own value again
        "    pop rdx",                 // interrupted rdx back
        ".cfi_adjust_cfa_offset -8",   //   CFA = rsp + 160
        ".cfi_restore rdx",            //   rdx holds its own value again
        "    pop rcx",                 // interrupted rcx back
        ".cfi_adjust_cfa_offset -8",   //   CFA = rsp + 152
        ".cfi_restore rcx",            //   rcx holds its own value again
        "    pop rax",                 // interrupted rax back
        ".cfi_adjust_cfa_offset -8",   //   CFA = rsp + 144
        ".cfi_restore rax",            //   rax holds its own value again
        "    popfq",                   // flags last
        ".cfi_adjust_cfa_offset -8",   //   CFA = rsp + 136: the frame we entered with
        ".cfi_restore 49",             //   49 holds its own value again
        "    ret 128",                 // pop the interrupted rip, skip the red-zone gap
        ".globl atomkernel_preempt_trampoline_end", // the end of the return path
        ".hidden atomkernel_preempt_trampoline_end",
        "atomkernel_preempt_trampoline_end:",
    ],
    body = sym trampoline_body,
);

extern "C" {
    fn atomkernel_preempt_trampoline();
    fn atomkernel_preempt_trampoline_return();
    fn atomkernel_preempt_trampoline_end();
}

/// The code of the return path from a preemption: the trampoline after its call (the vector
/// state and registers restored from the stack, then `ret`), and `trampoline_body` (whose
/// `local_irq_enable` turns IRQs on). Set by [`install`] and, once the unwind tables know
/// `trampoline_body`'s extent, by [`note_return_path`]; read by the interrupt signal handler.
static RETURN_ASM: OnceLock<(usize, usize)> = OnceLock::new();
static RETURN_BODY: OnceLock<(usize, usize)> = OnceLock::new();

/// Is `ip` in the return path from a preemption, where IRQs are on again but the earlier
/// interrupt's frame (flags, registers, the XSAVE area) is still on the stack? A preemption
/// injected there would nest a second frame on the first, and an interrupt storm could nest
/// them until the stack's guard page. Signal-safe: two range checks.
pub fn in_return_path(ip: usize) -> bool {
    [RETURN_ASM.get(), RETURN_BODY.get()].into_iter().flatten().any(|&(lo, hi)| (lo..hi).contains(&ip))
}

/// Notes the return path's extent: the trampoline's part from its labels, `trampoline_body`'s
/// from the unwind tables once they are loaded (`unwind::prepare` calls this again then).
pub(crate) fn note_return_path() {
    let start = atomkernel_preempt_trampoline_return as *const () as usize;
    let _ = RETURN_ASM.set((start, atomkernel_preempt_trampoline_end as *const () as usize));
    if let Some(body) = unwind::function_of(trampoline_body as *const () as usize) {
        let _ = RETURN_BODY.set(body);
    }
}

/// The Rust half of the trampoline, on the task's stack. An injected call (`ret` = the
/// interrupted rip) arrives with IRQs soft-masked and calls `preempt_schedule_irq`; a
/// redirected return (`ret` = 0, see [`crate::redirect`]) is served there.
extern "C" fn trampoline_body(frame: *mut TrampolineFrame) {
    // SAFETY: the trampoline passes the address of the TrampolineFrame it pushed on this
    // task's stack, 8-byte aligned; nothing else touches it until the trampoline pops it.
    let frame = unsafe { &mut *frame };
    if frame.ret == 0 {
        crate::redirect::serve(frame);
        return;
    }
    if let Some(hooks) = percpu::hooks() {
        (hooks.preempt_schedule_irq)();
    }
    irq::local_irq_enable();
}

/// Runs the core's IRQ hook for `lines` with the mask set. For a replayed interrupt, a
/// `Preempt` answer is served at once by a direct call: the caller is task context already.
pub(crate) fn run_irq(lines: u64, frame: &IrqFrame) -> IrqExit {
    let Some(hooks) = percpu::hooks() else {
        return IrqExit::Resume;
    };
    // Save and restore rather than clear: a hard interrupt may nest in the softirq window of
    // `irq_exit_irqs_on`, and the outer handler is still interrupt context after it.
    let was_in_irq = percpu::replace_in_irq(true);
    let was_in_signal = percpu::replace_in_signal(!frame.replayed);
    let exit = (hooks.irq)(lines, frame);
    percpu::replace_in_irq(was_in_irq);
    percpu::replace_in_signal(was_in_signal);
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
    let in_signal = percpu::in_signal();
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
        note_return_path();
        set_handler(irq::sig_irq(), irq_signal_handler);
        for sig in [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE] {
            set_handler(sig, crate::fault::fault_signal_handler);
        }
        set_handler(libc::SIGTRAP, crate::site_trap::trap_signal_handler);
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
    let was_masked = percpu::replace_irqs_masked(true);
    if was_masked {
        percpu::add_pending(lines);
    }
    if was_masked {
        return;
    }
    let gregs = &mut uc.uc_mcontext.gregs;
    let ip = gregs[libc::REG_RIP as usize] as usize;
    let frame = IrqFrame {
        ip,
        sp: gregs[libc::REG_RSP as usize] as usize,
        bp: gregs[libc::REG_RBP as usize] as usize,
        replayed: false,
        exiting: in_return_path(ip),
    };
    if run_irq(lines, &frame) == IrqExit::Preempt && inject_trampoline(gregs, &frame) {
        return; // the mask stays set: the trampoline clears it after scheduling
    }
    percpu::set_irqs_masked(false);
}

/// Is `sp` on the running task's own stack (so an injected call may push below it)?
pub(crate) fn on_task_stack(sp: usize) -> bool {
    percpu::with(|l| {
        let cur = l.current.get();
        // SAFETY: `current` points to the running TaskContext, which its owner keeps alive
        // while it runs (TaskContext's Drop refuses to free a running context).
        !cur.is_null() && unsafe { (*cur).stack_contains(sp) }
    })
}

/// Rewrites the saved context so the interrupted code calls the trampoline on return.
pub(crate) fn inject_trampoline(gregs: &mut [libc::greg_t; 23], frame: &IrqFrame) -> bool {
    if !on_task_stack(frame.sp) {
        return false;
    }
    let new_sp = frame.sp - RED_ZONE - 8;
    // SAFETY: `new_sp` lies below the interrupted rsp on the interrupted task's own stack
    // (checked above), in memory that task is not using (beyond its red zone); if the stack is
    // exhausted the write hits the guard page and is reported as an overflow.
    unsafe { (new_sp as *mut u64).write(frame.ip as u64) };
    gregs[libc::REG_RSP as usize] = new_sp as i64;
    gregs[libc::REG_RIP as usize] = atomkernel_preempt_trampoline as *const () as usize as i64;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_return_path_is_the_trampoline_after_its_call_and_trampoline_body() {
        crate::unwind::prepare().unwrap();
        note_return_path();
        let tramp = atomkernel_preempt_trampoline as *const () as usize;
        let ret = atomkernel_preempt_trampoline_return as *const () as usize;
        let end = atomkernel_preempt_trampoline_end as *const () as usize;
        assert!(tramp < ret && ret < end, "the labels lie inside the trampoline, in order");
        assert!(in_return_path(ret) && in_return_path(end - 1), "XRSTOR to `ret 128`");
        assert!(!in_return_path(tramp) && !in_return_path(ret - 1), "not the save half, nor the call");
        assert!(!in_return_path(end), "nor what follows");
        let body = trampoline_body as *const () as usize;
        assert!(in_return_path(body), "trampoline_body, whose local_irq_enable turns IRQs on");
        assert!(!in_return_path(take_irq as *const () as usize), "any other code: no");
    }
}
