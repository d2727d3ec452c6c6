//! `schedule()` and its relatives: the places where a CPU changes task.
//!
//! **Mechanism.** Every switch goes through [`__schedule`], entered with IRQs soft-masked and
//! `preempt_count == PREEMPT_OFFSET`: put the previous task back (or let it sleep), pick the
//! next, clear `need_resched`, switch stacks. The entry points differ only in why they come:
//! [`schedule`] (the task sleeps, checked for atomic context first), [`preempt_schedule_irq`]
//! (an interrupt preempted the task through the trampoline), [`preempt_schedule`] (a
//! `preempt_enable` reached zero with a reschedule due), [`do_exit`] (the task ends).
//!
//! **Invariant.** Each of these is called with the CPU's count at exactly the value its caller
//! expects back: a task that switches away with `PREEMPT_OFFSET` raised drops it again when it
//! resumes, and a new task drops the one it inherited in [`schedule_tail`].

use super::{TaskId, TaskState};
use crate::kernel::{this_kernel, Kernel};
use crate::preempt::{self, PREEMPT_OFFSET};
use crate::task::{TaskResult, TaskStats};
use arch::irq;
use std::panic::Location;
use std::sync::atomic::Ordering;

/// Switches to the next task. Call with IRQs masked and the count at `PREEMPT_OFFSET`.
pub(crate) fn __schedule(k: &Kernel, preempt: bool) {
    let now = arch::clock::now_ns();
    let switch = {
        let mut s = k.sched.lock();
        let prev = s.curr;
        s.task_mut(prev).mode = k.cpu.mode();
        let ran = s.put_prev(prev, now, preempt);
        let next = s.pick_next(now);
        crate::model::clear_resched(k, next);
        if next == prev {
            None
        } else {
            s.curr = next;
            s.nr_switches += 1;
            k.cpu.set_mode(s.task(next).mode);
            Some((prev, next, ran, s.task(prev).state == TaskState::Running))
        }
    };
    let Some((prev, next, ran, still_runnable)) = switch else { return };
    crate::trace::sched_switch(k, prev, next, crate::trace::PrevState::of(still_runnable));
    let (prev_task, next_task) = {
        let tasks = k.tasks.lock();
        (tasks[prev].clone(), tasks[next].clone())
    };
    let stats = &prev_task.stats;
    stats.runtime_ns.store(ran, Ordering::Relaxed);
    stats.syscalls.fetch_add(k.cpu.syscalls.swap(0, Ordering::Relaxed), Ordering::Relaxed);
    TaskStats::bump(if still_runnable { &stats.involuntary_switches } else { &stats.voluntary_switches });
    let (pctx, nctx) = (prev_task.context(), next_task.context());
    drop((prev_task, next_task));
    arch::switch::switch_to(&pctx, &nctx);
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
    let k = this_kernel();
    let count = preempt::preempt_count();
    if arch::irq::irqs_disabled() {
        k.bug("sleeping function called with IRQs disabled", place);
    }
    if count != 0 {
        k.bug("scheduling while atomic", place);
        preempt::preempt_count_set(0);
    }
    let was_masked = irq::local_irq_save();
    preempt::preempt_count_add(PREEMPT_OFFSET);
    __schedule(&k, false);
    preempt::preempt_count_sub(PREEMPT_OFFSET);
    irq::local_irq_restore(was_masked);
    if count != 0 {
        preempt::preempt_count_set(count);
    }
}

/// `preempt_schedule()`: `preempt_enable()` found the count zero with a reschedule due.
/// Only models that preempt kernel code act on it; under `preempt=none` (Linux's
/// `CONFIG_PREEMPT_NONE`) the reschedule waits for `ret_from_syscall` or the next sleep.
pub fn preempt_schedule() {
    let Some(k) = crate::kernel::try_this_kernel() else { return };
    if !k.model().preempts_kernel_code() || arch::irq::irqs_disabled() {
        return;
    }
    preempt::preempt_count_add(PREEMPT_OFFSET);
    let was_masked = irq::local_irq_save();
    __schedule(&k, true);
    irq::local_irq_restore(was_masked);
    preempt::preempt_count_sub(PREEMPT_OFFSET);
}

/// `preempt_schedule_irq()`: reached from the preemption trampoline (or a replay) with IRQs
/// masked and the count zero; returns with IRQs still masked.
pub(crate) fn preempt_schedule_irq() {
    let Some(k) = crate::kernel::try_this_kernel() else { return };
    TaskStats::bump(&k.task(k.current_id()).stats.irq_preemptions);
    loop {
        preempt::preempt_count_add(PREEMPT_OFFSET);
        __schedule(&k, true);
        preempt::preempt_count_sub(PREEMPT_OFFSET);
        if !preempt::need_resched() {
            break;
        }
    }
}

/// `schedule_tail()`: the first thing a new task does, finishing the switch that started it.
pub fn schedule_tail() {
    preempt::preempt_count_sub(PREEMPT_OFFSET);
    irq::local_irq_enable();
}

/// `try_to_wake_up()` for task `id`, from task or interrupt context. Returns whether the task
/// was woken (false if it was not sleeping).
pub(crate) fn wake_up_process(k: &Kernel, id: TaskId) -> bool {
    let mut s = k.sched.lock();
    let was_sleeping = s.task(id).state == TaskState::Interruptible;
    if s.wake(id) {
        crate::model::resched_curr(k, &s, id);
    }
    if was_sleeping {
        crate::trace::sched_wakeup(k, id, s.task(id).policy.rt_prio(), s.curr);
    }
    was_sleeping
}

/// `do_exit()`: records the result, wakes joiners, and switches away for good.
pub(crate) fn do_exit(id: TaskId, result: TaskResult) -> ! {
    let (prev_ctx, next_ctx) = {
        let k = this_kernel();
        let task = k.task(id);
        *task.result.lock() = Some(result);
        task.exited.wake_up();
        irq::local_irq_disable();
        preempt::preempt_count_set(PREEMPT_OFFSET);
        let now = arch::clock::now_ns();
        let next = {
            let mut s = k.sched.lock();
            s.task_mut(id).state = TaskState::Dead;
            s.nr_live -= 1;
            let ran = s.put_prev(id, now, false);
            task.stats.runtime_ns.store(ran, Ordering::Relaxed);
            task.stats.syscalls.fetch_add(k.cpu.syscalls.swap(0, Ordering::Relaxed), Ordering::Relaxed);
            let next = s.pick_next(now);
            crate::model::clear_resched(&k, next);
            s.curr = next;
            s.nr_switches += 1;
            k.cpu.set_mode(s.task(next).mode);
            next
        };
        crate::trace::sched_switch(&k, id, next, crate::trace::PrevState::Dead);
        let prev_ctx = task.ctx.lock().take();
        let next_ctx = k.task(next).context();
        (prev_ctx.unwrap_or_else(|| arch::cpu::die("BUG: exiting task has no context")), next_ctx)
    };
    arch::switch::switch_to_final(prev_ctx, next_ctx)
}

/// `sched_yield()`: give the CPU to the next task of the same priority. An RT task goes to the
/// tail of its priority; a fair task just reschedules (and runs on if it is still the most
/// deserving).
#[track_caller]
pub fn sched_yield() {
    let place = Location::caller();
    crate::syscall::kernel_call(|| {
        let k = this_kernel();
        {
            let mut s = k.sched.lock();
            let curr = s.curr;
            s.task_mut(curr).to_tail = true;
        }
        schedule_at(place);
    });
}
