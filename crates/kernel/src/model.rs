//! The preemption model of a running kernel: what preemption points and interrupt exits do,
//! and switching it while tasks run (Linux's PREEMPT_DYNAMIC).
//!
//! **Mechanism.** The model is a per-instance word read by the interrupt-exit decision and by
//! the point hook. Preemption points are code sites ([`crate::preempt_point!`]): NOPs unless
//! some instance in the process runs a model that acts at points, in which case every site is
//! patched (through `arch::patch`, W^X, int3 first) into a call of [`preempt_point_hook`].
//! Switching the model takes or drops this instance's claim on the armed sites, so a switch
//! between `none` and `voluntary` is a patch of the sites, not a branch at them.
//!
//! **Invariant.** While an instance's model uses points, the sites are armed; the hook of an
//! instance whose model does not use them returns at once (another instance in the same
//! process may have armed them). A switch is complete before `set_preempt_model` returns, and
//! every site holds either its NOP or the whole call: the patcher never leaves one half
//! written.

use crate::config::{ConfigError, PreemptModel};
use crate::kernel::{this_kernel, try_this_kernel, Kernel};
use crate::preempt;
use crate::sched::{Sched, TaskId};
use crate::task::Policy;
use std::sync::atomic::Ordering;

impl Kernel {
    /// The current preemption model.
    pub fn model(&self) -> PreemptModel {
        PreemptModel::from_index(self.model.load(Ordering::Acquire))
    }
}

/// Claims or releases the armed sites for a model change from `old` to `new`.
pub(crate) fn switch_sites(
    k: &Kernel,
    old: Option<PreemptModel>,
    new: Option<PreemptModel>,
) -> Result<(), ConfigError> {
    let host = |e: arch::patch::PokeError| ConfigError(format!("cannot patch the preemption points: {e}"));
    if new.is_some_and(|m| m.is_patch()) {
        crate::ptable::build().map_err(ConfigError)?;
    }
    let (was, will) = (old.is_some_and(|m| m.uses_points()), new.is_some_and(|m| m.uses_points()));
    if will && !was {
        *k.sites_claim.lock() = Some(arch::patch::claim_all_sites().map_err(host)?);
    }
    if was && !will {
        let claim = k.sites_claim.lock().take();
        claim.map_or(Ok(()), arch::patch::AllSitesClaim::release).map_err(host)?;
    }
    Ok(())
}

/// The running kernel's preemption model.
pub fn preempt_model() -> PreemptModel {
    this_kernel().model()
}

/// Switches the running kernel to `model` while its tasks run. Refuses models this build does
/// not have. Call from a task.
pub fn set_preempt_model(model: PreemptModel) -> Result<(), ConfigError> {
    if !model.is_built() {
        return Err(ConfigError(format!("preempt={model} is not built yet")));
    }
    let k = this_kernel();
    let old = k.model();
    if old == model {
        return Ok(());
    }
    switch_sites(&k, Some(old), Some(model))?;
    {
        let _irqs = preempt::local_irq_save();
        k.model.store(model.index(), Ordering::Release);
        crate::patchmodel::event_served(&k); // nothing armed survives a switch
    }
    crate::trace::model_switched(&k, old, model);
    crate::printk!("preempt: switched from {old} to {model}");
    Ok(())
}

/// `resched_curr`: `woken` (or the running task, for the tick) should run instead of the
/// current task. Under `lazy`, a fair task displacing a fair task sets only the lazy flag;
/// under `cpulock`, an RT task also locks the CPU's next quantum. Call with the scheduler
/// lock held (IRQs masked).
pub(crate) fn resched_curr(k: &Kernel, s: &Sched, woken: TaskId) {
    let rt = s.task(woken).policy.rt_prio().is_some();
    let curr_fair = matches!(s.task(s.curr).policy, Policy::Normal(_));
    match k.model() {
        PreemptModel::Lazy if !rt && curr_fair => k.cpu.need_resched_lazy.store(true, Ordering::Relaxed),
        PreemptModel::Cpulock if rt && woken != s.curr => {
            k.cpu.quantum_lock.store(woken + 1, Ordering::Release);
            preempt::set_need_resched();
        }
        m if m.is_patch() && rt && woken != s.curr => {
            k.cpu.patch.rt_resched.store(true, Ordering::Relaxed);
            preempt::set_need_resched();
        }
        _ => preempt::set_need_resched(),
    }
}

/// At the tick under `lazy`: a lazy reschedule still pending becomes a real one (Linux's
/// `sched_tick` promoting `TIF_NEED_RESCHED_LAZY`).
pub(crate) fn tick_lazy_upgrade(k: &Kernel) {
    if k.cpu.need_resched_lazy.swap(false, Ordering::Relaxed) {
        preempt::set_need_resched();
    }
}

/// Called by `__schedule` when it has picked `next`: every reschedule request is served, and a
/// locked quantum is granted once its owner runs.
pub(crate) fn clear_resched(k: &Kernel, next: TaskId) {
    preempt::clear_need_resched();
    crate::patchmodel::event_served(k);
    k.cpu.need_resched_lazy.store(false, Ordering::Relaxed);
    let _ = k.cpu.quantum_lock.compare_exchange(next + 1, 0, Ordering::AcqRel, Ordering::Relaxed);
}

/// Is a reschedule due on the way back to user mode (a lazy one counts there)?
pub(crate) fn resched_due_for_user(k: &Kernel) -> bool {
    preempt::need_resched() || k.cpu.need_resched_lazy.load(Ordering::Relaxed)
}

/// Reached from every patched preemption-point site, in task context.
///
/// - `voluntary`: `cond_resched()`: reschedule if any reschedule is due.
/// - `cpulock`: the atom requests the CPU; if an RT task has locked the next quantum, the
///   request blocks, i.e. the task gives the CPU to it. Nothing else (a fair wakeup, a used-up
///   fair slice) takes the CPU from kernel code here.
pub(crate) fn preempt_point_hook(site: usize) {
    crate::trace::preempt_point(site);
    // Fast path: both models that act here set need_resched when they want the CPU (cpulock
    // together with its quantum lock), so nothing pending is one per-CPU load and test.
    if !preempt::need_resched() {
        return;
    }
    let Some(k) = try_this_kernel() else { return };
    let yield_now = match k.model() {
        PreemptModel::Voluntary => preempt::need_resched(),
        PreemptModel::Cpulock => k.cpu.quantum_lock.load(Ordering::Acquire) != 0,
        m if m.is_patch() => return crate::patchmodel::point_called(&k),
        _ => false,
    };
    if yield_now && preempt::preemptible() {
        crate::trace::point_fired(&k, site);
        crate::sched::schedule();
    }
}
