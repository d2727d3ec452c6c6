//! Where a timer wakeup's time went, taken as rtla's `timerlat` takes it: the stamps of a
//! task's last local timer wakeup, for tasks that ask for them (`TaskBuilder::timerlat`).
//!
//! **Mechanism.** The CPU notes when each interrupt entered and the IP it interrupted
//! ([`CpuStamps`]). When the hrtimer wakes a tracked task on its own CPU, the task takes the
//! interrupt's entry and IP, and the CPU remembers it as pending. The interrupt's exit stamps
//! the start and the end of its decision (for the patch models, the arming); the place where
//! the CPU gives itself up stamps the point (a preemption point, a redirected return, an armed
//! `int3`, the system call's exit); `__schedule` stamps the start of the switch to the task and
//! ends the pending state. The task, once it runs, takes the stamps ([`WakeupStamps::take`])
//! and with its deadline and its own clock splits its lateness into six parts that add up to
//! it exactly ([`WakeupParts`]).
//!
//! **Invariant.** Data only (atomics stamped by the CPU that owns the wakeup, with IRQs
//! masked): this file imports nothing. A stamp missing or out of order makes the wakeup
//! unexplained, never a guessed part.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// What a CPU notes at every interrupt entry, and the tracked wakeup it owes stamps to.
#[derive(Default)]
pub(crate) struct CpuStamps {
    /// When the interrupt being handled entered (`Arch::now_ns`).
    pub(crate) irq_entry: AtomicU64,
    /// The IP it interrupted.
    pub(crate) irq_ip: AtomicUsize,
    /// The tracked task woken here and not yet switched to (pid + 1; 0: none).
    pub(crate) pending: AtomicUsize,
}

/// The stamps of one timer wakeup, in ns on `Arch::now_ns`'s clock (0: not taken).
#[derive(Default)]
pub(crate) struct WakeupStamps {
    irq_entry: AtomicU64,
    exit_start: AtomicU64,
    irq_exit: AtomicU64,
    point: AtomicU64,
    resched: AtomicU64,
    /// Whether the switch was a preemption from the interrupt path (no point of its own).
    preempted: AtomicBool,
    held_ip: AtomicUsize,
}

/// How a switch to a tracked task came about, for [`WakeupStamps::resched`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resched {
    /// Preempted on the interrupt's way out (`preempt_schedule_irq`, `preempt_schedule`).
    Preempt,
    /// The CPU's task gave the CPU up itself (a point, the system call's exit, a sleep).
    Yield,
}

impl WakeupStamps {
    /// The hrtimer woke the task: a new wakeup, entered at `irq_entry` over `held_ip`.
    pub(crate) fn woken(&self, irq_entry: u64, held_ip: usize) {
        for s in [&self.exit_start, &self.irq_exit, &self.point, &self.resched] {
            s.store(0, Ordering::Relaxed);
        }
        self.irq_entry.store(irq_entry, Ordering::Relaxed);
        self.held_ip.store(held_ip, Ordering::Relaxed);
    }

    /// The waking interrupt's exit decided between `start` and `end` (a later interrupt's
    /// exit, before the task ran, is not its: the first one counts).
    pub(crate) fn irq_exit(&self, start: u64, end: u64) {
        if self.exit_start.compare_exchange(0, start, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.irq_exit.store(end, Ordering::Relaxed);
        }
    }

    /// The CPU reached the place where it gives itself up, at `now` (the first such place).
    pub(crate) fn point(&self, now: u64) {
        let _ = self.point.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// `__schedule` started the switch to the task at `now`. Without a point of its own, a
    /// preemption's point is the interrupt's exit (nothing was waited for), a yield's is now
    /// (all of it was waited for).
    pub(crate) fn resched(&self, now: u64, how: Resched) {
        self.resched.store(now, Ordering::Relaxed);
        self.preempted.store(how == Resched::Preempt, Ordering::Relaxed);
        let at = if how == Resched::Preempt { self.irq_exit.load(Ordering::Relaxed) } else { now };
        self.point(at);
    }

    /// Takes the stamps of the last wakeup (and clears them): the parts of the lateness of a
    /// wakeup due at `deadline` and running at `run`, or `None` when a stamp is missing or out
    /// of order (a wakeup by something else than the timer, or on another CPU).
    pub(crate) fn take(&self, deadline: u64, run: u64) -> Option<WakeupParts> {
        let get = |s: &AtomicU64| s.swap(0, Ordering::Relaxed);
        let at = [
            deadline,
            get(&self.irq_entry),
            get(&self.exit_start),
            get(&self.irq_exit),
            get(&self.point),
            get(&self.resched),
            run,
        ];
        let preempted = self.preempted.swap(false, Ordering::Relaxed);
        let held_ip = self.held_ip.swap(0, Ordering::Relaxed);
        if at[1..6].contains(&0) || at.windows(2).any(|w| w[0] > w[1]) {
            return None;
        }
        let d = |i: usize| at[i + 1] - at[i];
        Some(WakeupParts { ns: [d(0), d(1), d(2), d(3), d(4), d(5)], held_ip, preempted })
    }
}

/// A timer wakeup's lateness in six parts that add up to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WakeupParts {
    /// In ns, [`WakeupParts::NAMES`] in order: the host's delivery of the timer interrupt (deadline
    /// to the handler's entry), the handler (the tick, the hrtimer, the wakeup), the exit's
    /// decision (for the patch models the arming: look-up, unwind, arm, redirect), the wait
    /// for the CPU's task to reach a place where it gives the CPU up (a point, the system
    /// call's exit), serving it (the point's hook or the preemption path, to `__schedule`),
    /// and the switch (`__schedule` to the task running, its system call's exit included).
    pub ns: [u64; 6],
    /// The IP the waking interrupt found the CPU at: the code that held it (0: the interrupt
    /// was replayed when IRQs came on again, so an IRQs-off section held it).
    pub held_ip: usize,
    /// Whether the task got the CPU by preemption on the interrupt's path (no point waited for).
    pub preempted: bool,
}

impl WakeupParts {
    /// The parts' names, in order.
    pub const NAMES: [&'static str; 6] = ["delivery", "handler", "exit", "wait", "serve", "switch"];

    /// The lateness they add up to.
    pub fn total(&self) -> u64 {
        self.ns.iter().sum()
    }
}
