//! `schedule()` and its relatives: the places where a CPU changes task, through one entry.
//!
//! **Mechanism.** Every switch goes through [`__schedule`] with a [`SchedMode`] (Linux's
//! `SM_NONE`/`SM_PREEMPT`/`SM_IDLE` and `do_task_dead`'s `TASK_DEAD`), entered with IRQs
//! soft-masked and `preempt_count == PREEMPT_OFFSET`: put the previous task back (or let it
//! sleep, or let it go for good), pick the next, serve every reschedule request, switch stacks.
//! The callers differ only in why they come: [`schedule`] (the task sleeps, checked for atomic
//! context first), [`preempt_schedule_irq`] (an interrupt preempted the task through the
//! trampoline), [`preempt_schedule`] (a `preempt_enable` reached zero with a reschedule due),
//! the idle loop, [`do_exit`] (the task ends); all but `do_exit` go through [`schedule_irqs_off`].
//!
//! **Invariant.** Each entry's contract is checked, as Linux's `BUG_ON`s are: `__schedule`
//! with IRQs masked and the count at exactly `PREEMPT_OFFSET`, `preempt_schedule_irq` with the
//! count zero and IRQs masked. A broken contract is a `BUG:` report naming the task and the
//! entry. A task that switches away with `PREEMPT_OFFSET` raised drops it again when it
//! resumes, and a new task drops the one it inherited in [`schedule_tail`].

use super::rq::TaskState;
use super::rq_lock::{rq_lock, task_rq_lock, this_rq_lock};
use crate::arch::{Arch, A};
use crate::instance::{this_kernel, Kernel};
use crate::preempt::count::{self as preempt, PREEMPT_OFFSET};
use crate::task::timerlat::Resched;
use crate::task::{Task, TaskId, TaskResult, TaskStats, NO_CPU};
use core::panic::Location;
use core::sync::atomic::Ordering;

/// Why `__schedule` is called (Linux's `sched_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SchedMode {
    /// `SM_NONE`: the task gives up the CPU; it sleeps if its state says so.
    None,
    /// `sched_yield()`: as `None`, and the task goes to the tail of its priority level.
    Yield,
    /// `SM_PREEMPT`: the task is preempted and stays runnable whatever its state.
    Preempt,
    /// `SM_IDLE`: the idle task looks for work.
    Idle,
    /// `TASK_DEAD`: the task has exited; its context is released after the switch.
    Dead,
}

/// The tasks of a switch `__schedule` decided: from `.0` to `.1`.
pub(crate) type Switch<'k> = (&'k Task, &'k Task);

/// Picks the next task and does the bookkeeping of the switch to it, which the caller then
/// makes (`Arch::switch_to`) once it holds nothing it would leak across it; `None` if the current
/// task runs on. Call with IRQs masked and the count at `PREEMPT_OFFSET`. Under
/// [`SchedMode::Dead`] the previous context is taken from its task, for the final switch.
#[track_caller]
pub(crate) fn __schedule(k: &Kernel, mode: SchedMode) -> Option<Switch<'_>> {
    if !A::irqs_disabled() || preempt::preempt_count() != PREEMPT_OFFSET {
        k.bug("__schedule entered with IRQs on or preempt_count not PREEMPT_OFFSET", Location::caller());
    }
    let now = A::now_ns();
    let cpu = k.raw_this_cpu();
    A::touch_softlockup();
    let switch = {
        let mut rq = rq_lock(k, cpu.id);
        let prev = rq.curr;
        rq.task_mut(prev).mode = crate::cpu::mode();
        if mode == SchedMode::Yield {
            rq.task_mut(prev).to_tail = true; // under the lock the pick takes: one lock per yield
        }
        let ran = rq.put_prev(prev, now, mode == SchedMode::Preempt);
        let next = rq.pick_next(now);
        crate::model::decide::clear_resched(k, next);
        timerlat_resched(k, next, now, mode);
        let switch = (next != prev).then(|| {
            rq.curr = next;
            rq.nr_switches += 1;
            cpu.curr.store(next, Ordering::Relaxed);
            crate::cpu::set_mode(rq.task(next).mode);
            let state = rq.task(prev).state;
            // A preempted task stays runnable whatever its state (Linux's `R+`).
            let prev_state = match state {
                TaskState::Dead => crate::trace::PrevState::Dead,
                s => crate::trace::PrevState::of(s == TaskState::Running || mode == SchedMode::Preempt),
            };
            // Recorded under the run-queue lock, as wakeups and migrations onto this CPU are:
            // the trace's order on a CPU is then the order its run queue saw them in.
            let modes = (rq.task(prev).mode, rq.task(next).mode);
            crate::trace::sched_switch(k, prev, next, prev_state, modes);
            (prev, next, ran, state)
        });
        super::balance::note_rt_queued(k, &rq);
        switch
    };
    let (prev, next, ran, state) = switch?;
    let (prev_task, next_task) = (k.task(prev), k.task(next));
    let stats = &prev_task.stats;
    stats.runtime_ns.store(ran, Ordering::Relaxed);
    TaskStats::add(&stats.syscalls, A::take_syscall_count());
    if mode != SchedMode::Dead {
        let voluntary = state != TaskState::Running;
        TaskStats::bump(if voluntary { &stats.voluntary_switches } else { &stats.involuntary_switches });
    }
    wait_off_cpu(k, next_task, cpu.id);
    cpu.prev_after.store(prev, Ordering::Relaxed);
    Some((prev_task, next_task))
}

