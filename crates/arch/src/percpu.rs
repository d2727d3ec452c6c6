//! Per-CPU words: the state a CPU thread keeps in thread-local storage.
//!
//! A CPU is a host thread, so per-CPU variables are `thread_local!`s with `const` initialisers
//! and no destructors: reading one is a single `%fs`-relative load, safe from a signal handler,
//! and never allocates. The signal handler and the code it interrupts share these words; both
//! run on one thread, so a handler runs to completion before the interrupted code resumes, and
//! a plain `Cell` suffices for a word the handler only reads or puts back as it found it. A
//! word the handler *changes* for the interrupted code (`pending`) is an atomic instead: a
//! `Cell` read-modify-write is a load and a store, and a signal between the two would have its
//! change overwritten. An atomic swap or or is one instruction (`xchg`, `lock or`), which a
//! signal cannot split.
//!
//! `preempt_count` is such a word too (the handler folds `need_resched` into it): a
//! `PerCpuWord`, a `Cell` for reads whose every read-modify-write is one instruction (`add`,
//! `sub`, `and`, `or` on the word in memory, in inline asm, as Linux's `%gs`-relative ops).
//!
//! The raw `preempt_count` lives here, as Linux keeps `__preempt_count` in
//! `arch/x86/include/asm/preempt.h`; its bit layout is the core's (`kernel::preempt`), except
//! [`PREEMPT_OFFSET`], which the global allocator needs and which the core checks it agrees with.

use crate::switch::TaskContext;
use crate::Hooks;
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};

/// One `preempt_disable()` worth of `preempt_count`: the low byte counts disable nesting.
pub const PREEMPT_OFFSET: u32 = 1;

pub(crate) struct CpuLocal {
    /// The raw `preempt_count` word (layout: `kernel::preempt`).
    pub preempt_count: PerCpuWord,
    /// The soft IRQ mask: `true` = IRQs "disabled" (`cli`).
    pub irqs_masked: Cell<bool>,
    /// The core's number for this CPU (0 on threads that are not CPUs).
    pub cpu_number: Cell<u32>,
    /// Flags the core keeps per CPU and tests on hot paths ([`core_flags`]); 0 elsewhere.
    pub core_flags: Cell<u32>,
    /// Lines that fired while masked, replayed when the mask clears. Set by the handler, taken
    /// by the interrupted code: single-instruction atomics only (see the module docs).
    pub pending: AtomicU64,
    /// Set while the core's IRQ hook runs (the allocator refuses to run then).
    pub in_irq: Cell<bool>,
    /// Set when the CPU passes a place where it could reschedule; taken by the soft-lockup
    /// check on the tick ([`touch_softlockup`]).
    pub softlockup_touched: Cell<bool>,
    /// Set while the interrupt signal handler runs the core's hook (not for a replay): the
    /// host signal is then blocked, and [`crate::entry::irq_exit_irqs_on`] must unblock it.
    pub in_signal: Cell<bool>,
    /// The core's hooks; `None` on threads that are not CPUs.
    pub hooks: Cell<Option<&'static Hooks>>,
    /// This CPU's interrupt request register, written by other threads.
    pub irr: Cell<*const AtomicU64>,
    /// The context running on this CPU (for stack checks and overflow reports).
    pub current: Cell<*const TaskContext>,
    /// The context that ran before the last switch, finished by the next one.
    pub last: Cell<*const TaskContext>,
    /// `Arc`s handed over by a final switch (`Arc::into_raw`), released after it.
    pub release: Cell<[*const TaskContext; 2]>,
}

thread_local! {
    pub(crate) static LOCAL: CpuLocal = const {
        CpuLocal {
            preempt_count: PerCpuWord::new(0),
            irqs_masked: Cell::new(false),
            cpu_number: Cell::new(0),
            core_flags: Cell::new(0),
            pending: AtomicU64::new(0),
            in_irq: Cell::new(false),
            softlockup_touched: Cell::new(false),
            in_signal: Cell::new(false),
            hooks: Cell::new(None),
            irr: Cell::new(std::ptr::null()),
            current: Cell::new(std::ptr::null()),
            last: Cell::new(std::ptr::null()),
            release: Cell::new([std::ptr::null(); 2]),
        }
    };
}

/// A per-CPU word that the interrupt handler may change under the code it interrupts: each
/// read-modify-write is one instruction on the word in memory, which a signal cannot split (a
/// load-op-store could lose a change a signal made between the load and the store). Reads and
/// plain writes are single loads and stores.
pub(crate) struct PerCpuWord(Cell<u32>);

