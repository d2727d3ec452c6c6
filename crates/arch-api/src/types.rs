//! The plain types the core and an arch exchange: what an interrupt found, what the core wants
//! done on its way out, the core's hooks, a fault, frames, patch requests and their refusals.
//! Data only: nothing here touches a CPU, so every arch shares them.

use alloc::string::String;
use core::fmt;

/// One `preempt_disable()` worth of `preempt_count` (the low byte counts disable nesting): the
/// one field of the core's count layout an arch needs (its allocator disables preemption).
pub const PREEMPT_OFFSET: u32 = 1;

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
    /// True when the interrupt landed in the arch's return path from an earlier preemption
    /// (IRQs already on, the earlier interrupt's saved state still on the stack): kernel
    /// text, but preempting there would stack a second such frame on the first, so the core
    /// treats it as it treats foreign code (it looks again soon).
    pub exiting: bool,
}

impl IrqFrame {
    /// The frame of a replayed interrupt (no interrupted context of its own).
    pub fn replayed() -> Self {
        IrqFrame { ip: 0, sp: 0, bp: 0, replayed: true, exiting: false }
    }
}

/// The core's side of the boundary: plain functions, because the core finds its own per-CPU
/// state from the CPU it runs on ([`crate::Arch::with_this_instance`]).
#[derive(Debug)]
pub struct Hooks {
    /// An interrupt arrived on `lines` (bit `n` = line `n`). Runs with IRQs masked, from the
    /// arch's interrupt entry or a replay; must not allocate or block.
    pub irq: fn(lines: u64, frame: &IrqFrame) -> IrqExit,
    /// Reached through the preemption trampoline (or directly after a replay) when `irq`
    /// answered [`IrqExit::Preempt`]. Runs in task context with IRQs masked and must return
    /// with them still masked.
    pub preempt_schedule_irq: fn(),
    /// `rt_reschedule`: a preemption-point site armed as a call (its address) was reached, in
    /// task context.
    pub rt_reschedule: fn(site: usize),
    /// The allocator's `preempt_enable` found the count zero with a reschedule due
    /// (`preempt_schedule`); the core decides whether its model preempts there.
    pub preempt_schedule: fn(),
    /// A site armed as `int3` fired (its address; `frame` is the task just after the site).
    /// Runs from the breakpoint's entry with IRQs masked, like `irq`; [`IrqExit::Preempt`]
    /// makes the task call `preempt_schedule_irq` through the trampoline.
    pub point_trap: fn(site: usize, frame: &IrqFrame) -> IrqExit,
    /// A redirected return arrived; the caller's stack pointer and `rbp` are given, and
    /// `masked`: the function returned with IRQs masked (an IRQ-off section goes on in the
    /// caller: no schedule there). Runs in task context with IRQs masked and must return the
    /// original return address.
    pub rt_return: fn(sp: usize, bp: usize, masked: bool) -> usize,
    /// A fault in code of this CPU, from its exception entry: must not allocate. `true` kills
    /// the running task (it resumes in `oops_exit` on its own stack); `false` lets the fault
    /// end the machine. May stop the CPU for good (a kernel panic) instead of returning.
    pub fault: fn(fault: &Fault) -> bool,
    /// Where a task killed by `fault` resumes: task context, at the top of its own stack, with
    /// its frames below abandoned. Must end the task.
    pub oops_exit: fn() -> !,
    /// The allocator was entered in interrupt context (a `BUG:`): must not allocate, and never
    /// returns (a kernel panic).
    pub alloc_in_irq: fn() -> !,
}

/// A fixed-size text buffer for formatting where allocation is not allowed.
#[derive(Clone, Copy)]
pub struct FixedBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> FixedBuf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        FixedBuf { buf: [0; N], len: 0 }
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl<const N: usize> fmt::Debug for FixedBuf<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&alloc::string::String::from_utf8_lossy(self.as_bytes()), f)
    }
}

impl<const N: usize> Default for FixedBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for FixedBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// Most frames a fault's backtrace keeps.
pub const TRACE_DEPTH: usize = 24;

/// Names of [`Regs::gp`], in order.
pub const GP_NAMES: [&str; 15] =
    ["RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP", "R08", "R09", "R10", "R11", "R12", "R13", "R14", "R15"];

/// The registers of a faulting (or panicking) context.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    /// The instruction pointer.
    pub rip: u64,
    /// The stack pointer.
    pub rsp: u64,
    /// The flags.
    pub rflags: u64,
    /// The general registers, named by [`GP_NAMES`].
    pub gp: [u64; 15],
}

impl Regs {
    /// The frame pointer register.
    pub fn rbp(&self) -> u64 {
        self.gp[6]
    }
}

/// A fault the core may turn into an oops.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    /// A short name of the fault, as Linux's oops headers say it ("divide error").
    pub what: &'static str,
    /// The hardware event in the arch's own words ("signal 8, code 1", "vector 0").
    pub source: FixedBuf<48>,
    /// The faulting address (the data address, or the instruction's).
    pub addr: usize,
    /// The faulting context's registers.
    pub regs: Regs,
    /// The address hit the guard page below the running task's stack.
    pub stack_overflow: bool,
    /// The CPU was running the core's interrupt hook.
    pub in_irq: bool,
    /// IRQs were masked.
    pub irqs_masked: bool,
    /// The running context's own stack `[lo, hi)`; `None` for the idle task.
    pub stack: Option<(usize, usize)>,
    /// Return addresses up the task's stack, the faulting ip first.
    pub trace: [usize; TRACE_DEPTH],
    /// How many entries of `trace` are filled.
    pub depth: usize,
}

