//! Per-CPU words: the state a CPU thread keeps in thread-local storage.
//!
//! A CPU is a host thread, so per-CPU variables are thread-local. The hot words
//! (`preempt_count`, the soft IRQ mask, the pending lines, the CPU number, the core's flags,
//! the hooks pointer and a few flags) are a block of the program's static TLS defined in
//! assembly below, reached by one `%fs`-relative instruction with a link-time offset, as Linux
//! reaches `__preempt_count` through `%gs`: safe from a signal handler, inlinable, and right on
//! whatever thread the task runs on when it executes. The rest are a `thread_local!` with
//! `const` initialisers and no destructors, reached through [`with`].
//!
//! The signal handler and the code it interrupts share these words; both run on one thread, so
//! a handler runs to completion before the interrupted code resumes, and a plain load and
//! store suffice for a word the handler only reads or puts back as it found it. A word the
//! handler *changes* for the interrupted code (the pending lines, `preempt_count`, into which
//! it folds `need_resched`) is changed only by single read-modify-write instructions on the
//! word in memory (`add`, `sub`, `and`, `or`, `xchg`), which a signal cannot split.
//!
//! The raw `preempt_count` lives here, as Linux keeps `__preempt_count` in
//! `arch/x86/include/asm/preempt.h`; its bit layout is the core's (`kernel::preempt`), except
//! [`PREEMPT_OFFSET`], which the global allocator needs and which the core checks it agrees with.

use crate::switch::TaskContext;
use crate::Hooks;
use std::cell::Cell;
use std::sync::atomic::AtomicU64;

/// One `preempt_disable()` worth of `preempt_count`: the low byte counts disable nesting.
pub const PREEMPT_OFFSET: u32 = 1;

pub(crate) struct CpuLocal {
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
            irr: Cell::new(std::ptr::null()),
            current: Cell::new(std::ptr::null()),
            last: Cell::new(std::ptr::null()),
            release: Cell::new([std::ptr::null(); 2]),
        }
    };
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

// The hot words: a block of this thread's static TLS, defined here so that every access is one
// `%fs`-relative instruction with a link-time offset (`sym@tpoff`), as Linux reaches
// `__preempt_count` through `%gs`. The instruction reads the thread pointer when it executes,
// so it is right on whatever thread the task runs on, and it may be inlined anywhere. `.tbss`:
// zero on every new thread. Layout (bytes): 0 `preempt_count` (u32), 4 the CPU number (u32),
// 8 the core's flags (u32), 12 the soft IRQ mask (u8, 0 or 1), 13 the soft-lockup touch (u8),
// 14 "in the core's IRQ hook" (u8), 15 "in the interrupt signal handler" (u8), 16 the pending
// lines (u64), 24 the hooks pointer (u64, 0 = none). The program is an
// executable (local-exec TLS); a shared object could not link these relocations.
std::arch::global_asm!(
    ".pushsection .tbss,\"awT\",@nobits",
    ".balign 8",
    ".globl atomkernel_percpu_hot",
    ".hidden atomkernel_percpu_hot",
    ".type atomkernel_percpu_hot, @object",
    ".size atomkernel_percpu_hot, 32",
    "atomkernel_percpu_hot:",
    ".zero 32",
    ".popsection",
);

/// A 4-byte load of the hot word at byte `$off` of the block.
macro_rules! hot_load_u32 {
    ($off:literal) => {{
        let v: u32;
        // SAFETY: a 4-byte load from this thread's hot-word block (see above), inside it.
        unsafe {
            std::arch::asm!(concat!("mov {v:e}, dword ptr fs:[atomkernel_percpu_hot@tpoff + ", $off, "]"), v = lateout(reg) v, options(nostack, readonly, preserves_flags))
        };
        v
    }};
}

/// One instruction `$insn` with a 4-byte operand on the hot word at byte `$off`: a store or a
/// read-modify-write in memory, which a signal cannot split.
macro_rules! hot_op_u32 {
    ($insn:literal, $off:literal, $v:expr) => {
        // SAFETY: the instruction writes only those 4 bytes of this thread's hot-word block
        // (see above) and the flags (asm! without `preserves_flags`).
        unsafe {
            std::arch::asm!(concat!($insn, " dword ptr fs:[atomkernel_percpu_hot@tpoff + ", $off, "], {v:e}"), v = in(reg) $v, options(nostack))
        }
    };
}

