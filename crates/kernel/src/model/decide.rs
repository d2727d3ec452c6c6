//! What the running kernel's model decides, for the code that acts on it: the one exhaustive
//! `match` from a [`PreemptModel`] to its file (`ops`), and the calls the scheduler, the
//! interrupt exit, the IPIs and the boot make into it (`resched_curr`, `clear_resched`,
//! `irq_exit_kernel`, `point`, ...).
//!
//! **Mechanism.** Each function reads the instance's current model and asks its file; what the
//! answer implies for the CPU (schedule, preempt from the interrupt frame) is done by the
//! caller: the scheduler, `irq.rs`, or the point entries in `model/mod.rs`.
//!
//! **Invariant.** Nothing here calls the scheduler or waits: the models decide, and the
//! scheduler, which calls in here, acts. So this file and the models sit below `sched`.

use super::policy::{IrqExitPolicy, Model, PointAction, SiteClaim, Wakeup};
use super::state::ModelCpu;
use super::{cpulock, full, lazy, none, patch, voluntary};
use crate::arch::{Arch, IrqExit, IrqFrame, PokeError, A};
use crate::config::{ConfigError, PreemptModel};
use crate::cpu::CORE_FLAG_PER_EVENT_SITES;
use crate::instance::{try_this_kernel, Kernel};
use crate::preempt::count as preempt;
use crate::sched::rq::Rq;
use crate::task::{Policy, TaskId};
use alloc::format;
use patch::PatchStatsSnapshot;

/// What each model is, asked of its file.
impl PreemptModel {
    /// True for the models that patch the next points on an RT event (the 1996 idea).
    pub fn is_patch(self) -> bool {
        ops(self).sites() == SiteClaim::PerEvent
    }

    /// True if kernel code may be preempted on return from an interrupt and at
    /// `preempt_enable` (the `full` family).
    pub fn preempts_kernel_code(self) -> bool {
        ops(self).preempts_kernel_code()
    }

    /// Where an RT task woken by an interrupt gets the CPU from kernel code under this model,
    /// in a few words (`next point`, `IRQ exit`, `syscall exit`, `armed call`).
    pub fn rt_runs_at(self) -> &'static str {
        ops(self).rt_runs_at()
    }
}

/// The file that implements `m`: the one exhaustive `match` on the model.
fn ops(m: PreemptModel) -> &'static dyn Model {
    match m {
        PreemptModel::None => &none::None,
        PreemptModel::Voluntary => &voluntary::Voluntary,
        PreemptModel::Full => &full::Full,
        PreemptModel::Lazy => &lazy::Lazy,
        PreemptModel::Cpulock => &cpulock::Cpulock,
        PreemptModel::PatchInt3 => &patch::PATCH_INT3,
        PreemptModel::PatchCall => &patch::PATCH_CALL,
    }
}

impl ModelCpu {
    /// The `BUG:` line for a patch this CPU refused, if there was one.
    pub(crate) fn refused_report(&self) -> Option<alloc::string::String> {
        self.patch.refused_report()
    }
}

/// What the patch models did on `cpus`, summed (all zero under the other models).
pub(crate) fn stats<'a>(cpus: impl IntoIterator<Item = &'a ModelCpu>) -> PatchStatsSnapshot {
    let mut sum = PatchStatsSnapshot::default();
    for c in cpus {
        sum.add(&c.patch.stats.snapshot());
    }
    sum
}

/// Takes `new`'s claim on the point sites and then drops `old`'s (`None`: boot or shutdown).
pub(crate) fn switch_sites(
    k: &Kernel,
    old: Option<PreemptModel>,
    new: Option<PreemptModel>,
) -> Result<(), ConfigError> {
    let host = |e: PokeError| ConfigError(format!("cannot patch the preemption points: {e}"));
    let claim = |m: Option<PreemptModel>| m.map_or(SiteClaim::None, |m| ops(m).sites());
    if claim(new) == SiteClaim::PerEvent {
        patch::build_tables(k.config.ptable).map_err(ConfigError)?;
        if k.config.patch_sync == crate::config::PatchSync::Ipi {
            A::patch_prepare_sync().map_err(|e| ConfigError(format!("patch_sync=ipi: {e}; use patch_sync=none")))?;
        }
    }
    let (was, will) = (claim(old) == SiteClaim::All, claim(new) == SiteClaim::All);
    if will && !was {
        *k.model.sites_claim.lock() = Some(A::claim_all_sites().map_err(host)?);
    }
    if was && !will {
        let claim = k.model.sites_claim.lock().take();
        claim.map_or(Ok(()), A::release_all_sites).map_err(host)?;
    }
    Ok(())
}

