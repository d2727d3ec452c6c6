//! The per-CPU part of a kernel instance, and how code finds the CPU it runs on.
//!
//! **Mechanism.** An instance has `cpus=N` [`Cpu`]s, each driven by one host thread. The thread
//! knows its CPU number ([`Kernel::raw_cpu_id`], a thread-local read that is never inlined, so a
//! task that moves to another CPU thread never uses the old thread's value). Everything a CPU
//! owns is here: its run queue and counters, timers, IRQ raiser, softirqs, the models'
//! per-CPU state, the reschedule and function-call IPI mailboxes, and its figures for the
//! report. Other CPUs read and write only the atomics and the locked parts.
//!
//! **Invariant.** Code that uses its own CPU's state through [`Kernel::this_cpu`] is not
//! preemptible (count raised or IRQs masked) or is a task bound to that one CPU: otherwise it
//! could move between reading the CPU number and using it. Breaking that is a `BUG:` report
//! naming the task, pid, CPU and place (Linux's `debug_smp_processor_id`).
//! [`Kernel::raw_this_cpu`] skips the check where a stale CPU is harmless (counters).

use crate::arch::{Arch, IrqRaiser, IrqSpinLock, Timer, A};
use crate::sched::rq::{Mode, Rq};
use crate::softirq::state::SoftirqCpu;
use crate::sync::OnceLock;
use crate::task::TaskId;
use crate::time::state::TimerQueue;
use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// A CPU's figures for the report.
#[derive(Debug, Default)]
pub(crate) struct CpuStats {
    pub(crate) migrations_in: AtomicU64,
    pub(crate) ipis_sent: AtomicU64,
    pub(crate) ipis_received: AtomicU64,
    pub(crate) idle_ns: AtomicU64,
}

/// The bits of a CPU's core flags word (`Arch::core_flags`: on the hosted arch one `%fs`-relative load),
/// for tests on hot paths that must not reach the instance:
/// | bit | set while |
/// | --- | --- |
/// | [`CORE_FLAG_TRACE_HOOKS`] | a latency tracer of the instance needs the point and section hooks |
/// | [`CORE_FLAG_PER_EVENT_SITES`] | the model arms sites per RT event (the patch models): a `call` of `rt_reschedule` then means some CPU armed that site |
/// | [`CORE_FLAG_USER_MODE`] | the running task is in user mode (clear: kernel mode, also on a CPU thread not yet running a task) |
pub(crate) const CORE_FLAG_TRACE_HOOKS: u32 = 1;
/// See [`CORE_FLAG_TRACE_HOOKS`].
pub(crate) const CORE_FLAG_PER_EVENT_SITES: u32 = 2;
/// See [`CORE_FLAG_TRACE_HOOKS`].
pub(crate) const CORE_FLAG_USER_MODE: u32 = 4;

/// Sets or clears `bit` of this CPU's core flags: one instruction on the word, so a handler
/// changing another bit meanwhile loses nothing.
#[inline(always)]
pub(crate) fn set_core_flag(bit: u32, on: bool) {
    if on {
        A::core_flags_set(bit);
    } else {
        A::core_flags_clear(bit);
    }
}

/// The running task's mode, on whatever CPU it runs now: one `%fs`-relative load of the CPU's
/// core flags, which the switch sets from the incoming task's mode, so no IRQ mask is needed
/// to read it (a task that moves finds its own mode on the new CPU).
#[inline(always)]
pub(crate) fn mode() -> Mode {
    if A::core_flags() & CORE_FLAG_USER_MODE != 0 {
        Mode::User
    } else {
        Mode::Kernel
    }
}

/// Sets the running task's mode (see [`mode`]).
#[inline(always)]
pub(crate) fn set_mode(mode: Mode) {
    set_core_flag(CORE_FLAG_USER_MODE, mode == Mode::User);
}

/// No task in [`Cpu::prev_after`].
pub(crate) const NO_PREV: usize = usize::MAX;

/// One CPU of an instance.
pub(crate) struct Cpu {
    pub(crate) id: usize,
    /// The running task, mirrored from the run queue at every switch for lock-free readers.
    pub(crate) curr: AtomicUsize,
    /// The task this CPU just switched away from, whose `on_cpu` the next task clears
    /// ([`NO_PREV`] when none); touched only by this CPU, with IRQs masked, so a load and a
    /// store suffice.
    pub(crate) prev_after: AtomicUsize,
    pub(crate) irqs: AtomicU64,
    pub(crate) raiser: OnceLock<IrqRaiser>,
    pub(crate) tick_timer: OnceLock<Timer>,
    pub(crate) hrtimer: OnceLock<Timer>,
    pub(crate) retry_timer: OnceLock<Timer>,
    /// Consecutive preemption retries that found foreign code (the retry's backoff exponent).
    pub(crate) retry_backoff: AtomicU8,
    /// The preemption models' per-CPU state.
    pub(crate) model: crate::model::state::ModelCpu,
    /// The run queue.
    pub(crate) rq: IrqSpinLock<Rq>,
    /// Run-queue locks this CPU's thread holds (bit per CPU), for the lock-order check.
    pub(crate) held_rqs: AtomicU64,
    /// Sleepers' deadlines on this CPU's hrtimer.
    pub(crate) timers: IrqSpinLock<TimerQueue>,
    /// Softirqs, tasklets and `ksoftirqd/N` of this CPU.
    pub(crate) softirq: SoftirqCpu,
    /// The IPI mailboxes (`smp.rs`).
    pub(crate) ipi: crate::smp::state::IpiMailbox,
    pub(crate) stats: CpuStats,
    /// The last interrupt's entry and IP, and the tracked wakeup pending here (`timerlat`).
    pub(crate) stamps: crate::task::timerlat::CpuStamps,
}

impl Cpu {
    /// CPU `id`, with its softirq state (made by `softirq`, whose actions it names).
    pub(crate) fn new(id: usize, rr_timeslice: u32, softirq: SoftirqCpu) -> Cpu {
        Cpu {
            id,
            curr: AtomicUsize::new(0),
            prev_after: AtomicUsize::new(NO_PREV),
            irqs: AtomicU64::new(0),
            raiser: OnceLock::new(),
            tick_timer: OnceLock::new(),
            hrtimer: OnceLock::new(),
            retry_timer: OnceLock::new(),
            retry_backoff: AtomicU8::new(0),
            model: Default::default(),
            rq: IrqSpinLock::new(Rq::new(id, rr_timeslice)),
            held_rqs: AtomicU64::new(0),
            timers: IrqSpinLock::new(TimerQueue::default()),
            softirq,
            ipi: Default::default(),
            stats: Default::default(),
            stamps: Default::default(),
        }
    }

    /// The running task (lock-free; exact when read on this CPU with IRQs masked).
    pub(crate) fn curr(&self) -> TaskId {
        self.curr.load(Ordering::Relaxed)
    }
}