/// A 1-byte store of `$v` (0 or 1) into the hot byte at `$off`.
macro_rules! hot_store_u8 {
    ($off:literal, $v:expr) => {
        // SAFETY: a 1-byte store into this thread's hot-word block (see above), inside it.
        unsafe {
            std::arch::asm!(concat!("mov byte ptr fs:[atomkernel_percpu_hot@tpoff + ", $off, "], {v}"), v = in(reg_byte) $v, options(nostack, preserves_flags))
        }
    };
}

/// A 1-byte load of the hot byte at `$off`.
macro_rules! hot_load_u8 {
    ($off:literal) => {{
        let v: u8;
        // SAFETY: a 1-byte load from this thread's hot-word block (see above), inside it.
        unsafe {
            std::arch::asm!(concat!("mov {v}, byte ptr fs:[atomkernel_percpu_hot@tpoff + ", $off, "]"), v = lateout(reg_byte) v, options(nostack, readonly, preserves_flags))
        };
        v
    }};
}

/// An 8-byte load of the hot word at `$off`.
macro_rules! hot_load_u64 {
    ($off:literal) => {{
        let v: u64;
        // SAFETY: an 8-byte load from this thread's hot-word block (see above), inside it.
        unsafe {
            std::arch::asm!(concat!("mov {v}, qword ptr fs:[atomkernel_percpu_hot@tpoff + ", $off, "]"), v = lateout(reg) v, options(nostack, readonly, preserves_flags))
        };
        v
    }};
}

/// One instruction `$insn` with an 8-byte register operand on the hot word at `$off`.
macro_rules! hot_op_u64 {
    ($insn:literal, $off:literal, $v:expr) => {
        // SAFETY: the instruction writes only those 8 bytes of this thread's hot-word block
        // (see above) and the flags.
        unsafe {
            std::arch::asm!(concat!($insn, " qword ptr fs:[atomkernel_percpu_hot@tpoff + ", $off, "], {v}"), v = in(reg) $v, options(nostack))
        }
    };
}

/// The core's number for the CPU this thread is (0 on other threads), by one `%fs`-relative
/// load: right on whatever thread the calling task runs now, and inlinable.
#[inline(always)]
pub fn cpu_number() -> u32 {
    hot_load_u32!("4")
}

/// Gives this thread its CPU number (see [`cpu_number`]).
pub(crate) fn set_cpu_number(n: u32) {
    hot_op_u32!("mov", "4", n);
}

/// The core's per-CPU flags word (0 on threads that are not CPUs), by one `%fs`-relative
/// load: for flags the core tests on hot paths (a tracer's hooks), on whatever thread the
/// task runs now.
#[inline(always)]
pub fn core_flags() -> u32 {
    hot_load_u32!("8")
}

/// Sets this CPU's flags word (see [`core_flags`]).
#[inline(always)]
pub fn set_core_flags(v: u32) {
    hot_op_u32!("mov", "8", v);
}

/// Takes this thread's pending lines (those that fired while masked): one `xchg` with the
/// word in memory, which a signal cannot split (see the module docs).
#[inline(always)]
pub(crate) fn take_pending() -> u64 {
    let mut v: u64 = 0;
    // SAFETY: `xchg` of this thread's pending word (byte 16 of the hot block): an atomic
    // read-modify-write of those 8 bytes only.
    unsafe {
        std::arch::asm!("xchg qword ptr fs:[atomkernel_percpu_hot@tpoff + 16], {v}", v = inout(reg) v, options(nostack, preserves_flags))
    };
    v
}

/// This thread's pending lines, by one `%fs`-relative load.
#[inline(always)]
pub(crate) fn pending() -> u64 {
    hot_load_u64!("16")
}

/// Adds `lines` to this thread's pending lines: one `or` on the word in memory (a signal
/// handler does it for the code it interrupted, which may be between the two halves of a
/// load and a store of its own otherwise).
#[inline(always)]
pub(crate) fn add_pending(lines: u64) {
    hot_op_u64!("or", "16", lines);
}

/// Clears this thread's pending lines (a CPU's registration and teardown).
pub(crate) fn clear_pending() {
    hot_op_u64!("mov", "16", 0u64);
}

/// The core's hooks on a CPU thread (`None` elsewhere), by one `%fs`-relative load.
#[inline(always)]
pub(crate) fn hooks() -> Option<&'static Hooks> {
    let v = hot_load_u64!("24") as usize;
    // SAFETY: the hooks word is 0 or was stored by `set_hooks` from a `&'static Hooks`.
    unsafe { (v as *const Hooks).as_ref() }
}