/// `resched_curr`: `woken` (or the running task, for the tick) should run instead of the
/// current task of run queue `rq`'s CPU. Call with that run queue locked (IRQs masked). On
/// the calling CPU the model decides at once; another CPU gets the reschedule IPI carrying the
/// wakeup, and its model decides there.
pub(crate) fn resched_curr(k: &Kernel, rq: &Rq, woken: TaskId) {
    let w = Wakeup {
        woken,
        rt: rq.task(woken).policy.rt_prio().is_some(),
        is_curr: woken == rq.curr,
        curr_fair: matches!(rq.task(rq.curr).policy, Policy::Normal(_)),
    };
    if rq.cpu == k.raw_cpu_id() {
        ops(k.model()).wakeup(k, w);
    } else {
        crate::smp::ipi::smp_send_reschedule(k, rq.cpu, w);
    }
}

/// At every hard-IRQ entry, with the interrupted `ip`: the model's `irq_entry`.
pub(crate) fn irq_entry(k: &Kernel, ip: usize) {
    ops(k.model()).irq_entry(k, ip);
}

/// The reschedule IPI's handler (`scheduler_ipi`), in hard-IRQ context: the wakeup it carries
/// is decided by this CPU's model as a local one.
pub(crate) fn scheduler_ipi(k: &Kernel) {
    if let Some(w) = crate::smp::ipi::take_resched(k) {
        ops(k.model()).wakeup(k, w);
    }
}

/// At the tick: a lazy reschedule still pending becomes a real one (Linux's `sched_tick`
/// promoting `TIF_NEED_RESCHED_LAZY`).
pub(crate) fn tick(k: &Kernel) {
    k.this_cpu().model.lazy.tick();
}

/// Called by `__schedule` when it has picked `next`: every reschedule request of every model
/// is served (a request may outlive a model switch), and a locked quantum is granted once its
/// owner runs.
pub(crate) fn clear_resched(k: &Kernel, next: TaskId) {
    preempt::clear_need_resched();
    patch::event_served(k);
    let model = &k.this_cpu().model;
    model.lazy.served();
    model.cpulock.served(next);
}

/// Is a reschedule due on the way back to user mode (a lazy one counts there)?
pub(crate) fn resched_due_for_user(k: &Kernel) -> bool {
    preempt::need_resched() || k.this_cpu().model.lazy.pending()
}

/// What the interrupt exit to kernel mode should do under the current model (which does its
/// own part first: a patch model arms the points the task will reach from `frame`).
pub(crate) fn irq_exit_kernel(k: &Kernel, frame: &IrqFrame) -> IrqExitPolicy {
    if !preempt::need_resched() {
        return IrqExitPolicy::Nothing;
    }
    ops(k.model()).irq_exit_kernel(k, frame)
}

/// A point was reached with a reschedule due (task context): what the model wants there.
pub(crate) fn point(k: &Kernel, site: usize) -> PointAction {
    ops(k.model()).point(k, site)
}

/// An armed `int3` fired at `site` (the SIGTRAP handler, IRQs masked).
pub(crate) fn point_trap(_site: usize, _frame: &IrqFrame) -> IrqExit {
    let Some(k) = try_this_kernel() else { return IrqExit::Resume };
    ops(k.model()).trap(&k)
}

/// A return the patch models redirected arrived (task context, IRQs masked): the original
/// return address, and whether to preempt there (`preempt_schedule_irq`, the caller's to call).
pub(crate) fn rt_return(sp: usize, bp: usize, masked: bool) -> (usize, bool) {
    patch::rt_return(sp, bp, masked)
}

/// Does `preempt_enable` reaching zero with a reschedule due preempt (`preempt_schedule`)?
pub(crate) fn preempt_enable_preempts(k: &Kernel) -> bool {
    ops(k.model()).preempts_kernel_code()
}

/// Notes on this CPU whether the current model arms sites per event (see
/// [`CORE_FLAG_PER_EVENT_SITES`]). Call on the CPU's thread: at boot, and at a model switch
/// (in the switch's IPI on the other CPUs).
pub(crate) fn note_model_on_cpu(k: &Kernel) {
    let _irqs = preempt::raw_local_irq_save();
    crate::cpu::set_core_flag(CORE_FLAG_PER_EVENT_SITES, ops(k.model()).sites() == SiteClaim::PerEvent);
}
