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

/// The two hottest words, `preempt_count` and the soft IRQ mask, are reached without `with`:
/// by one `%fs`-relative instruction, as Linux reaches `__preempt_count` through `%gs`. The
/// instruction reads the thread pointer when it executes, so it is right on whatever thread
/// the task runs on, and it may be inlined anywhere. The words' offsets from the thread pointer
/// are those of the program's static TLS block, the same on every thread (checked at each CPU's
/// registration, [`check_fs_offsets`]); they are computed once, on first use.
static PREEMPT_COUNT_OFF: AtomicIsize = AtomicIsize::new(0);
static IRQS_MASKED_OFF: AtomicIsize = AtomicIsize::new(0);
static CPU_NUMBER_OFF: AtomicIsize = AtomicIsize::new(0);

/// This thread's offsets of the two hot words from its thread pointer.
fn fs_offsets_here() -> (isize, isize, isize) {
    let tp: usize;
    // SAFETY: on x86-64 Linux the word at %fs:0 is the thread control block's pointer to
    // itself (the thread pointer); reading it has no side effect.
    unsafe { std::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags)) };
    let (pc, m, n) = with(|l| {
        (l.preempt_count.0.as_ptr() as usize, l.irqs_masked.as_ptr() as usize, l.cpu_number.as_ptr() as usize)
    });
    (pc.wrapping_sub(tp) as isize, m.wrapping_sub(tp) as isize, n.wrapping_sub(tp) as isize)
}

#[cold]
#[inline(never)]
fn init_fs_offsets() -> (isize, isize, isize) {
    let (pc, m, n) = fs_offsets_here();
    CPU_NUMBER_OFF.store(n, Ordering::Relaxed);
    IRQS_MASKED_OFF.store(m, Ordering::Relaxed);
    PREEMPT_COUNT_OFF.store(pc, Ordering::Relaxed); // last: its being set means all are
    (pc, m, n)
}

/// Checks, on a thread becoming a CPU, that its hot words sit where every other thread's do.
pub(crate) fn check_fs_offsets() {
    let here = fs_offsets_here();
    let known = (
        PREEMPT_COUNT_OFF.load(Ordering::Relaxed),
        IRQS_MASKED_OFF.load(Ordering::Relaxed),
        CPU_NUMBER_OFF.load(Ordering::Relaxed),
    );
    if known.0 == 0 {
        init_fs_offsets();
    } else if known != here {
        crate::cpu::die(
            "BUG: per-CPU words are not in the program's static TLS block (is arch in a dlopen'd library?)",
        );
    }
}

#[inline(always)]
fn pc_off() -> isize {
    match PREEMPT_COUNT_OFF.load(Ordering::Relaxed) {
        0 => init_fs_offsets().0,
        o => o,
    }
}

#[inline(always)]
fn cpu_number_off() -> isize {
    match CPU_NUMBER_OFF.load(Ordering::Relaxed) {
        0 => init_fs_offsets().2,
        o => o,
    }
}

/// The core's number for the CPU this thread is (0 on other threads), by one `%fs`-relative
/// load: right on whatever thread the calling task runs now, and inlinable.
#[inline(always)]
pub fn cpu_number() -> u32 {
    let v: u32;
    // SAFETY: a 4-byte load of this thread's `cpu_number` cell (see `PREEMPT_COUNT_OFF`).
    unsafe {
        std::arch::asm!("mov {v:e}, dword ptr fs:[{o}]", o = in(reg) cpu_number_off(), v = lateout(reg) v, options(nostack, readonly, preserves_flags))
    };
    v
}

#[inline(always)]
pub(crate) fn mask_off() -> isize {
    match IRQS_MASKED_OFF.load(Ordering::Relaxed) {
        0 => init_fs_offsets().1,
        o => o,
    }
}

/// One instruction on this thread's `preempt_count`: `$insn dword ptr fs:[off], v`.
macro_rules! pc_rmw {
    ($insn:literal, $v:expr) => {
        // SAFETY: `fs:[off]` is this thread's `preempt_count` (see `PREEMPT_COUNT_OFF`); the
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
    // SAFETY: a 4-byte load of this thread's `preempt_count` (see `PREEMPT_COUNT_OFF`).
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
    // SAFETY: a 1-byte load of this thread's `irqs_masked` (see `PREEMPT_COUNT_OFF`); a `bool`
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
    // `PREEMPT_COUNT_OFF`); no reference into the cell is held across it.
    unsafe {
        std::arch::asm!("mov byte ptr fs:[{o}], {v}", o = in(reg) mask_off(), v = in(reg_byte) masked as u8, options(nostack, preserves_flags))
    };
}

/// True on a thread registered as a CPU.
pub(crate) fn is_cpu_thread() -> bool {
    with(|l| l.hooks.get().is_some())
}

/// Notes that this CPU passed a place where it could reschedule (Linux's
/// `touch_softlockup_watchdog`): the soft-lockup check on its next tick sees it.
#[inline(always)]
pub fn touch_softlockup() {
    with(|l| l.softlockup_touched.set(true));
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