/// One read-modify-write method of [`PerCpuWord`]: `$insn dword ptr [word], v`.
macro_rules! rmw {
    ($(#[$doc:meta])* $name:ident, $insn:literal) => {
        $(#[$doc])*
        #[inline(always)]
        pub(crate) fn $name(&self, v: u32) {
            let p = self.0.as_ptr();
            // SAFETY: `p` points at this thread's own per-CPU word, live as long as the thread
            // (the word is only ever reached through its thread's `LOCAL`); the instruction
            // writes only those 4 bytes and the flags (asm! without `preserves_flags`), and no
            // `&mut` to the word exists (it is only accessed through this `Cell`).
            unsafe {
                std::arch::asm!(concat!($insn, " dword ptr [{p}], {v:e}"), p = in(reg) p, v = in(reg) v, options(nostack))
            };
        }
    };
}

impl PerCpuWord {
    pub(crate) const fn new(v: u32) -> Self {
        PerCpuWord(Cell::new(v))
    }

    /// Overwrites the word (not a read-modify-write: only for resets).
    #[inline(always)]
    pub(crate) fn set(&self, v: u32) {
        self.0.set(v)
    }

    rmw!(
        /// `word += v` (wrapping), one `add`.
        add, "add"
    );
}

/// Runs `f` with this thread's per-CPU words.
///
/// Never inlined, and that is what makes per-CPU words safe for tasks that migrate: a task may
/// leave one CPU thread in `switch_to` and resume on another, and a compiler that had kept
/// the thread-local address in a register across that call (it assumes the thread cannot
/// change inside a function) would then reach the first thread's words. Here the address is
/// computed afresh inside every call, and `f` must never switch (nor call anything that may:
/// a replayed interrupt, a hook): a reference to the words must not outlive the call.
#[inline(never)]
pub(crate) fn with<R>(f: impl FnOnce(&CpuLocal) -> R) -> R {
    LOCAL.with(f)
}

/// The hot words (`preempt_count`, the soft IRQ mask, the CPU number, the core's flags, the
/// hooks pointer, the pending lines and the soft-lockup touch) are reached without `with`: by one `%fs`-relative instruction, as Linux
/// reaches `__preempt_count` through `%gs`. The instruction reads the thread pointer when it
/// executes, so it is right on whatever thread the task runs on, and it may be inlined
/// anywhere. The words' offsets from the thread pointer are those of the program's static TLS
/// block, the same on every thread (checked at each CPU's registration, [`check_fs_offsets`]);
/// they are computed once, on first use.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct FsOffsets {
    preempt_count: isize,
    irqs_masked: isize,
    cpu_number: isize,
    core_flags: isize,
    hooks: isize,
    pending: isize,
    softlockup_touched: isize,
}

/// The offsets; `preempt_count == 0` until computed (a real offset is never 0: `%fs:0` is the
/// thread control block's self pointer).
static FS_OFFSETS: [AtomicIsize; 7] = [const { AtomicIsize::new(0) }; 7];

/// This thread's offsets of the hot words from its thread pointer.
fn fs_offsets_here() -> FsOffsets {
    let tp: usize;
    // SAFETY: on x86-64 Linux the word at %fs:0 is the thread control block's pointer to
    // itself (the thread pointer); reading it has no side effect.
    unsafe { std::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags)) };
    let off = |a: usize| a.wrapping_sub(tp) as isize;
    with(|l| FsOffsets {
        preempt_count: off(l.preempt_count.0.as_ptr() as usize),
        irqs_masked: off(l.irqs_masked.as_ptr() as usize),
        cpu_number: off(l.cpu_number.as_ptr() as usize),
        core_flags: off(l.core_flags.as_ptr() as usize),
        hooks: off(l.hooks.as_ptr() as usize),
        pending: off(l.pending.as_ptr() as usize),
        softlockup_touched: off(l.softlockup_touched.as_ptr() as usize),
    })
}

#[cold]
#[inline(never)]
fn init_fs_offsets() -> FsOffsets {
    let o = fs_offsets_here();
    for (i, v) in
        [o.irqs_masked, o.cpu_number, o.core_flags, o.hooks, o.pending, o.softlockup_touched].into_iter().enumerate()
    {
        FS_OFFSETS[i + 1].store(v, Ordering::Relaxed);
    }
    FS_OFFSETS[0].store(o.preempt_count, Ordering::Release); // last: its being set means all are
    o
}

fn fs_offsets_known() -> FsOffsets {
    let g = |i: usize| FS_OFFSETS[i].load(Ordering::Acquire);
    FsOffsets {
        preempt_count: g(0),
        irqs_masked: g(1),
        cpu_number: g(2),
        core_flags: g(3),
        hooks: g(4),
        pending: g(5),
        softlockup_touched: g(6),
    }
}