/// Stamps the switch to `next` at `now` if it is the tracked wakeup pending on this CPU
/// (`task::timerlat`), and ends the pending state.
fn timerlat_resched(k: &Kernel, next: TaskId, now: u64, mode: SchedMode) {
    let pending = &k.raw_this_cpu().stamps.pending;
    if pending.load(Ordering::Relaxed) == next + 1 {
        let how = if mode == SchedMode::Preempt { Resched::Preempt } else { Resched::Yield };
        k.task(next).wakeup.resched(now, how);
        pending.store(0, Ordering::Relaxed);
    }
}

/// Most time a CPU waits for another to leave a task's stack before calling it a `BUG:`.
const ON_CPU_PATIENCE_NS: u64 = 2_000_000_000;

/// Waits until the CPU that last ran `next` has switched away from it, then claims it for
/// CPU `me` (Linux's `smp_cond_load_acquire(&p->on_cpu, !VAL)` in `try_to_wake_up`): a task
/// woken onto another CPU while its old one is still inside its switch must not run on both.
/// The claim is a store, not a compare-and-swap: only the CPU whose run queue picked the task
/// claims it, and the arch layer's `enter` refuses a context already running anyway.
fn wait_off_cpu(k: &Kernel, next: &Task, me: usize) {
    let (mut spins, mut t0) = (0, 0);
    loop {
        let other = next.on_cpu.load(Ordering::Acquire);
        if other == NO_CPU {
            next.on_cpu.store(me, Ordering::Release);
            return;
        }
        let now = A::now_ns(); // read only once contended: the uncontended switch reads no clock
        if t0 == 0 {
            t0 = now;
        }
        if other == me || now - t0 > ON_CPU_PATIENCE_NS {
            k.bug_args(
                format_args!("task '{}' (pid {}) seen running on two CPUs ({other} and {me})", next.name, next.id),
                Location::caller(),
            );
            if other != me {
                A::die("BUG: a task runs on two CPUs (reported above)");
            }
            next.on_cpu.store(me, Ordering::Release); // our own stale mark: take it
            return;
        }
        A::cpu_relax(&mut spins);
    }
}

/// The one way into [`__schedule`] but `do_exit`'s: raise the count, switch, drop it. Call with
/// IRQs masked.
#[track_caller]
pub(crate) fn schedule_irqs_off(k: &Kernel, mode: SchedMode) {
    preempt::preempt_count_add(PREEMPT_OFFSET);
    if let Some((prev, next)) = __schedule(k, mode) {
        A::switch_to(prev.context(), next.context());
        super::balance::finish_task_switch(k);
    }
    preempt::preempt_count_sub(PREEMPT_OFFSET);
}

