//! Tasks: a stackful kernel context, a scheduling policy and a result.
//!
//! **Mechanism.** A task owns an arch `TaskContext` (its own stack with a guard page). Its body
//! is a closure run by `fork::task_entry` on that stack; the value it returns (or the panic
//! that ended it) becomes its [`TaskResult`], which `TaskHandle::join` waits for. This file
//! is the task as data (its pid and CPU-mask types are `id.rs`'s): it imports no subsystem.
//!
//! **Invariant.** A task's stack is freed only after the task has switched away for the last
//! time (the arch layer's final switch unmaps it on the next task's stack), and a task's entry
//! closure runs exactly once.

pub(crate) mod id;
pub(crate) mod timerlat;

pub(crate) use id::{mask_of, NO_CPU};
pub use id::{CpuMask, TaskId};

use crate::arch::{Arch, IrqSpinLock, TaskContext, A};
use crate::sync::OnceLock;
use crate::wait::queue::WaitQueue;
use alloc::sync::Arc;
use alloc::{boxed::Box, format, string::String};
use core::panic::Location;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// The scheduling policy of a task (`sched_setscheduler`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// SCHED_FIFO at an rt priority 1..=99 (higher runs first).
    Fifo(u8),
    /// SCHED_RR at an rt priority 1..=99, with a time slice.
    Rr(u8),
    /// SCHED_NORMAL with a nice value -20..=19.
    Normal(i8),
    /// The per-CPU idle task.
    Idle,
}

impl Policy {
    /// The rt priority of an RT policy.
    pub fn rt_prio(self) -> Option<u8> {
        match self {
            Policy::Fifo(p) | Policy::Rr(p) => Some(p),
            _ => None,
        }
    }

    pub(crate) fn validate(self) -> Result<(), String> {
        match self {
            Policy::Fifo(p) | Policy::Rr(p) if !(1..=99).contains(&p) => {
                Err(format!("rt priority {p} is out of range 1..=99"))
            }
            Policy::Normal(n) if !(-20..=19).contains(&n) => Err(format!("nice {n} is out of range -20..=19")),
            Policy::Idle => Err("the idle policy is reserved for the idle task".into()),
            _ => Ok(()),
        }
    }
}

/// How a task ended: the value its body returned, or the oops that killed it (`oops: ...`,
/// naming the fault, the task and the CPU).
pub type TaskResult = Result<i64, String>;

/// Counters kept per task (read them with `TaskHandle::stats`).
#[derive(Debug, Default)]
pub(crate) struct TaskStats {
    pub(crate) voluntary_switches: AtomicU64,
    pub(crate) involuntary_switches: AtomicU64,
    pub(crate) irq_preemptions: AtomicU64,
    pub(crate) syscalls: AtomicU64,
    pub(crate) runtime_ns: AtomicU64,
}

/// A task's counters, as plain numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskStatsSnapshot {
    /// Times the task gave up the CPU by sleeping or waiting.
    pub voluntary_switches: u64,
    /// Times the task was switched out while still runnable.
    pub involuntary_switches: u64,
    /// Times an interrupt preempted it through the trampoline (`preempt_schedule_irq`).
    pub irq_preemptions: u64,
    /// System calls it made.
    pub syscalls: u64,
    /// CPU time it was charged, in ns (as of its last switch-out).
    pub runtime_ns: u64,
}

impl TaskStats {
    /// Adds `n` to one of the task's counters. Each has one writer at a time, the CPU running
    /// the task (or switching it out), handed over through `Task::on_cpu` with release and
    /// acquire: a load and a store suffice, with no locked instruction, and a reader on another
    /// thread sees whole values.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// [`TaskStats::add`] of one.
    pub(crate) fn bump(counter: &AtomicU64) {
        Self::add(counter, 1);
    }

    pub(crate) fn snapshot(&self) -> TaskStatsSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TaskStatsSnapshot {
            voluntary_switches: r(&self.voluntary_switches),
            involuntary_switches: r(&self.involuntary_switches),
            irq_preemptions: r(&self.irq_preemptions),
            syscalls: r(&self.syscalls),
            runtime_ns: r(&self.runtime_ns),
        }
    }
}

pub(crate) type TaskBody = Box<dyn FnOnce() -> i64 + Send>;

