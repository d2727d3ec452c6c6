//! Creating tasks (`fork`/`clone`): the task table entry, the stack, and the first placement.
//!
//! **Mechanism.** [`copy_process`] gives the task the next pid, a [`Task`] in the table and a
//! copy of its scheduling state in every CPU's run queue (so that it may later move to any of
//! them without allocating), and maps its stack. [`wake_up_new_task`] places it
//! (`balance::select_task_rq_fork`: the allowed CPU with the least to run), queues it there and
//! asks that CPU to preempt if the new task outranks its current one (an IPI when that CPU is
//! another).
//!
//! **Invariant.** A task's scheduling state exists in every run queue before the task is
//! queued on any; only the copy of the CPU it names (`Task::cpu`) is ever acted on.

use crate::arch::{Arch, IrqSpinLock, TaskContext, A};
use crate::instance::{this_kernel, Kernel};
use crate::sched::rq::Mode;
use crate::sync::OnceLock;
use crate::task::{CpuMask, TaskId, NO_CPU};
use crate::task::{Policy, Task, TaskBuilder, TaskResult, TaskStatsSnapshot};
use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Adds a task to the table and its scheduling state to every run queue.
pub(crate) fn add_task(
    k: &Kernel,
    name: &str,
    policy: Policy,
    ctx: Option<Arc<TaskContext>>,
    body: Option<crate::task::TaskBody>,
    mode: Mode,
    allowed: CpuMask,
) -> Arc<Task> {
    let _irq = crate::preempt::guard::local_irq_save();
    // One fork at a time (the table's appends are serialized here): the copies go into every
    // run queue first, then the task into the table, so whoever finds the task in the table
    // finds its copies.
    k.sched.fork(|id: TaskId| {
        if id >= crate::task_table::PID_MAX {
            panic!("spawn of task '{name}': the instance has handed out all {} pids", crate::task_table::PID_MAX);
        }
        let task = Arc::new(Task {
            id,
            name: name.into(),
            policy,
            ctx: ctx.map_or_else(OnceLock::new, OnceLock::from),
            body: IrqSpinLock::new(body),
            result: IrqSpinLock::new(None),
            exited: crate::wait::WaitQueue::new(),
            stats: Default::default(),
            cpu: AtomicUsize::new(allowed.trailing_zeros() as usize),
            on_cpu: AtomicUsize::new(NO_CPU),
            cpus_allowed: AtomicU64::new(allowed),
            preempt_held: AtomicU32::new(0),
            wait: Default::default(),
            timerlat: Default::default(),
            wakeup: Default::default(),
        });
        for c in 0..k.cpus.len() {
            crate::sched::rq_lock::rq_lock(k, c).add_task(id, policy, mode, allowed);
        }
        task
    })
}

/// Creates the task `b` describes, not yet runnable. Panics on a policy or affinity the
/// builder should not have let through, or if the host refuses the stack.
pub(crate) fn copy_process(k: &Kernel, b: TaskBuilder, body: crate::task::TaskBody) -> Arc<Task> {
    if let Err(e) = b.policy.validate() {
        panic!("spawn of task '{}': {e}", b.name);
    }
    let allowed = b.cpus.unwrap_or(u64::MAX) & k.all_cpus();
    if allowed == 0 {
        panic!(
            "spawn of task '{}': its CPU mask {:#x} names no CPU of this instance (cpus={}; use a mask within {:#x})",
            b.name,
            b.cpus.unwrap_or(0),
            k.cpus.len(),
            k.all_cpus()
        );
    }
    let mode = if b.kthread { Mode::Kernel } else { Mode::User };
    let task = add_task(k, &b.name, b.policy, None, Some(body), mode, allowed);
    if b.timerlat {
        task.timerlat.store(true, Ordering::Relaxed); // before it can run, let alone sleep
        k.time.timerlat.store(true, Ordering::Relaxed);
    }
    let stack = b.stack_size.unwrap_or(k.config.stack_size);
    let ctx = A::task_context_new(&b.name, stack, task_entry, task.id)
        .unwrap_or_else(|e| panic!("cannot map a {stack}-byte stack for task '{}': {e}", b.name));
    if task.ctx.set(ctx).is_err() {
        A::die("BUG: a new task's context was set twice");
    }
    task
}