/// `schedule()`: give up the CPU (the task sleeps if its state says so). Reports a `BUG:` if
/// called from atomic context or with IRQs masked, then sleeps anyway, restoring the count
/// when the task runs again.
#[track_caller]
pub fn schedule() {
    schedule_at(Location::caller());
}

/// [`schedule`] with the place to name in `BUG:` reports.
pub(crate) fn schedule_at(place: &Location<'_>) {
    schedule_mode_at(&this_kernel(), place, SchedMode::None);
}

/// [`schedule_at`] on kernel `k` for `mode` (`None` or `Yield`).
pub(crate) fn schedule_mode_at(k: &Kernel, place: &Location<'_>, mode: SchedMode) {
    let count = preempt::preempt_count();
    might_sleep(k, place);
    let held = (count != 0).then(|| {
        preempt::preempt_count_set(0);
        let me = k.task(k.current_id());
        me.preempt_held.store(count, Ordering::Relaxed);
        me
    });
    let was_masked = A::local_irq_save();
    schedule_irqs_off(k, mode);
    A::local_irq_restore(was_masked);
    if let Some(me) = held {
        me.preempt_held.store(0, Ordering::Relaxed);
        preempt::preempt_count_set(count);
    }
}

/// Linux's `might_sleep()`: the `BUG:`s of a sleep in atomic context (IRQs masked, a count
/// held), reported where the task gives the CPU up, or where a sleep returns without blocking
/// (its time already past): a sleep there is the bug whether or not it happened to block.
pub(crate) fn might_sleep(k: &Kernel, place: &Location<'_>) {
    if A::irqs_disabled() {
        k.bug("sleeping function called with IRQs disabled", place);
    }
    if preempt::preempt_count() != 0 {
        k.bug("scheduling while atomic", place);
    }
}

/// `preempt_schedule()`: `preempt_enable()` found the count zero with a reschedule due.
/// Only models that preempt kernel code act on it; under `preempt=none` (Linux's
/// `CONFIG_PREEMPT_NONE`) the reschedule waits for `ret_from_syscall` or the next sleep.
pub(crate) fn preempt_schedule() {
    let Some(k) = crate::instance::try_this_kernel() else { return };
    if !crate::model::decide::preempt_enable_preempts(&k) || A::irqs_disabled() {
        return;
    }
    let was_masked = A::local_irq_save();
    schedule_irqs_off(&k, SchedMode::Preempt);
    A::local_irq_restore(was_masked);
}

/// `preempt_schedule_irq()`: reached from the preemption trampoline (or a replay) with IRQs
/// masked and the count zero; returns with IRQs still masked. A call that breaks that contract
/// is a `BUG:` and schedules nothing.
#[track_caller]
pub(crate) fn preempt_schedule_irq() {
    let Some(k) = crate::instance::try_this_kernel() else { return };
    if preempt::preempt_count() != 0 || !A::irqs_disabled() {
        k.bug("preempt_schedule_irq called with preempt_count not zero or IRQs on", Location::caller());
        return;
    }
    TaskStats::bump(&k.task(k.current_id()).stats.irq_preemptions);
    loop {
        schedule_irqs_off(&k, SchedMode::Preempt);
        if !preempt::need_resched() {
            break;
        }
    }
}

/// `schedule_tail()`: the first thing a new task does, finishing the switch that started it.
pub(crate) fn schedule_tail() {
    if let Some(k) = crate::instance::try_this_kernel() {
        super::balance::finish_task_switch(&k);
    }
    preempt::preempt_count_sub(PREEMPT_OFFSET);
    A::local_irq_enable();
}

