//! Per-CPU words: the state a CPU thread keeps in thread-local storage.
//!
//! A CPU is a host thread, so per-CPU variables are thread-local. The hot words
//! (`preempt_count`, the soft IRQ mask, the pending lines, the CPU number, the core's flags,
//! the hooks pointer and a few flags) are a block of the program's static TLS defined in
//! assembly below, reached by one `%fs`-relative instruction with a link-time offset, as Linux
//! reaches `__preempt_count` through `%gs`: safe from a signal handler, inlinable, and right on
//! whatever thread the task runs on when it executes. The rest are a `thread_local!` with
//! `const` initialisers and no destructors, reached through `with`.
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

pub use arch_api::PREEMPT_OFFSET;

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
// lines (u64), 24 the hooks pointer (u64, 0 = none), 32 the core's system calls since the
// CPU's last switch (u64), 40 the instance the CPU belongs to (`Arc::into_raw`, 0 = none),
// 48 how many borrows of it are open on this thread (u64). The program is an
// executable (local-exec TLS); a shared object could not link these relocations.
std::arch::global_asm!(
    ".pushsection .tbss,\"awT\",@nobits",
    ".balign 8",
    ".globl atomkernel_percpu_hot",
    ".hidden atomkernel_percpu_hot",
    ".type atomkernel_percpu_hot, @object",
    ".size atomkernel_percpu_hot, 56",
    "atomkernel_percpu_hot:",
    ".zero 56",
    ".popsection",
);

/// A load of the hot word at byte `$off` of the block into a `$ty`: `$dst` is the register
/// operand with its size (`"{v:e}, dword"`, `"{v}, qword"`, `"{v}, byte"`), `$class` its
/// register class.
macro_rules! hot_load {
    ($ty:ty, $class:ident, $dst:literal, $off:literal) => {{
        let v: $ty;
        // SAFETY: a load from this thread's hot-word block (see above), inside it.
        unsafe {
            std::arch::asm!(concat!("mov ", $dst, " ptr fs:[atomkernel_percpu_hot@tpoff + ", $off, "]"), v = lateout($class) v, options(nostack, readonly, preserves_flags))
        };
        v
    }};
}

/// One instruction `$insn` on the hot word at byte `$off` with the register operand `$v`: a
/// store (`mov`) or a read-modify-write in memory, which a signal cannot split. `$size` is
/// the memory operand's size (`dword`, `qword`, `byte`), `$src` the register operand and
/// `$class` its class.
macro_rules! hot_op {
    ($insn:literal, $size:literal, $src:literal, $class:ident, $off:literal, $v:expr $(, $opt:ident)?) => {
        // SAFETY: the instruction writes only that word of this thread's hot-word block (see
        // above), and the flags unless the caller says `preserves_flags` (a `mov`).
        unsafe {
            std::arch::asm!(concat!($insn, " ", $size, " ptr fs:[atomkernel_percpu_hot@tpoff + ", $off, "], ", $src), v = in($class) $v, options(nostack $(, $opt)?))
        }
    };
}

/// The core's number for the CPU this thread is (0 on other threads), by one `%fs`-relative
/// load: right on whatever thread the calling task runs now, and inlinable.
#[inline(always)]
pub fn cpu_number() -> u32 {
    hot_load!(u32, reg, "{v:e}, dword", "4")
}

/// Gives this thread its CPU number (see [`cpu_number`]).
pub(crate) fn set_cpu_number(n: u32) {
    hot_op!("mov", "dword", "{v:e}", reg, "4", n, preserves_flags);
}

/// The core's per-CPU flags word (0 on threads that are not CPUs), by one `%fs`-relative
/// load: for flags the core tests on hot paths (a tracer's hooks), on whatever thread the
/// task runs now.
#[inline(always)]
pub fn core_flags() -> u32 {
    hot_load!(u32, reg, "{v:e}, dword", "8")
}

