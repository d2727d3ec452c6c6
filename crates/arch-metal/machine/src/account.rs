//! Where a CPU's instructions went: the interrupts' own cycles, the latest interrupt's entry,
//! and the last preemption point that served, per CPU in the GS block, so that the cycles of
//! the code an interrupt landed in can be told from the gate's, the handlers' and the point
//! mechanism's.
//!
//! **Mechanism.** Only once [`enable`]d (the bound check's runs, at boot), since it costs
//! every interrupt about 25 instructions: `metal_idt_common` (`crate::idt`) tests one byte
//! and otherwise skips it. Enabled, it stores its entry `rdtsc` in [`Account`]'s
//! `entry_tsc` for every vector. For the external vectors it counts the nesting (`depth`): an
//! interrupt entered at depth 0 also leaves its TSC, the interrupted RIP, RSP and RBP and its
//! vector in `irq_*` (and its `rcx`, a `rep` instruction's count), and when it returns without preempting, its cycles from the entry `rdtsc` to the
//! exit `rdtsc` are added to `irq_cycles` and `irqs` counts it (a nested interrupt's cycles are
//! inside its outer one's; one that preempts leaves depth 0 before the switch and adds
//! nothing). What the gate runs outside the two `rdtsc`s is straight-line and the same for
//! every external vector: [`GATE_PRE`] instructions before the entry `rdtsc` (the stub's two
//! pushes and its jump, the 15 register pushes) and [`GATE_POST`] from the exit `rdtsc` to the
//! `iretq` (the accounting, the 15 pops, the error-code drop, the `iretq`). The point
//! mechanisms stamp the point that serves before they call the core: the `rt_reschedule`
//! trampoline and the `metal_rt_return` stub call `metal_stamp_call` / `metal_stamp_return`
//! (IF clear around one `rdtsc`, then the sums copied), the `#BP` path copies its gate's entry
//! TSC ([`stamp_int3`]); [`point_pre`] counts each kind's instructions before its timestamp.
//! The stamps too test the byte first and do nothing else in the other boots (a served point
//! pays a `cmp`, a `je` and the `ret`).
//!
//! **Invariant.** Only this CPU writes its block, with IF clear or by single `gs:`
//! read-modify-write instructions; a point's stamp and its sums are taken with IF clear, so
//! they describe the same instant. Under `-icount shift=0` a TSC difference is a count of
//! instructions, and the constants are exact counts of the asm (checked by the
//! `image.run=bound-calibrate` boot).

use crate::percpu::{self, PerCpu};
use core::cell::Cell;
use core::mem::offset_of;
use core::sync::atomic::{AtomicBool, Ordering};

/// Whether the gate keeps the account (read by `metal_idt_common` as one byte).
#[export_name = "metal_account_on"]
static ON: AtomicBool = AtomicBool::new(false);

/// Turns the gate's accounting on for the rest of the boot. Call from the boot context before
/// the first task runs and before the APs start: no interrupt is then half way through the
/// gate, so every one that is counted in on entry is counted out on exit.
pub fn enable() {
    ON.store(true, Ordering::Release);
}

/// Instructions of an external vector's gate before its entry `rdtsc`: `pushq $0`,
/// `pushq $vector`, `jmp metal_idt_common`, 15 `pushq`.
pub const GATE_PRE: u64 = 18;
/// Instructions from the exit `rdtsc` to the `iretq`, both included, on the path that returns
/// without preempting at depth 0: `rdtsc`, `shlq`, `orq`, `subq`, `addq`, `incq` (the
/// accounting), `movq %rbx, %rsp`, 15 `popq`, `addq $16`, `iretq`.
pub const GATE_POST: u64 = 24;
/// The gate's instructions outside the two `rdtsc`s, per interrupt: [`GATE_PRE`] + [`GATE_POST`].
pub const GATE: u64 = GATE_PRE + GATE_POST;

/// Which mechanism served a point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An armed site's `call rt_reschedule`.
    Call = 1,
    /// An armed site's `int3` (`#BP`).
    Int3 = 2,
    /// A redirected return reaching `metal_rt_return`.
    Return = 3,
}

impl Kind {
    /// Its name in the JSON lines.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Call => "call",
            Kind::Int3 => "int3",
            Kind::Return => "return",
        }
    }

    fn from_raw(k: u64) -> Option<Kind> {
        [Kind::Call, Kind::Int3, Kind::Return].into_iter().find(|&x| x as u64 == k)
    }
}

/// Instructions a point mechanism runs before its timestamp, counted the way
/// `codeflow::Bound` counts (a point weighs 0, a return 1): `call` — the site's `call`, the
/// trampoline's `call metal_stamp_call`, the stamp's test of the account (`cmp`, `je`),
/// `pushfq`, `cli`; `int3` — the site's `int3` and the gate's [`GATE_PRE`]; `return` — the
/// stub's `lea`, 12 pushes and `mov rbp, rsp`, its `call metal_stamp_return`, the test,
/// `pushfq`, `cli` (the function's `ret` is the interrupted code's: the bound counts it).
pub const fn point_pre(kind: Kind) -> u64 {
    match kind {
        Kind::Call => 2 + STAMP_PRE,
        Kind::Int3 => 1 + GATE_PRE,
        Kind::Return => 15 + STAMP_PRE,
    }
}