/// `try_to_wake_up()` for task `id`, from task or interrupt context, on any CPU. Returns
/// whether the task was woken (false if it was not sleeping). The task's state is changed under
/// its run queue's lock, where its sleep is decided too, so a wakeup racing the sleep on another
/// CPU either finds it still queued (it then stays runnable) or off the queue (it is placed and
/// queued again): never lost.
pub(crate) fn wake_up_process(k: &Kernel, id: TaskId) -> bool {
    let _irq = preempt::raw_local_irq_save();
    let mut rq = task_rq_lock(k, id);
    if rq.task(id).state != TaskState::Interruptible {
        return false;
    }
    rq.task_mut(id).state = TaskState::Running;
    let (rq, preempt) = if rq.task(id).on_rq {
        (rq, false) // ttwu_runnable: it has not left its queue (or its CPU) yet
    } else {
        super::balance::ttwu_place(k, rq, id)
    };
    if preempt {
        crate::model::decide::resched_curr(k, &rq, id);
    }
    crate::trace::sched_wakeup(k, id, rq.task(id).policy.rt_prio(), rq.curr, rq.cpu());
    true
}

/// Sets the running task's state (`set_current_state`), under its run queue's lock.
pub(crate) fn set_current_state(k: &Kernel, state: TaskState) {
    let mut rq = this_rq_lock(k); // masks IRQs before it reads the CPU
    let me = rq.curr;
    rq.task_mut(me).state = state;
}

/// `do_exit()`: records the result, wakes joiners, and switches away for good.
pub(crate) fn do_exit(id: TaskId, result: TaskResult) -> ! {
    let k = this_kernel();
    {
        let task = k.task(id);
        *task.result.lock() = Some(result);
        task.exited.wake_up();
    }
    A::local_irq_disable();
    preempt::preempt_count_set(PREEMPT_OFFSET);
    this_rq_lock(&k).task_mut(id).state = TaskState::Dead;
    let left = k.sched.task_exited();
    if left <= k.cpus.len() {
        // Perhaps only the ksoftirqds (or nothing) are left: every idle CPU looks again.
        let me = k.raw_cpu_id();
        (0..k.cpus.len()).filter(|&c| c != me).for_each(|c| crate::smp::ipi::kick_cpu(&k, c));
    }
    let switch = __schedule(&k, SchedMode::Dead).map(|(p, n)| (p.context().clone(), n.context().clone()));
    drop(k); // nothing of this task's may stay referenced from its stack
    let Some((prev, next)) = switch else { A::die("BUG: an exiting task was picked to run again") };
    A::switch_to_final(prev, next)
}

/// Gives the CPU away if a reschedule is due (`cond_resched`), from kernel code at a point
/// where it holds nothing. Returns whether it rescheduled.
#[track_caller]
pub fn cond_resched() -> bool {
    crate::trace::cond_resched(core::panic::Location::caller());
    A::touch_softlockup();
    if crate::preempt::count::need_resched() && crate::preempt::count::preempt_count() == 0 {
        schedule();
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use core::sync::atomic::Ordering;
    use std::prelude::rust_2021::*;

    /// A task whose `on_cpu` still names the CPU about to run it (a stale claim: no CPU
    /// cleared it) is reported as running on two CPUs, naming it, and then taken.
    #[test]
    fn a_task_seen_running_on_two_cpus_is_a_bug_naming_it() {
        // From an RT task on the one CPU: the new fair task cannot run before it is marked.
        let r = crate::run(Config::default(), || {
            let control = crate::spawn(crate::TaskBuilder::new("control").fifo(90), || {
                let k = crate::instance::this_kernel();
                let t = crate::spawn(crate::TaskBuilder::new("twice"), || 0);
                // Deliberately wrong: mark the new task as running on this CPU before it ran.
                let me = {
                    let _irq = crate::preempt::count::raw_local_irq_save();
                    k.raw_cpu_id()
                };
                k.task(t.id()).on_cpu.store(me, Ordering::Release);
                t.join().unwrap()
            });
            control.join().unwrap()
        })
        .unwrap();
        assert_eq!(r.init, Ok(0));
        let b = r
            .bugs
            .iter()
            .find(|b| b.contains("seen running on two CPUs"))
            .unwrap_or_else(|| core::panic!("{:?}", r.bugs));
        assert!(b.contains("task 'twice'") && b.contains("(0 and 0)") && b.contains("on CPU 0"), "{b}");
    }
}