/// Sets (or, with `None`, clears) this thread's hooks pointer (see [`hooks`]).
pub(crate) fn set_hooks(hooks: Option<&'static Hooks>) {
    let v = hooks.map_or(0, |h| h as *const Hooks as u64);
    hot_op_u64!("mov", "24", v);
}

/// The raw `preempt_count` word of this CPU.
#[inline(always)]
pub fn preempt_count_raw() -> u32 {
    hot_load_u32!("0")
}

/// Sets the raw `preempt_count` word of this CPU.
#[inline(always)]
pub fn preempt_count_set_raw(v: u32) {
    hot_op_u32!("mov", "0", v);
}

/// Adds `v` to the raw word and returns the new value (wrapping, as the hardware would).
///
/// The add is one `add` instruction on the word in memory, as Linux's `incl
/// %gs:__preempt_count`: the interrupt handler changes this word for the interrupted code (it
/// folds `need_resched` in). The new value is read after the add, so it includes whatever a
/// signal did since.
#[inline(always)]
pub fn preempt_count_add(v: u32) -> u32 {
    hot_op_u32!("add", "0", v);
    preempt_count_raw()
}

/// Subtracts `v` from the raw word and returns the new value: with need_resched folded in
/// inverted (as the core does), a result of zero means "count is zero and a reschedule is due".
/// One `sub` instruction, for the reason [`preempt_count_add`] gives.
#[inline(always)]
pub fn preempt_count_sub(v: u32) -> u32 {
    hot_op_u32!("sub", "0", v);
    preempt_count_raw()
}

/// Clears `bits` of the raw word in one `and` instruction (see [`preempt_count_add`]).
#[inline(always)]
pub fn preempt_count_clear_bits(bits: u32) {
    hot_op_u32!("and", "0", !bits);
}

/// Sets `bits` of the raw word in one `or` instruction (see [`preempt_count_add`]).
#[inline(always)]
pub fn preempt_count_set_bits(bits: u32) {
    hot_op_u32!("or", "0", bits);
}

/// This thread's soft IRQ mask (`true` = masked), by one `%fs`-relative load.
#[inline(always)]
pub(crate) fn irqs_masked() -> bool {
    hot_load_u8!("12") != 0
}

/// Sets this thread's soft IRQ mask, by one `%fs`-relative store.
#[inline(always)]
pub(crate) fn set_irqs_masked(masked: bool) {
    hot_store_u8!("12", masked as u8);
}

/// Sets the soft IRQ mask and returns what it was (a load and a store: a signal between them
/// finds the mask clear and leaves it as it found it).
#[inline(always)]
pub(crate) fn replace_irqs_masked(masked: bool) -> bool {
    let was = irqs_masked();
    set_irqs_masked(masked);
    was
}

/// True on a thread registered as a CPU.
pub(crate) fn is_cpu_thread() -> bool {
    hooks().is_some()
}

/// Notes that this CPU passed a place where it could reschedule (Linux's
/// `touch_softlockup_watchdog`): the soft-lockup check on its next tick sees it.
#[inline(always)]
pub fn touch_softlockup() {
    hot_store_u8!("13", 1u8);
}

/// Takes the note [`touch_softlockup`] left: true if the CPU passed such a place since the
/// last call.
pub fn take_softlockup_touch() -> bool {
    let touched = hot_load_u8!("13") != 0;
    hot_store_u8!("13", 0u8);
    touched
}

/// True while the core's interrupt hook runs on this CPU (hard-IRQ context).
pub fn in_irq() -> bool {
    hot_load_u8!("14") != 0
}

/// Sets whether the core's interrupt hook runs on this CPU; returns what it was.
#[inline(always)]
pub(crate) fn replace_in_irq(v: bool) -> bool {
    let was = in_irq();
    hot_store_u8!("14", v as u8);
    was
}

/// True while the interrupt signal handler runs the core's hook (not for a replay): the host
/// signal is then blocked, and [`crate::entry::irq_exit_irqs_on`] must unblock it.
#[inline(always)]
pub(crate) fn in_signal() -> bool {
    hot_load_u8!("15") != 0
}

/// Sets [`in_signal`]; returns what it was.
#[inline(always)]
pub(crate) fn replace_in_signal(v: bool) -> bool {
    let was = in_signal();
    hot_store_u8!("15", v as u8);
    was
}