/// A stamp's instructions before its `rdtsc`: `cmp`, `je` (the account kept?), `pushfq`, `cli`.
const STAMP_PRE: u64 = 4;

/// A CPU's accounting words (see the module's description); a field of its [`PerCpu`] block.
#[repr(C)]
pub struct Account {
    entry_tsc: Cell<u64>,
    depth: Cell<u64>,
    irq_cycles: Cell<u64>,
    irqs: Cell<u64>,
    irq_tsc: Cell<u64>,
    irq_rip: Cell<u64>,
    irq_vector: Cell<u64>,
    irq_rsp: Cell<u64>,
    irq_rbp: Cell<u64>,
    irq_rcx: Cell<u64>,
    point_tsc: Cell<u64>,
    point_kind: Cell<u64>,
    point_cycles: Cell<u64>,
    point_irqs: Cell<u64>,
    points: Cell<u64>,
}

impl Account {
    /// All zero.
    pub const fn new() -> Account {
        Account {
            entry_tsc: Cell::new(0),
            depth: Cell::new(0),
            irq_cycles: Cell::new(0),
            irqs: Cell::new(0),
            irq_tsc: Cell::new(0),
            irq_rip: Cell::new(0),
            irq_vector: Cell::new(0),
            irq_rsp: Cell::new(0),
            irq_rbp: Cell::new(0),
            irq_rcx: Cell::new(0),
            point_tsc: Cell::new(0),
            point_kind: Cell::new(0),
            point_cycles: Cell::new(0),
            point_irqs: Cell::new(0),
            points: Cell::new(0),
        }
    }
}

impl Default for Account {
    fn default() -> Self {
        Account::new()
    }
}

macro_rules! off {
    ($f:ident) => {
        offset_of!(PerCpu, account) + offset_of!(Account, $f)
    };
}
/// `gs:` offsets of the fields, for the asm of `crate::idt` and the stamps below.
pub(crate) const OFF_ENTRY_TSC: usize = off!(entry_tsc);
pub(crate) const OFF_DEPTH: usize = off!(depth);
pub(crate) const OFF_IRQ_CYCLES: usize = off!(irq_cycles);
pub(crate) const OFF_IRQS: usize = off!(irqs);
pub(crate) const OFF_IRQ_TSC: usize = off!(irq_tsc);
pub(crate) const OFF_IRQ_RIP: usize = off!(irq_rip);
pub(crate) const OFF_IRQ_VECTOR: usize = off!(irq_vector);
pub(crate) const OFF_IRQ_RSP: usize = off!(irq_rsp);
pub(crate) const OFF_IRQ_RBP: usize = off!(irq_rbp);
pub(crate) const OFF_IRQ_RCX: usize = off!(irq_rcx);
const OFF_POINT_TSC: usize = off!(point_tsc);
const OFF_POINT_KIND: usize = off!(point_kind);
const OFF_POINT_CYCLES: usize = off!(point_cycles);
const OFF_POINT_IRQS: usize = off!(point_irqs);
const OFF_POINTS: usize = off!(points);

/// The body of a point's stamp (intel syntax): nothing unless the account is kept (the bound
/// check's boots, [`enable`]); then IF clear around the `rdtsc` and the copies, `rax` and `rdx`
/// clobbered (the callers may lose them), IF restored (`popfq`). The arithmetic flags are the
/// test's to clobber: the site clobbers them anyway, and `metal_rt_return` saved its own.
macro_rules! stamp {
    ($name:literal, $kind:literal) => {
        core::arch::global_asm!(
            concat!(".section .text.", $name, ", \"ax\""),
            concat!(".global ", $name),
            concat!($name, ":"),
            "cmp byte ptr [rip + metal_account_on], 0", // the account kept (the bound check's boots)?
            "je 2f",                                   // no: nothing to stamp
            "pushfq",                                  // IF as the caller had it
            "cli",                                     // the stamp and the sums: one instant
            "rdtsc",                                   // the point's TSC (edx:eax)
            "shl rdx, 32",                             // high half up
            "or rax, rdx",                             // rax = the TSC
            "mov qword ptr gs:[{tsc}], rax",           // the point's TSC
            "mov rax, qword ptr gs:[{cycles}]",        // the interrupts' cycles so far
            "mov qword ptr gs:[{pcycles}], rax",       //   as of the point
            "mov rax, qword ptr gs:[{irqs}]",          // the interrupts so far
            "mov qword ptr gs:[{pirqs}], rax",         //   as of the point
            concat!("mov qword ptr gs:[{kind}], ", $kind), // which mechanism
            "add qword ptr gs:[{points}], 1",          // one more point stamped
            "popfq",                                   // IF back
            "2:",                                      // (the account not kept)
            "ret",                                     // to the mechanism
            tsc = const OFF_POINT_TSC,
            cycles = const OFF_IRQ_CYCLES,
            pcycles = const OFF_POINT_CYCLES,
            irqs = const OFF_IRQS,
            pirqs = const OFF_POINT_IRQS,
            kind = const OFF_POINT_KIND,
            points = const OFF_POINTS,
        );
    };
}
stamp!("metal_stamp_call", "1");
stamp!("metal_stamp_return", "3");

