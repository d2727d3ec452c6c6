//! The scheduler: per-CPU run queues, the RT, fair and idle classes, wakeups, placement and
//! balancing across CPUs, and the tick.
//!
//! **Mechanism.** Each CPU has one [`Rq`] under its own `IrqSpinLock` (Linux's
//! `rq->lock`). An `Rq` holds its class queues and the scheduling state (`rq::TaskSched`) of
//! every task; the copy that counts for a task is the one in the run queue of the task's CPU
//! (`Task::cpu`, Linux's `task_cpu`), which changes only with both run queues locked
//! (`rq_lock::double_rq_lock`), so locking the run queue a task names and finding it still
//! named there pins the task's state (`task_rq_lock`). Classes are strictly ordered: any
//! runnable RT task (SCHED_FIFO/SCHED_RR, highest rt priority first, FIFO within a priority)
//! runs before any fair task on its CPU; fair tasks (SCHED_NORMAL) share a CPU in proportion to
//! their nice weights through vruntime, as CFS; the idle task runs when nothing else can. The
//! running task is in no class queue (`curr`, as in CFS); `on_rq` is true for queued and
//! running tasks alike, as in Linux. Across CPUs, `balance.rs` places tasks (fork, wakeup),
//! pushes and pulls RT tasks through `cpupri.rs`, and spreads fair tasks on the tick and when a
//! CPU goes idle.
//!
//! **Invariant.** A task is on at most one run queue, and runs on at most one CPU: a CPU
//! switches to a task only once the CPU that last ran it has switched away (`Task::on_cpu`).
//! Everything here may run from interrupt context: no operation but [`Rq::add_task`]
//! allocates (queues reserve room for every task at spawn time).

pub(crate) mod balance;
mod cpupri;
mod entry;
mod fair;
pub(crate) mod rq;
pub(crate) mod rq_lock;
mod rt;
pub(crate) mod state;

pub use entry::{cond_resched, schedule};
pub(crate) use entry::{
    do_exit, preempt_schedule, preempt_schedule_irq, schedule_at, schedule_tail, set_current_state, wake_up_process,
};
pub(crate) use entry::{might_sleep, schedule_irqs_off, schedule_mode_at, SchedMode};

pub use crate::task::{CpuMask, TaskId};
