//! Preemption models: every decision a model makes, in one place, and switching the model of a
//! running kernel (Linux's PREEMPT_DYNAMIC).
//!
//! **Mechanism.** A model is a [`PreemptModel`] variant and one file here that implements
//! `Model`: what a wakeup sets (`resched_curr`), what a preemption point does when a
//! reschedule is due (`rt_reschedule`, reached from a patched site), what the interrupt exit to
//! kernel mode wants (`IrqExitPolicy`; the mechanics of acting on it, the foreign-code retry
//! timer and its backoff, are `crate::irq`'s), whether `preempt_enable` preempts, what an armed
//! `int3` does, and which point sites the model claims (`SiteClaim`). The models decide and
//! never call the scheduler: `decide.rs` maps a variant to its file with one exhaustive
//! `match` (`ops`), so adding a model is one file plus one variant, and the compiler lists
//! what is missing; the scheduler, the interrupt exit and the IPIs ask it. This file acts on
//! the answers that need the scheduler (the point entries `rt_reschedule` and `rt_return`)
//! and switches the model of a running kernel. The rest of the kernel never names a model.
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
pub(crate) mod decide;
mod full;
mod lazy;
mod none;
pub mod patch;
pub(crate) mod policy;
pub(crate) mod state;
mod voluntary;

use crate::arch::{Arch, A};
use crate::config::ConfigError;
pub use crate::config::PreemptModel;
use crate::cpu::{CORE_FLAG_PER_EVENT_SITES, CORE_FLAG_TRACE_HOOKS};
use crate::instance::{this_kernel, try_this_kernel, Kernel};
use crate::preempt::count as preempt;
use alloc::sync::Arc;
use core::sync::atomic::Ordering;
use decide::{note_model_on_cpu, switch_sites};
pub use patch::PatchStatsSnapshot;
use policy::PointAction;

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

/// [`rt_reschedule`] with a reschedule due: the model's `point` decides, and this acts. Out of
/// line, so the nothing-pending path above needs no stack frame.
#[inline(never)]
fn point_due(site: usize) {
    let Some(k) = try_this_kernel() else { return };
    let action = decide::point(&k, site);
    if action != PointAction::Pass {
        timerlat_point(&k);
    }
    match action {
        PointAction::Pass => {}
        PointAction::Yield => schedule_at_point(&k, site),
        PointAction::Schedule => crate::sched::schedule(),
    }
}

/// The CPU reached a place where it gives itself up: the stamp of the tracked wakeup pending
/// here, if one is (`task::timerlat`).
pub(crate) fn timerlat_point(k: &Kernel) {
    let _irq = preempt::raw_local_irq_save();
    if let Some(w) = k.timerlat_pending() {
        w.point(A::now_ns());
    }
}

/// An armed `int3` fired at `site` (the SIGTRAP handler, IRQs masked): the model decides.
pub(crate) fn point_trap(site: usize, frame: &crate::arch::IrqFrame) -> crate::arch::IrqExit {
    let exit = decide::point_trap(site, frame);
    if exit == crate::arch::IrqExit::Preempt {
        if let Some(k) = try_this_kernel() {
            timerlat_point(&k);
        }
    }
    exit
}

/// A return the patch models redirected arrived (task context, IRQs masked; `masked`: the
/// function returned with them masked): preempts there if the model says so, and gives back
/// the original return address.
pub(crate) fn rt_return(sp: usize, bp: usize, masked: bool) -> usize {
    let (orig, preempt) = decide::rt_return(sp, bp, masked);
    if preempt {
        if let Some(k) = try_this_kernel() {
            timerlat_point(&k);
        }
        crate::sched::preempt_schedule_irq();
    }
    orig
}

/// Gives the CPU away at a point if the task may be preempted there: the common end of the
/// models that yield at points.
fn schedule_at_point(k: &Kernel, site: usize) {
    if preempt::preemptible() {
        crate::trace::point_fired(k, site);
        crate::sched::schedule();
    }
}