/// A task's shared, mostly immutable part. Scheduling state lives in the run queue's
/// `sched::rq::TaskSched` under the scheduler lock.
pub(crate) struct Task {
    pub(crate) id: TaskId,
    pub(crate) name: String,
    pub(crate) policy: Policy,
    /// Its context, set once at fork (its stack is unmapped by the final switch away from it).
    pub(crate) ctx: OnceLock<Arc<TaskContext>>,
    pub(crate) body: IrqSpinLock<Option<TaskBody>>,
    pub(crate) result: IrqSpinLock<Option<TaskResult>>,
    pub(crate) exited: WaitQueue,
    pub(crate) stats: TaskStats,
    /// Whether its timer wakeups are stamped ([`TaskBuilder::timerlat`]), and the stamps.
    pub(crate) timerlat: AtomicBool,
    pub(crate) wakeup: timerlat::WakeupStamps,
    /// The CPU whose run queue holds its scheduling state (`task_cpu`); changed only with
    /// that run queue and the new one locked.
    pub(crate) cpu: AtomicUsize,
    /// The CPU running it now, or [`NO_CPU`] (`p->on_cpu`): set by the CPU switching to
    /// it, cleared by the CPU that switched away from it once its stack is free.
    pub(crate) on_cpu: AtomicUsize,
    /// The CPUs it may run on (mirrors the run queue's copy, for lock-free readers).
    pub(crate) cpus_allowed: AtomicU64,
    /// The `preempt_count` it slept holding (a `BUG:` already reported), 0 normally: a
    /// migration of such a task is reported too.
    pub(crate) preempt_held: AtomicU32,
    /// The wait it is in, for the hung-task detector.
    pub(crate) wait: WaitNote,
}

impl Task {
    /// Its context: one load, no lock.
    pub(crate) fn context(&self) -> &Arc<TaskContext> {
        self.ctx.get().unwrap_or_else(|| A::die("BUG: switch to a task without a context"))
    }
}

/// Options for a new task.
#[derive(Clone, Debug)]
pub struct TaskBuilder {
    pub(crate) name: String,
    pub(crate) policy: Policy,
    pub(crate) kthread: bool,
    pub(crate) stack_size: Option<usize>,
    pub(crate) cpus: Option<u64>,
    pub(crate) timerlat: bool,
}

impl TaskBuilder {
    /// A SCHED_NORMAL, nice 0 user task called `name`.
    pub fn new(name: &str) -> Self {
        TaskBuilder {
            name: name.into(),
            policy: Policy::Normal(0),
            kthread: false,
            stack_size: None,
            cpus: None,
            timerlat: false,
        }
    }
    /// SCHED_FIFO at `prio`.
    pub fn fifo(mut self, prio: u8) -> Self {
        self.policy = Policy::Fifo(prio);
        self
    }
    /// SCHED_RR at `prio`.
    pub fn rr(mut self, prio: u8) -> Self {
        self.policy = Policy::Rr(prio);
        self
    }
    /// SCHED_NORMAL at `nice`.
    pub fn nice(mut self, nice: i8) -> Self {
        self.policy = Policy::Normal(nice);
        self
    }
    /// Stamps its timer wakeups (rtla's `timerlat`): after a `sleep_until`, the task reads where
    /// its lateness went with `time::wakeup_parts`. A few clock reads per wakeup of this task.
    pub fn timerlat(mut self) -> Self {
        self.timerlat = true;
        self
    }
    /// A kernel thread: runs in kernel mode from the start (no user mode to preempt).
    pub fn kthread(mut self) -> Self {
        self.kthread = true;
        self
    }
    /// Runs only on the CPUs of `mask` (bit `n` = CPU `n`; `sched_setaffinity`). A mask with
    /// no CPU of the instance makes the spawn panic with a message naming the mask.
    pub fn cpus(mut self, mask: u64) -> Self {
        self.cpus = Some(mask);
        self
    }
    /// A stack of `bytes` instead of the boot default.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }
}

/// Where and since when a task waits (Linux's `TASK_UNINTERRUPTIBLE` sleep with its caller).
#[derive(Default)]
pub(crate) struct WaitNote {
    /// When the wait began (ns on `Arch::now_ns`'s clock); 0 = not waiting.
    pub(crate) since: AtomicU64,
    pub(crate) place: IrqSpinLock<Option<&'static Location<'static>>>,
}

impl WaitNote {
    /// The task begins a wait at `place`.
    pub(crate) fn begin(&self, place: &'static Location<'static>) {
        *self.place.lock() = Some(place);
        self.since.store(A::now_ns().max(1), Ordering::Release);
    }

    /// The wait is over.
    pub(crate) fn end(&self) {
        self.since.store(0, Ordering::Release);
    }
}
