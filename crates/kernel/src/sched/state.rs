//! The scheduler's instance-wide state: the task table, the tasks still live, and where RT
//! tasks run (`cpupri`, the overloaded CPUs). Per-CPU state is each CPU's run queue.
//!
//! **Mechanism.** Tasks are appended to the table one fork at a time ([`Sched::fork`], under
//! its own lock) and read without a lock; `nr_live` counts them until they exit, which is how
//! the idle loops know the instance is done.
//!
//! **Invariant.** Only the scheduler reads and writes the RT placement; every other subsystem
//! reaches this state through the functions here.

use super::cpupri::CpuPri;
use crate::arch::IrqSpinLock;
use crate::task::{Policy, Task, TaskId};
use crate::task_table::TaskTable;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// See the module docs.
pub(crate) struct Sched {
    /// Every task, by pid: appended at spawn, read without a lock (`task_table.rs`).
    tasks: TaskTable,
    /// Tasks not yet exited, idle tasks excluded.
    nr_live: AtomicUsize,
    /// Which CPUs run at which priority (RT placement).
    pub(super) cpupri: CpuPri,
    /// CPUs with an RT task waiting behind another (`rto_mask`): where pulls look.
    pub(super) rt_overloaded: AtomicU64,
    /// Serializes [`Sched::fork`] (see `fork::add_task` for the lock order it keeps).
    fork_lock: IrqSpinLock<()>,
}

impl Sched {
    /// The state of an instance of `cpus` CPUs, with no task yet.
    pub(crate) fn new(cpus: usize) -> Sched {
        Sched {
            tasks: TaskTable::new(),
            nr_live: AtomicUsize::new(0),
            cpupri: CpuPri::new(cpus),
            rt_overloaded: AtomicU64::new(0),
            fork_lock: IrqSpinLock::new(()),
        }
    }

    /// Task `id`, if it was handed out.
    #[inline]
    pub(crate) fn task(&self, id: TaskId) -> Option<&Arc<Task>> {
        self.tasks.get(id)
    }

    /// Pids handed out so far.
    pub(crate) fn nr_tasks(&self) -> usize {
        self.tasks.len()
    }

    /// Every task so far, in pid order.
    pub(crate) fn tasks(&self) -> Vec<Arc<Task>> {
        self.tasks.snapshot()
    }

    /// Tasks not yet exited (idle tasks excluded).
    pub(crate) fn nr_live(&self) -> usize {
        self.nr_live.load(Ordering::Acquire)
    }

    /// A CPU failed to come up: every idle loop ends as if every task had exited.
    pub(crate) fn abandon(&self) {
        self.nr_live.store(0, Ordering::Release);
    }

    /// A task exited; returns how many are left.
    pub(super) fn task_exited(&self) -> usize {
        self.nr_live.fetch_sub(1, Ordering::AcqRel) - 1
    }

    /// CPU `cpu` came up, running its idle task.
    pub(crate) fn cpu_up(&self, cpu: usize) {
        self.cpupri.set(cpu, 0);
    }

    /// One fork at a time: `make` builds the task with the next pid (and puts its copies in
    /// the run queues), which is then published in the table and counted live.
    pub(crate) fn fork(&self, make: impl FnOnce(TaskId) -> Arc<Task>) -> Arc<Task> {
        let _fork = self.fork_lock.lock();
        let task = make(self.tasks.len());
        self.tasks.push(task.clone());
        if task.policy != Policy::Idle {
            self.nr_live.fetch_add(1, Ordering::AcqRel);
        }
        task
    }
}