/// A frame of a walk up a stack. `is_return_address` says what `ip` is: `false` for the
/// interrupted instruction itself (build it with [`Frame::interrupted`]), `true` for a return
/// address (the instruction after a `call`), which a walk looks up at `ip - 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The instruction pointer.
    pub ip: usize,
    /// The stack pointer.
    pub sp: usize,
    /// The frame pointer register.
    pub bp: usize,
    /// `ip` is a return address.
    pub is_return_address: bool,
}

impl Frame {
    /// The frame of interrupted code: `ip` is the next instruction to execute, not a return
    /// address.
    pub fn interrupted(ip: usize, sp: usize, bp: usize) -> Frame {
        Frame { ip, sp, bp, is_return_address: false }
    }
}

/// What one step up a stack found: the caller's frame and where the return address into it is
/// stored.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    /// The caller's frame, marked `is_return_address` unless the step left an interrupt frame.
    pub caller: Frame,
    /// The stack slot holding `caller.ip`: overwrite it to redirect the return.
    pub ra_slot: usize,
}

/// How a site is armed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arm {
    /// `call` the point hook (voluntary, cpulock, patch-call).
    Call,
    /// A breakpoint, served by the breakpoint's entry (patch-int3).
    Int3,
}

/// How a patch synchronises the other CPUs (`patch_sync=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatchSync {
    /// One byte written, nothing else: every form of a site is safe to execute.
    None,
    /// `text_poke_bp`'s protocol: `int3` first, a `SYNC_CORE` round, the final byte, a round.
    Ipi,
}

impl PatchSync {
    /// Every mode, in the order reports list them.
    pub const ALL: [PatchSync; 2] = [PatchSync::None, PatchSync::Ipi];

    /// The name used on the command line (`patch_sync=`) and in reports.
    pub fn name(self) -> &'static str {
        match self {
            PatchSync::None => "none",
            PatchSync::Ipi => "ipi",
        }
    }
}

/// Why a patch was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PokeError {
    /// The address is not a registered preemption-point site.
    NotASite(usize),
    /// The site's bytes were not one of its three forms.
    Unexpected {
        /// The site.
        addr: usize,
        /// Its idle form.
        expected: [u8; 5],
        /// What it held.
        found: [u8; 5],
    },
    /// Disarming a site nobody armed that way.
    NotArmed(usize),
    /// The machine refused to set up the writable alias of the text.
    Host(String),
}

impl fmt::Display for PokeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PokeError::NotASite(a) => write!(f, "BUG: refusing to patch {a:#x}: not a registered preemption point"),
            PokeError::Unexpected { addr, expected, found } => write!(
                f,
                "BUG: refusing to patch site {addr:#x}: expected {expected:02x?} with first byte {:02x}, e8 \
                 or cc, found {found:02x?}",
                expected[0]
            ),
            PokeError::NotArmed(a) => write!(f, "BUG: disarming site {a:#x}, which is not armed that way"),
            PokeError::Host(e) => write!(f, "text patching unavailable: {e}"),
        }
    }
}

impl core::error::Error for PokeError {}

/// Where a preemption point is in the source.
#[derive(Debug)]
#[repr(C)]
pub struct PointInfo {
    /// The source file.
    pub file: &'static str,
    /// Its line.
    pub line: u32,
    /// Its column.
    pub column: u32,
    /// The module path.
    pub module: &'static str,
}

/// One registered preemption-point site.
#[derive(Clone, Copy, Debug)]
pub struct Site {
    /// Address of the five site bytes.
    pub addr: usize,
    /// Its source location.
    pub info: &'static PointInfo,
}

/// What an address is: its symbol and offset, and its source place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Symbol {
    /// The address looked up.
    pub addr: usize,
    /// The demangled symbol containing it.
    pub function: Option<String>,
    /// Bytes from the symbol's start.
    pub offset: usize,
    /// The size of the function, 0 if unknown.
    pub size: usize,
    /// Source file (from the workspace root when under it).
    pub file: Option<String>,
    /// Source line.
    pub line: Option<u32>,
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.function {
            Some(func) if self.size > 0 => write!(f, "{func}+{:#x}/{:#x}", self.offset, self.size)?,
            Some(func) => write!(f, "{func}+{:#x}", self.offset)?,
            None => write!(f, "{:#x}", self.addr)?,
        }
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, " at {file}:{line}"),
            (Some(file), None) => write!(f, " in {file}"),
            _ => Ok(()),
        }
    }
}

/// A Rust panic as the arch's panic entry saw it, for the core's panic hook.
#[derive(Clone, Copy)]
pub struct PanicReport<'a> {
    /// Where it was raised.
    pub location: Option<&'a core::panic::Location<'a>>,
    /// Its message (`None`: a payload that is not text).
    pub message: Option<&'a dyn fmt::Display>,
}