/// Checks, on a thread becoming a CPU, that its hot words sit where every other thread's do.
pub(crate) fn check_fs_offsets() {
    let known = fs_offsets_known();
    if known.preempt_count == 0 {
        init_fs_offsets();
    } else if known != fs_offsets_here() {
        crate::cpu::die(
            "BUG: per-CPU words are not in the program's static TLS block (is arch in a dlopen'd library?)",
        );
    }
}

/// The offset of hot word `i` (the index in [`FS_OFFSETS`]), computing all on first use.
#[inline(always)]
fn off(i: usize) -> isize {
    match FS_OFFSETS[i].load(Ordering::Relaxed) {
        0 => {
            let o = init_fs_offsets();
            [o.preempt_count, o.irqs_masked, o.cpu_number, o.core_flags, o.hooks, o.pending, o.softlockup_touched][i]
        }
        o => o,
    }
}

#[inline(always)]
fn pc_off() -> isize {
    off(0)
}

#[inline(always)]
pub(crate) fn mask_off() -> isize {
    off(1)
}

/// One 4-byte `%fs`-relative load of hot word `i`.
#[inline(always)]
fn load_u32(i: usize) -> u32 {
    let v: u32;
    // SAFETY: a 4-byte load of this thread's hot word `i`, a `Cell<u32>` (see `FsOffsets`).
    unsafe {
        std::arch::asm!("mov {v:e}, dword ptr fs:[{o}]", o = in(reg) off(i), v = lateout(reg) v, options(nostack, readonly, preserves_flags))
    };
    v
}

/// The core's number for the CPU this thread is (0 on other threads), by one `%fs`-relative
/// load: right on whatever thread the calling task runs now, and inlinable.
#[inline(always)]
pub fn cpu_number() -> u32 {
    load_u32(2)
}

/// The core's per-CPU flags word (0 on threads that are not CPUs), by one `%fs`-relative
/// load: for flags the core tests on hot paths (a tracer's hooks), on whatever thread the
/// task runs now.
#[inline(always)]
pub fn core_flags() -> u32 {
    load_u32(3)
}

/// Sets this CPU's flags word (see [`core_flags`]).
#[inline(always)]
pub fn set_core_flags(v: u32) {
    // SAFETY: a 4-byte store into this thread's `core_flags` cell (see `FsOffsets`); no
    // reference into the cell is held across it.
    unsafe {
        std::arch::asm!("mov dword ptr fs:[{o}], {v:e}", o = in(reg) off(3), v = in(reg) v, options(nostack, preserves_flags))
    };
}

/// Takes this thread's pending lines (those that fired while masked): one `xchg` with the
/// word in memory, which a signal cannot split (see the module docs).
#[inline(always)]
pub(crate) fn take_pending() -> u64 {
    let mut v: u64 = 0;
    // SAFETY: `xchg` of this thread's `pending` word, an `AtomicU64` (see `FsOffsets`): an
    // atomic read-modify-write of those 8 bytes only.
    unsafe {
        std::arch::asm!("xchg qword ptr fs:[{o}], {v}", o = in(reg) off(5), v = inout(reg) v, options(nostack, preserves_flags))
    };
    v
}

/// This thread's pending lines, by one `%fs`-relative load.
#[inline(always)]
pub(crate) fn pending() -> u64 {
    let v: u64;
    // SAFETY: an 8-byte load of this thread's `pending` word (see `FsOffsets`).
    unsafe {
        std::arch::asm!("mov {v}, qword ptr fs:[{o}]", o = in(reg) off(5), v = lateout(reg) v, options(nostack, readonly, preserves_flags))
    };
    v
}

/// The core's hooks on a CPU thread (`None` elsewhere), by one `%fs`-relative load.
#[inline(always)]
pub(crate) fn hooks() -> Option<&'static Hooks> {
    let v: usize;
    // SAFETY: an 8-byte load of this thread's `hooks` cell, a `Cell<Option<&'static Hooks>>`
    // (see `FsOffsets`): the null-pointer-optimised option is a nullable pointer, and a
    // non-null one was stored from a `&'static Hooks`.
    unsafe {
        std::arch::asm!("mov {v}, qword ptr fs:[{o}]", o = in(reg) off(4), v = lateout(reg) v, options(nostack, readonly, preserves_flags))
    };
    // SAFETY: as above: 0 or the address of a `'static` Hooks.
    unsafe { (v as *const Hooks).as_ref() }
}

