//! Preemption models: every decision a model makes, in one place, and switching the model of a
//! running kernel (Linux's PREEMPT_DYNAMIC).
//!
//! **Mechanism.** A model is a [`PreemptModel`] variant and one file here that implements
//! `Model`: what a wakeup sets (`resched_curr`), what a preemption point does when a
//! reschedule is due (`rt_reschedule`, reached from a patched site), what the interrupt exit to
//! kernel mode wants (`IrqExitPolicy`; the mechanics of acting on it, the foreign-code retry
//! timer and its backoff, are `crate::irq`'s), whether `preempt_enable` preempts, what an armed
//! `int3` does, and which point sites the model claims (`SiteClaim`). `ops` maps a variant
//! to its file with one exhaustive `match`, so adding a model is one file plus one variant, and
//! the compiler lists what is missing. The rest of the kernel calls the functions below and
//! never names a model.
//!
//! | model | file | wakeup of an RT task | point | IRQ exit to kernel mode | sites |
//! | --- | --- | --- | --- | --- | --- |
//! | `none` | `none.rs` | `need_resched` | passes | waits for `ret_from_syscall` | idle |
//! | `voluntary` | `voluntary.rs` | `need_resched` | `cond_resched` | waits | all call the hook |
//! | `full` | `full.rs` | `need_resched` | passes | preempts if count 0 | idle |
//! | `lazy` | `lazy.rs` | `need_resched` (fair: lazy flag) | passes | preempts if count 0 | idle |
//! | `cpulock` | `cpulock.rs` | locks the next quantum | blocks on a locked quantum | waits | all call the hook |
//! | `patch-int3`, `patch-call` | `patch/mod.rs` | arms on the IRQ exit | serves the event | arms the next points | armed per event |
//!
//! **Invariant.** While an instance's model claims the sites, every site calls the hook; the
//! hook of an instance whose model does not act at points returns at once (another instance in
//! the same process may have armed them). A switch is complete on the switching CPU before
//! [`set_preempt_model`] returns: the new model's claim is taken before the old one is dropped,
//! and nothing the patch models armed there survives it; every other CPU is sent a
//! function-call IPI that disarms what it armed.

mod cpulock;
mod full;
mod lazy;
mod none;
pub mod patch;
pub(crate) mod policy;
pub(crate) mod state;
mod voluntary;

use crate::arch::{Arch, IrqExit, IrqFrame, PokeError, A};
use crate::config::ConfigError;
pub use crate::config::PreemptModel;
use crate::cpu::{CORE_FLAG_PER_EVENT_SITES, CORE_FLAG_TRACE_HOOKS};
use crate::instance::{this_kernel, try_this_kernel, Kernel};
use crate::preempt::count as preempt;
use crate::sched::rq::Rq;
use crate::task::Policy;
use crate::task::TaskId;
use alloc::format;
use alloc::sync::Arc;
use core::sync::atomic::Ordering;

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

pub use patch::PatchStatsSnapshot;
pub(crate) use policy::{IrqExitPolicy, Wakeup};
use policy::{Model, SiteClaim};
pub(crate) use state::ModelCpu;

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

/// The running kernel's preemption model.
pub fn preempt_model() -> PreemptModel {
    this_kernel().model()
}

/// Switches the running kernel to `model` while its tasks run. Call from a task.
pub fn set_preempt_model(model: PreemptModel) -> Result<(), ConfigError> {
    let k = this_kernel();
    // One switch at a time: two switches reading the same old model would each take the new
    // model's claim and drop the old one's once, leaving sites claimed for good. The waiter
    // sleeps (it may be of a higher priority than the switcher, on the switcher's CPU).
    while k.model.switching.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_err() {
        crate::time::sleep_ns(100_000);
    }
    let r = switch_model(&k, model);
    k.model.switching.store(false, Ordering::Release);
    r
}