/// Sets this CPU's flags word (see [`core_flags`]).
#[inline(always)]
pub fn set_core_flags(v: u32) {
    hot_op!("mov", "dword", "{v:e}", reg, "8", v, preserves_flags);
}

/// Sets `bits` of this CPU's flags word: one `or` on the word in memory, which a signal
/// cannot split, so a handler changing other bits meanwhile loses nothing.
#[inline(always)]
pub fn core_flags_set(bits: u32) {
    hot_op!("or", "dword", "{v:e}", reg, "8", bits);
}

/// Clears `bits` of this CPU's flags word: one `and` on the word in memory (see
/// [`core_flags_set`]).
#[inline(always)]
pub fn core_flags_clear(bits: u32) {
    hot_op!("and", "dword", "{v:e}", reg, "8", !bits);
}

/// Counts one system call on this CPU: one `add` on the word in memory, right on whatever
/// thread the calling task runs now.
#[inline(always)]
pub fn count_syscall() {
    hot_op!("add", "qword", "{v}", reg, "32", 1u64);
}

/// Takes this CPU's count of system calls since the last take (a load and a store: call where
/// no handler counts one, as the switch does with IRQs masked).
#[inline(always)]
pub fn take_syscall_count() -> u64 {
    let n = hot_load!(u64, reg, "{v}, qword", "32");
    hot_op!("mov", "qword", "{v}", reg, "32", 0u64, preserves_flags);
    n
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
    hot_load!(u64, reg, "{v}, qword", "16")
}

/// Adds `lines` to this thread's pending lines: one `or` on the word in memory (a signal
/// handler does it for the code it interrupted, which may be between the two halves of a
/// load and a store of its own otherwise).
#[inline(always)]
pub(crate) fn add_pending(lines: u64) {
    hot_op!("or", "qword", "{v}", reg, "16", lines);
}

/// Clears this thread's pending lines (a CPU's registration and teardown).
pub(crate) fn clear_pending() {
    hot_op!("mov", "qword", "{v}", reg, "16", 0u64, preserves_flags);
}

/// The core's hooks on a CPU thread (`None` elsewhere), by one `%fs`-relative load.
#[inline(always)]
pub(crate) fn hooks() -> Option<&'static Hooks> {
    let v = hot_load!(u64, reg, "{v}, qword", "24") as usize;
    // SAFETY: the hooks word is 0 or was stored by `set_hooks` from a `&'static Hooks`.
    unsafe { (v as *const Hooks).as_ref() }
}

/// Sets (or, with `None`, clears) this thread's hooks pointer (see [`hooks`]).
pub(crate) fn set_hooks(hooks: Option<&'static Hooks>) {
    let v = hooks.map_or(0, |h| h as *const Hooks as u64);
    hot_op!("mov", "qword", "{v}", reg, "24", v, preserves_flags);
}

/// The raw `preempt_count` word of this CPU.
#[inline(always)]
pub fn preempt_count_raw() -> u32 {
    hot_load!(u32, reg, "{v:e}, dword", "0")
}

/// Sets the raw `preempt_count` word of this CPU.
#[inline(always)]
pub fn preempt_count_set_raw(v: u32) {
    hot_op!("mov", "dword", "{v:e}", reg, "0", v, preserves_flags);
}

/// Adds `v` to the raw word and returns the new value (wrapping, as the hardware would).
///
/// The add is one `add` instruction on the word in memory, as Linux's `incl
/// %gs:__preempt_count`: the interrupt handler changes this word for the interrupted code (it
/// folds `need_resched` in). The new value is read after the add, so it includes whatever a
/// signal did since.
#[inline(always)]
pub fn preempt_count_add(v: u32) -> u32 {
    hot_op!("add", "dword", "{v:e}", reg, "0", v);
    preempt_count_raw()
}