/// `wake_up_new_task`: places a new task, queues it, and preempts for it if it outranks the
/// CPU's current task.
pub(crate) fn wake_up_new_task(k: &Kernel, task: &Task) {
    let _irq = crate::preempt::count::raw_local_irq_save();
    let target = crate::sched::balance::select_task_rq_fork(k, task.id);
    let mut rq = crate::sched::rq_lock::task_rq_lock(k, task.id);
    let from = rq.cpu();
    if target != from {
        let (a, b, _) = crate::sched::rq_lock::double_lock_balance(k, rq, target);
        let (mut src, mut dst) = (a, b);
        src.move_state_to(&mut dst, task.id);
        task.cpu.store(target, Ordering::Release);
        drop(src);
        rq = dst;
    }
    if rq.wake_new(task.id) {
        crate::model::decide::resched_curr(k, &rq, task.id);
    }
    crate::trace::sched_wakeup_new(k, task.id, task.policy.rt_prio(), rq.cpu());
    crate::sched::balance::note_rt_queued(k, &rq);
}

/// Creates and starts a task (the kernel's internal `kernel_clone`).
pub(crate) fn spawn_on(k: &Kernel, b: TaskBuilder, body: crate::task::TaskBody) -> TaskHandle {
    let task = copy_process(k, b, body);
    wake_up_new_task(k, &task);
    TaskHandle { task }
}

/// Creates a task running `body`, placed on the least busy CPU it may use. Call from a task.
/// From user mode this is a system call (`clone`): if the new task outranks the caller on the
/// caller's CPU, it runs at the caller's `ret_from_syscall`.
#[track_caller]
pub fn spawn(b: TaskBuilder, body: impl FnOnce() -> i64 + Send + 'static) -> TaskHandle {
    let k = this_kernel();
    crate::syscall::kernel_call(|| spawn_on(&k, b, Box::new(body)))
}

/// What [`crate::spawn`] returns: a way to wait for a task and read its counters.
#[derive(Clone)]
pub struct TaskHandle {
    pub(crate) task: Arc<Task>,
}

impl TaskHandle {
    /// The task's id (its pid).
    pub fn id(&self) -> TaskId {
        self.task.id
    }

    /// The task's name.
    pub fn name(&self) -> &str {
        &self.task.name
    }

    /// Sleeps until the task has exited and returns its result.
    pub fn join(&self) -> TaskResult {
        let task = &self.task;
        task.exited.wait_event_interruptible(|| task.result.lock().is_some());
        task.result.lock().clone().unwrap_or_else(|| Err("no result".into()))
    }

    /// The task's counters so far.
    pub fn stats(&self) -> TaskStatsSnapshot {
        self.task.stats.snapshot()
    }
}

/// The first function on every new task's stack (`ret_from_fork`).
pub(crate) fn task_entry(id: usize) -> ! {
    crate::sched::schedule_tail();
    let result = run_body(id);
    crate::sched::do_exit(id, result)
}

/// Runs the task's body; a panic in it unwinds to here, where it ends as an oops
/// (`crate::oops`).
fn run_body(id: TaskId) -> TaskResult {
    let body = crate::instance::this_kernel().task(id).body.lock().take();
    let Some(body) = body else { return Err("task started without a body".into()) };
    let result = A::catch_panic(body);
    let k = crate::instance::this_kernel();
    match result {
        Some(v) => {
            crate::oops::caught_inside(&k, id);
            Ok(v)
        }
        None => Err(crate::oops::task_dead(&k, id)),
    }
}