/// [`set_preempt_model`]'s body, with the switch to itself.
fn switch_model(k: &Arc<Kernel>, model: PreemptModel) -> Result<(), ConfigError> {
    let old = k.model();
    if old == model {
        return Ok(());
    }
    switch_sites(k, Some(old), Some(model))?;
    {
        let _irqs = crate::preempt::guard::local_irq_save();
        k.model.current.store(model.index(), Ordering::Release);
        patch::event_served(k); // nothing armed survives a switch
        note_model_on_cpu(k);
    }
    // Nor on the other CPUs: each disarms its own, in its interrupt (its task is stopped there),
    // on the function-call IPI sent here; the switch returns once every CPU has done so.
    let others = {
        let _pin = crate::preempt::guard::preempt_disable();
        k.all_cpus() & !(1 << k.raw_cpu_id())
    };
    if others != 0 {
        let on_each = || {
            let k = this_kernel();
            patch::event_served(&k);
            note_model_on_cpu(&k);
        };
        crate::smp::smp_call_function_many(others, on_each, true).map_err(ConfigError)?;
    }
    crate::trace::model_switched(k, old, model);
    crate::printk!("preempt: switched from {old} to {model}");
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
        crate::smp::smp_send_reschedule(k, rq.cpu, w);
    }
}

/// The reschedule IPI's wakeup, on its target CPU: the model decides as for a local wakeup.
pub(crate) fn resched_local(k: &Kernel, w: Wakeup) {
    ops(k.model()).wakeup(k, w);
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

/// A return the patch models redirected arrived (task context, IRQs masked): the original
/// return address.
pub(crate) fn rt_return(sp: usize, bp: usize) -> usize {
    patch::rt_return(sp, bp)
}

/// Does `preempt_enable` reaching zero with a reschedule due preempt (`preempt_schedule`)?
pub(crate) fn preempt_enable_preempts(k: &Kernel) -> bool {
    ops(k.model()).preempts_kernel_code()
}

/// `rt_reschedule`: reached from every patched preemption-point site, in task context.
pub(crate) fn rt_reschedule(site: usize) {
    crate::trace::point_reached(site);
    // Fast path: every model that acts here sets need_resched when it wants the CPU, so
    // nothing pending is one per-CPU load and test. Under a patch model a site calls only
    // because some CPU armed it: one that is not this CPU's is collateral, counted.
    if !preempt::need_resched() {
        if A::core_flags() & (CORE_FLAG_PER_EVENT_SITES | CORE_FLAG_TRACE_HOOKS) == CORE_FLAG_PER_EVENT_SITES {
            patch::call_passed();
        }
        return;
    }
    point_due(site);
}

/// [`rt_reschedule`] with a reschedule due: the model's `point` decides. Out of line, so the
/// nothing-pending path above needs no stack frame.
#[inline(never)]
fn point_due(site: usize) {
    let Some(k) = try_this_kernel() else { return };
    ops(k.model()).point(&k, site);
}

/// An armed `int3` fired at `site` (the SIGTRAP handler, IRQs masked).
pub(crate) fn point_trap(_site: usize, _frame: &IrqFrame) -> IrqExit {
    let Some(k) = try_this_kernel() else { return IrqExit::Resume };
    ops(k.model()).trap(&k)
}

/// Notes on this CPU whether the current model arms sites per event (see
/// [`CORE_FLAG_PER_EVENT_SITES`]). Call on the CPU's thread: at boot, and at a model switch
/// (in the switch's IPI on the other CPUs).
pub(crate) fn note_model_on_cpu(k: &Kernel) {
    let _irqs = preempt::raw_local_irq_save();
    crate::cpu::set_core_flag(CORE_FLAG_PER_EVENT_SITES, ops(k.model()).sites() == SiteClaim::PerEvent);
}

/// Gives the CPU away at a point if the task may be preempted there: the common end of the
/// models that act at points.
fn schedule_at_point(k: &Kernel, site: usize) {
    if preempt::preemptible() {
        crate::trace::point_fired(k, site);
        crate::sched::schedule();
    }
}