/// Subtracts `v` from the raw word and returns the new value: with need_resched folded in
/// inverted (as the core does), a result of zero means "count is zero and a reschedule is due".
/// One `sub` instruction, for the reason [`preempt_count_add`] gives.
#[inline(always)]
pub fn preempt_count_sub(v: u32) -> u32 {
    hot_op!("sub", "dword", "{v:e}", reg, "0", v);
    preempt_count_raw()
}

/// Clears `bits` of the raw word in one `and` instruction (see [`preempt_count_add`]).
#[inline(always)]
pub fn preempt_count_clear_bits(bits: u32) {
    hot_op!("and", "dword", "{v:e}", reg, "0", !bits);
}

/// Sets `bits` of the raw word in one `or` instruction (see [`preempt_count_add`]).
#[inline(always)]
pub fn preempt_count_set_bits(bits: u32) {
    hot_op!("or", "dword", "{v:e}", reg, "0", bits);
}

/// This thread's soft IRQ mask (`true` = masked), by one `%fs`-relative load.
#[inline(always)]
pub(crate) fn irqs_masked() -> bool {
    hot_load!(u8, reg_byte, "{v}, byte", "12") != 0
}

/// Sets this thread's soft IRQ mask, by one `%fs`-relative store.
#[inline(always)]
pub(crate) fn set_irqs_masked(masked: bool) {
    hot_op!("mov", "byte", "{v}", reg_byte, "12", masked as u8, preserves_flags);
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
    hot_op!("mov", "byte", "{v}", reg_byte, "13", 1u8, preserves_flags);
}

/// Takes the note [`touch_softlockup`] left: true if the CPU passed such a place since the
/// last call.
pub fn take_softlockup_touch() -> bool {
    let touched = hot_load!(u8, reg_byte, "{v}, byte", "13") != 0;
    hot_op!("mov", "byte", "{v}", reg_byte, "13", 0u8, preserves_flags);
    touched
}

/// True while the core's interrupt hook runs on this CPU (hard-IRQ context).
pub fn in_irq() -> bool {
    hot_load!(u8, reg_byte, "{v}, byte", "14") != 0
}

/// Sets whether the core's interrupt hook runs on this CPU; returns what it was.
#[inline(always)]
pub(crate) fn replace_in_irq(v: bool) -> bool {
    let was = in_irq();
    hot_op!("mov", "byte", "{v}", reg_byte, "14", v as u8, preserves_flags);
    was
}

/// True while the interrupt signal handler runs the core's hook (not for a replay): the host
/// signal is then blocked, and [`crate::entry::irq_exit_irqs_on`] must unblock it.
#[inline(always)]
pub(crate) fn in_signal() -> bool {
    hot_load!(u8, reg_byte, "{v}, byte", "15") != 0
}

/// Sets [`in_signal`]; returns what it was.
#[inline(always)]
pub(crate) fn replace_in_signal(v: bool) -> bool {
    let was = in_signal();
    hot_op!("mov", "byte", "{v}", reg_byte, "15", v as u8, preserves_flags);
    was
}

/// The instance word: the `Arc::into_raw` of the instance this CPU belongs to, 0 for none
/// (see `crate::instance`).
#[inline(always)]
pub(crate) fn instance() -> usize {
    hot_load!(u64, reg, "{v}, qword", "40") as usize
}

/// Sets the instance word.
pub(crate) fn set_instance(v: usize) {
    hot_op!("mov", "qword", "{v}", reg, "40", v as u64, preserves_flags);
}

/// Opens a borrow of the instance on this thread: one `add` on the word in memory.
#[inline(always)]
pub(crate) fn instance_borrow() {
    hot_op!("add", "qword", "{v}", reg, "48", 1u64);
}

/// Closes a borrow of the instance on this thread: one `sub` on the word in memory.
#[inline(always)]
pub(crate) fn instance_unborrow() {
    hot_op!("sub", "qword", "{v}", reg, "48", 1u64);
}

/// Borrows of the instance open on this thread.
pub(crate) fn instance_borrows() -> u64 {
    hot_load!(u64, reg, "{v}, qword", "48")
}