/// The `#BP` path's stamp: the gate's entry TSC (IF is clear throughout the gate).
pub fn stamp_int3() {
    if !ON.load(Ordering::Relaxed) {
        return; // the account is kept only in the bound check's boots
    }
    let a = &percpu::this().account;
    a.point_tsc.set(a.entry_tsc.get());
    a.point_cycles.set(a.irq_cycles.get());
    a.point_irqs.set(a.irqs.get());
    a.point_kind.set(Kind::Int3 as u64);
    a.points.set(a.points.get() + 1);
}

/// The interrupts' own cycles and their count so far on this CPU (see the module's description).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sums {
    /// Σ (exit `rdtsc` - entry `rdtsc`) of the depth-0 external interrupts that returned.
    pub cycles: u64,
    /// How many.
    pub irqs: u64,
}

/// The latest depth-0 external interrupt, as its handler sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Irq {
    /// Its entry `rdtsc`.
    pub tsc: u64,
    /// The interrupted instruction.
    pub rip: u64,
    /// Its vector.
    pub vector: u64,
    /// The interrupted `rsp` and `rbp` (where an unwinder starts).
    pub sp: u64,
    /// See `sp`.
    pub bp: u64,
    /// The interrupted `rcx`: a `rep` string instruction's iterations still to run, when the
    /// interrupt landed on one.
    pub rcx: u64,
    /// The external interrupts being served now (1: this one alone).
    pub depth: u64,
    /// The sums at its entry (its own cycles are added when it returns).
    pub sums: Sums,
}

/// The last point stamped on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    /// Its timestamp.
    pub tsc: u64,
    /// The mechanism (`None` before any).
    pub kind: Option<Kind>,
    /// The sums at the timestamp.
    pub sums: Sums,
    /// Points stamped so far.
    pub seq: u64,
}

/// Runs `f` on this CPU's block with IF clear.
fn with<T>(f: impl FnOnce(&Account) -> T) -> T {
    let was = crate::irq::local_irq_save();
    let v = f(&percpu::this().account);
    crate::irq::local_irq_restore(was);
    v
}

/// The sums now.
pub fn sums() -> Sums {
    with(|a| Sums { cycles: a.irq_cycles.get(), irqs: a.irqs.get() })
}

/// The latest depth-0 external interrupt (for a handler: the one it runs in when `depth` is 1).
pub fn irq() -> Irq {
    with(|a| Irq {
        tsc: a.irq_tsc.get(),
        rip: a.irq_rip.get(),
        vector: a.irq_vector.get(),
        sp: a.irq_rsp.get(),
        bp: a.irq_rbp.get(),
        rcx: a.irq_rcx.get(),
        depth: a.depth.get(),
        sums: Sums { cycles: a.irq_cycles.get(), irqs: a.irqs.get() },
    })
}

/// The interrupted code's frames for `irq` (on the running task's stack): its RIP, then its
/// callers' return addresses from the unwinder, into `out`; how many.
pub fn irq_chain(irq: &Irq, out: &mut [usize]) -> usize {
    let from = arch_api::Frame::interrupted(irq.rip as usize, irq.sp as usize, irq.bp as usize);
    crate::switch::current_stack().map_or(0, |st| crate::unwind::backtrace(from, st, out))
}

/// The last point stamped.
pub fn point() -> Point {
    with(|a| Point {
        tsc: a.point_tsc.get(),
        kind: Kind::from_raw(a.point_kind.get()),
        sums: Sums { cycles: a.point_cycles.get(), irqs: a.point_irqs.get() },
        seq: a.points.get(),
    })
}

/// The interrupted code's instructions from the interrupt `irq` to the point `p` that served
/// it: the TSC between them less every interrupt's cycles and gate in between (the first's
/// entry included, its [`GATE_PRE`] not) and the point mechanism's own instructions.
pub fn interrupted_insns(irq: &Irq, p: &Point) -> Option<u64> {
    let kind = p.kind?;
    let k = p.sums.irqs.checked_sub(irq.sums.irqs)?;
    let cycles = p.sums.cycles.checked_sub(irq.sums.cycles)?;
    (p.tsc.checked_sub(irq.tsc)? + GATE_PRE).checked_sub(cycles + k * GATE + point_pre(kind))
}