/// One instruction on this thread's `preempt_count`: `$insn dword ptr fs:[off], v`.
macro_rules! pc_rmw {
    ($insn:literal, $v:expr) => {
        // SAFETY: `fs:[off]` is this thread's `preempt_count` (see `FsOffsets`); the
        // instruction writes only those 4 bytes and the flags, and no `&mut` to the word exists
        // (it is a `Cell`).
        unsafe {
            std::arch::asm!(concat!($insn, " dword ptr fs:[{o}], {v:e}"), o = in(reg) pc_off(), v = in(reg) $v, options(nostack))
        }
    };
}

/// The raw `preempt_count` word of this CPU.
#[inline(always)]
pub fn preempt_count_raw() -> u32 {
    let v: u32;
    // SAFETY: a 4-byte load of this thread's `preempt_count` (see `FsOffsets`).
    unsafe {
        std::arch::asm!("mov {v:e}, dword ptr fs:[{o}]", o = in(reg) pc_off(), v = lateout(reg) v, options(nostack, readonly, preserves_flags))
    };
    v
}

/// Sets the raw `preempt_count` word of this CPU.
#[inline(always)]
pub fn preempt_count_set_raw(v: u32) {
    pc_rmw!("mov", v);
}

/// Adds `v` to the raw word and returns the new value (wrapping, as the hardware would).
///
/// The add is one `add` instruction on the word in memory, as Linux's `incl
/// %gs:__preempt_count`: the interrupt handler changes this word for the interrupted code (it
/// folds `need_resched` in). The new value is read after the add, so it includes whatever a
/// signal did since.
#[inline(always)]
pub fn preempt_count_add(v: u32) -> u32 {
    pc_rmw!("add", v);
    preempt_count_raw()
}

/// Subtracts `v` from the raw word and returns the new value: with need_resched folded in
/// inverted (as the core does), a result of zero means "count is zero and a reschedule is due".
/// One `sub` instruction, for the reason [`preempt_count_add`] gives.
#[inline(always)]
pub fn preempt_count_sub(v: u32) -> u32 {
    pc_rmw!("sub", v);
    preempt_count_raw()
}

/// Clears `bits` of the raw word in one `and` instruction (see [`preempt_count_add`]).
#[inline(always)]
pub fn preempt_count_clear_bits(bits: u32) {
    pc_rmw!("and", !bits);
}

/// Sets `bits` of the raw word in one `or` instruction (see [`preempt_count_add`]).
#[inline(always)]
pub fn preempt_count_set_bits(bits: u32) {
    pc_rmw!("or", bits);
}

/// This thread's soft IRQ mask (`true` = masked), by one `%fs`-relative load.
#[inline(always)]
pub(crate) fn irqs_masked() -> bool {
    let v: u8;
    // SAFETY: a 1-byte load of this thread's `irqs_masked` (see `FsOffsets`); a `bool`
    // cell only ever holds 0 or 1.
    unsafe {
        std::arch::asm!("mov {v}, byte ptr fs:[{o}]", o = in(reg) mask_off(), v = lateout(reg_byte) v, options(nostack, readonly, preserves_flags))
    };
    v != 0
}

/// Sets this thread's soft IRQ mask, by one `%fs`-relative store.
#[inline(always)]
pub(crate) fn set_irqs_masked(masked: bool) {
    // SAFETY: a 1-byte store of 0 or 1 into this thread's `irqs_masked` cell (see
    // `FsOffsets`); no reference into the cell is held across it.
    unsafe {
        std::arch::asm!("mov byte ptr fs:[{o}], {v}", o = in(reg) mask_off(), v = in(reg_byte) masked as u8, options(nostack, preserves_flags))
    };
}

/// True on a thread registered as a CPU.
pub(crate) fn is_cpu_thread() -> bool {
    hooks().is_some()
}

/// Notes that this CPU passed a place where it could reschedule (Linux's
/// `touch_softlockup_watchdog`): the soft-lockup check on its next tick sees it.
#[inline(always)]
pub fn touch_softlockup() {
    // SAFETY: a 1-byte store of 1 (`true`) into this thread's `softlockup_touched` cell, a
    // `Cell<bool>` (see `FsOffsets`); no reference into the cell is held across it.
    unsafe { std::arch::asm!("mov byte ptr fs:[{o}], 1", o = in(reg) off(6), options(nostack, preserves_flags)) };
}

/// Takes the note [`touch_softlockup`] left: true if the CPU passed such a place since the
/// last call.
pub fn take_softlockup_touch() -> bool {
    with(|l| l.softlockup_touched.replace(false))
}

/// True while the core's interrupt hook runs on this CPU (hard-IRQ context).
pub fn in_irq() -> bool {
    with(|l| l.in_irq.get())
}
