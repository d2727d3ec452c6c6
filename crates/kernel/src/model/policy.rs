//! What a preemption model decides, as an interface: the [`Model`] trait each model's file
//! implements, and the answers it gives (what a wakeup sets, what the interrupt exit wants,
//! which point sites it claims). The dispatch (`ops`) and the calls into it are `model`'s.
//!
//! **Invariant.** The interface imports no subsystem, so a model whose decisions need only
//! the per-CPU words and its own state depends on nothing but this file and the instance.

use crate::arch::{IrqExit, IrqFrame};
use crate::instance::Kernel;
use crate::task::TaskId;

/// What a model wants from an interrupt's exit to kernel mode with a reschedule due. The
/// mechanics (the count, the idle task, foreign code and the retry timer) are `crate::irq`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IrqExitPolicy {
    /// Nothing is due: the retry backoff starts over.
    Nothing,
    /// A reschedule is due but this model does not take it here.
    Wait,
    /// Preempt here if the task may be preempted (`preempt_schedule_irq`).
    Preempt,
    /// The model acted and could not make the task reach a point (the patch models found
    /// nothing to arm within reach of the stack): look again soon, on the retry timer.
    RetrySoon,
}

/// What a model wants at a preemption point reached with a reschedule due. The model decides;
/// the point's entry (`model::rt_reschedule`) acts, so no model calls the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PointAction {
    /// The task keeps the CPU (nothing of this model's is due here).
    Pass,
    /// Give the CPU away here if the task may be preempted (`cond_resched`'s test), and trace
    /// the point as one that fired.
    Yield,
    /// Schedule now: the model made its own checks (a patch model's event, count zero, IRQs on).
    Schedule,
}

/// Which preemption-point sites a model claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SiteClaim {
    /// None: the sites stay idle.
    None,
    /// Every site calls the hook while the model runs.
    All,
    /// The sites next after an interrupted IP, armed per RT event (needs the point table).
    PerEvent,
}

/// A wakeup as `resched_curr` sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wakeup {
    /// The task that should run instead of the current one.
    pub(crate) woken: TaskId,
    /// It is an RT task.
    pub(crate) rt: bool,
    /// It is the current task (the tick asking for a reschedule).
    pub(crate) is_curr: bool,
    /// The current task is a fair task.
    pub(crate) curr_fair: bool,
}

/// The decisions of one preemption model. Every method is required: a new model answers each.
pub(crate) trait Model: Sync {
    /// An interrupt arrived that found the CPU at `ip` (hard-IRQ entry, before any handler).
    /// Nothing by default; the patch models start bringing in what an arming from `ip` reads.
    fn irq_entry(&self, _k: &Kernel, _ip: usize) {}
    /// `resched_curr`: a wakeup (or the tick) wants the CPU for `w.woken`.
    fn wakeup(&self, k: &Kernel, w: Wakeup);
    /// A patched preemption-point site was reached while a reschedule is due (task context).
    fn point(&self, k: &Kernel, site: usize) -> PointAction;
    /// An interrupt that found the CPU at `frame` returns to kernel mode with a reschedule
    /// due. A model that acts here (the patch models arm the next points) does so itself.
    fn irq_exit_kernel(&self, k: &Kernel, frame: &IrqFrame) -> IrqExitPolicy;
    /// `preempt_enable` reaching zero with a reschedule due preempts, and so does the
    /// interrupt exit: kernel code between points is preemptible.
    fn preempts_kernel_code(&self) -> bool;
    /// An `int3` armed at a site fired (SIGTRAP handler, IRQs masked).
    fn trap(&self, k: &Kernel) -> IrqExit;
    /// The sites the model claims.
    fn sites(&self) -> SiteClaim;
    /// Where an RT task woken by an interrupt gets the CPU from kernel code, in a few words
    /// (a table's cell).
    fn rt_runs_at(&self) -> &'static str;
}
