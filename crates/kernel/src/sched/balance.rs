//! Placement and balancing across CPUs: where a new or woken task goes, RT push and pull,
//! fair balancing on the tick and when a CPU goes idle, affinity changes, and moving tasks.
//!
//! **Mechanism.**
//! - *Fork* ([`select_task_rq_fork`]): the allowed CPU with the fewest runnable tasks, an idle
//!   one first.
//! - *Wakeup* ([`select_task_rq`]): an RT task goes to an allowed CPU running at a lower
//!   priority level than it (`cpupri`), the previous CPU if it is one of them; a fair task to
//!   its previous CPU if allowed and idle, else an idle allowed CPU, else the previous one (it is
//!   cache-hot there).
//! - *RT push* ([`push_rt_tasks`]): a CPU with an RT task waiting behind another (`rt_overloaded`)
//!   hands it to an allowed CPU running lower, found through `cpupri`.
//! - *RT pull* ([`pull_rt_task`]): a CPU about to run below RT priority takes the highest
//!   waiting RT task of an overloaded CPU that may run here and outranks what it would run.
//! - *Fair* ([`load_balance`], on the tick, and [`newidle_balance`], when a CPU has nothing to
//!   run): a CPU not running RT takes a queued fair task from a CPU where one waits behind an
//!   RT task, or that has at least two fair tasks more (one, if this CPU is idle), so that N
//!   CPU-bound fair tasks end up one per CPU and none starves behind an RT task another CPU
//!   could run it beside.
//! - A *running* task is never moved by another CPU: it is moved by its own CPU when it switches
//!   out (`Rq::put_prev` leaves a task that may no longer run there in `migrate_after`, which
//!   [`finish_task_switch`] moves once its stack is free).
//!
//! **Invariant.** A task moves only while queued and not running (or off every queue in
//! `migrate_after`), with both run queues locked (`double_lock_balance`), and only to a CPU it
//! is allowed on; its `Task::cpu` changes in the same critical section. Every move is counted on
//! the CPU it arrives at.

use super::rq_lock::{double_lock_balance, rq_lock, task_rq_lock, RqGuard};
use crate::arch::{Arch, A};
use crate::instance::{this_kernel, Kernel};
use crate::task::{CpuMask, Policy, TaskId, NO_CPU};
use alloc::{format, string::String, vec::Vec};
use core::panic::Location;
use core::sync::atomic::Ordering;

/// Ticks between two fair balancing passes of a CPU.
const BALANCE_INTERVAL_TICKS: u64 = 4;

fn idle_cpus(k: &Kernel) -> CpuMask {
    k.sched.cpupri.find(k.all_cpus(), 1)
}

/// CPU `cpu`'s runnable tasks (for fork placement).
fn nr_running(k: &Kernel, cpu: usize) -> usize {
    rq_lock(k, cpu).nr_running()
}

/// Fork placement: an RT task as at a wakeup from the forking CPU (`cpupri`); a fair task on
/// the allowed CPU with the least to run, idle ones first (lowest number on ties, so a one-CPU
/// instance and a pinned task always get the same answer).
pub(crate) fn select_task_rq_fork(k: &Kernel, id: TaskId) -> usize {
    let task = k.task(id);
    let allowed = task.cpus_allowed.load(Ordering::Relaxed) & k.all_cpus();
    if task.policy.rt_prio().is_some() {
        return select_task_rq(k, task.policy, allowed, k.raw_cpu_id());
    }
    let idle = idle_cpus(k) & allowed;
    if idle != 0 {
        return idle.trailing_zeros() as usize;
    }
    let cpus = (0..k.cpus.len()).filter(|&c| allowed & (1 << c) != 0);
    cpus.min_by_key(|&c| nr_running(k, c)).unwrap_or(0)
}

/// Wakeup placement for task `id`, whose previous CPU is `prev` (see the module docs).
pub(crate) fn select_task_rq(k: &Kernel, policy: Policy, allowed: CpuMask, prev: usize) -> usize {
    let allowed = allowed & k.all_cpus();
    let prev_ok = allowed & (1 << prev) != 0;
    let pick = |m: CpuMask| if m & (1 << prev) != 0 { prev } else { m.trailing_zeros() as usize };
    if let Some(p) = policy.rt_prio() {
        let lower = k.sched.cpupri.find(allowed, 1 + p as usize);
        if lower != 0 {
            return pick(lower);
        }
    } else {
        let idle = idle_cpus(k) & allowed;
        if idle != 0 {
            return pick(idle);
        }
    }
    if prev_ok {
        prev
    } else {
        allowed.trailing_zeros() as usize
    }
}

/// Notes CPU `rq`'s priority level in `cpupri` (the higher of its running task's and its
/// highest queued task's: a CPU with work queued is not idle) and whether an RT task waits
/// behind another there (`rt_overloaded`). Call with the run queue locked, after queueing or
/// switching.
pub(crate) fn note_rt_queued(k: &Kernel, rq: &RqGuard<'_>) {
    let fair_queued = usize::from(rq.fair.nr_running() > 0); // not idle: a fair task waits
    let queued = rq.rt.highest_prio().map_or(fair_queued, |p| 1 + p as usize);
    k.sched.cpupri.set(rq.cpu, rq.prio_level().max(queued));
    let bit = 1u64 << rq.cpu;
    let overloaded = rq.rt.highest_prio().is_some() && rq.task(rq.curr).policy.rt_prio().is_some();
    // Read first: the shared word is written (a locked instruction) only when this CPU's bit
    // changes, which only this run queue's lock holder does.
    let was = k.sched.rt_overloaded.load(Ordering::Relaxed) & bit != 0;
    if overloaded && !was {
        k.sched.rt_overloaded.fetch_or(bit, Ordering::AcqRel);
    } else if !overloaded && was {
        k.sched.rt_overloaded.fetch_and(!bit, Ordering::AcqRel);
    }
}

/// Moves queued, not running task `id` from `src` to `dst` (both locked) and preempts `dst`'s
/// current task if the arrival outranks it.
fn move_queued(k: &Kernel, src: &mut RqGuard<'_>, dst: &mut RqGuard<'_>, id: TaskId) {
    if !src.is_queued(id) {
        A::die("BUG: a task moved between run queues while not queued (running or in transit)");
    }
    src.dequeue(id);
    move_off_queue(k, src, dst, id);
    if dst.wake_new(id) {
        crate::model::decide::resched_curr(k, dst, id);
    }
    note_rt_queued(k, src);
    note_rt_queued(k, dst);
}

/// Moves task `id` (on no queue) from `src` to `dst`, both locked, and counts the migration.
fn move_off_queue(k: &Kernel, src: &mut RqGuard<'_>, dst: &mut RqGuard<'_>, id: TaskId) {
    let task = k.task(id);
    let held = task.preempt_held.load(Ordering::Relaxed);
    if held != 0 {
        k.bug_args(
            format_args!("migration of task '{}' (pid {id}) holding preempt_count {held:#x}", task.name),
            Location::caller(),
        );
    }
    src.move_state_to(dst, id);
    task.cpu.store(dst.cpu, Ordering::Release);
    k.cpus[dst.cpu].stats.migrations_in.fetch_add(1, Ordering::Relaxed);
    crate::trace::sched_migrate(k, id, src.cpu, dst.cpu);
}

/// `try_to_wake_up`'s placement: task `id` (locked in `rq`, already marked running, on no
/// queue) goes where `select_task_rq` says; returns the run queue it was queued on, locked, and
/// whether its current task should be preempted for it.
pub(crate) fn ttwu_place<'a>(k: &'a Kernel, rq: RqGuard<'a>, id: TaskId) -> (RqGuard<'a>, bool) {
    let (policy, allowed) = (rq.task(id).policy, rq.task(id).allowed);
    let target = select_task_rq(k, policy, allowed, rq.cpu);
    let mut rq = rq;
    if target != rq.cpu {
        let (mut src, mut dst, _) = double_lock_balance(k, rq, target);
        // Unlocked or not on the way, the task is still ours: it is marked running, so no
        // other waker touches it, and it is on no queue, so no balancer does.
        move_off_queue(k, &mut src, &mut dst, id);
        drop(src);
        rq = dst;
    }
    let preempt = rq.activate_woken(id);
    note_rt_queued(k, &rq);
    (rq, preempt)
}

/// After a switch, on the CPU that made it: the previous task's stack is free (`on_cpu`
/// cleared), a task that may no longer run here moves to an allowed CPU, and RT tasks are
/// pushed or pulled as the new priority level asks (Linux's `finish_task_switch` and balance
/// callbacks). Call with IRQs masked.
pub(crate) fn finish_task_switch(k: &Kernel) {
    let me = k.raw_cpu_id();
    let prev = k.cpus[me].prev_after.load(Ordering::Relaxed);
    if prev != crate::cpu::NO_PREV {
        k.cpus[me].prev_after.store(crate::cpu::NO_PREV, Ordering::Relaxed);
        k.task(prev).on_cpu.store(NO_CPU, Ordering::Release);
    }
    if k.cpus.len() == 1 {
        return; // nowhere to move, push or pull to
    }
    let leaving = rq_lock(k, me).migrate_after.take();
    if let Some(id) = leaving {
        migrate_leaving(k, me, id);
    }
    push_rt_tasks(k, me);
    if k.sched.cpupri.level(me) <= 1 {
        pull_rt_task(k, me);
    }
}

/// Moves task `id`, which this CPU put off its queues because it might no longer run here, to
/// an allowed CPU (back onto this one, if its mask changed again meanwhile).
fn migrate_leaving(k: &Kernel, me: usize, id: TaskId) {
    let mut rq = rq_lock(k, me);
    let t = rq.task(id);
    let target = select_task_rq(k, t.policy, t.allowed, me);
    if target != me {
        let (mut src, dst, _) = double_lock_balance(k, rq, target);
        let mut dst = dst;
        move_off_queue(k, &mut src, &mut dst, id);
        drop(src);
        rq = dst;
    }
    // Whatever its state now: it was preempted or yielded, so it stays runnable (on_rq).
    if rq.wake_new(id) {
        crate::model::decide::resched_curr(k, &rq, id);
    }
    note_rt_queued(k, &rq);
}

/// The highest waiting RT task of `rq` that may run on `cpu`, with its priority.
fn waiting_rt_for(rq: &RqGuard<'_>, cpu: usize) -> Option<(TaskId, u8)> {
    let top = rq.rt.highest_prio()?;
    (1..=top)
        .rev()
        .find_map(|p| rq.rt.iter_level(p).find(|&id| rq.task(id).allowed & (1 << cpu) != 0).map(|id| (id, p)))
}

/// RT push from CPU `me`: while an RT task waits here behind another, hand it to a CPU it may
/// run on that runs lower.
pub(crate) fn push_rt_tasks(k: &Kernel, me: usize) {
    for _ in 0..k.cpus.len() {
        if k.sched.rt_overloaded.load(Ordering::Acquire) & (1 << me) == 0 {
            return;
        }
        let rq = rq_lock(k, me);
        let Some(top) = rq.rt.highest_prio() else { return };
        let Some(id) = rq.rt.iter_level(top).next() else { return };
        let lower = k.sched.cpupri.find(rq.task(id).allowed & !(1 << me), 1 + top as usize);
        if lower == 0 {
            return;
        }
        let target = lower.trailing_zeros() as usize;
        let (mut src, mut dst, _) = double_lock_balance(k, rq, target);
        if !src.rt.is_queued(id) || dst.prio_level() > top as usize {
            return; // it ran, or the target rose meanwhile: try again at the next switch
        }
        move_queued(k, &mut src, &mut dst, id);
    }
}

/// RT pull to CPU `me`: take the highest waiting RT task of an overloaded CPU that may run here
/// and outranks everything queued here. Returns whether one came.
pub(crate) fn pull_rt_task(k: &Kernel, me: usize) -> bool {
    let overloaded = k.sched.rt_overloaded.load(Ordering::Acquire) & !(1 << me);
    for src_cpu in (0..k.cpus.len()).filter(|&c| overloaded & (1 << c) != 0) {
        let rq = rq_lock(k, me);
        let here = rq.rt.highest_prio().map_or(rq.prio_level(), |p| (1 + p as usize).max(rq.prio_level()));
        let (mut dst, mut src, _) = double_lock_balance(k, rq, src_cpu);
        let Some((id, p)) = waiting_rt_for(&src, me) else { continue };
        if (p as usize) < here {
            continue;
        }
        move_queued(k, &mut src, &mut dst, id);
        return true;
    }
    false
}

/// A CPU's fair load as the balancer sees it: fair tasks runnable there (the running one
/// included), queued fair tasks, and whether an RT task holds the CPU (then its queued fair
/// tasks wait however few they are: Linux lowers such a CPU's capacity for the same reason).
fn fair_load(rq: &RqGuard<'_>) -> (usize, usize, bool) {
    let queued = rq.fair.nr_running();
    let curr = rq.task(rq.curr).policy;
    (queued + usize::from(matches!(curr, Policy::Normal(_))), queued, curr.rt_prio().is_some())
}

/// Should `me` (with `mine`) take a queued fair task of a CPU with `theirs`?
fn worth_pulling(mine: (usize, usize, bool), theirs: (usize, usize, bool)) -> bool {
    let (my_fair, _, my_rt) = mine;
    let (their_fair, their_queued, their_rt) = theirs;
    their_queued > 0 && !my_rt && (my_fair == 0 || their_rt || their_fair >= my_fair + 2)
}

/// Fair balancing toward CPU `me`: take a queued fair task that may run here from the CPU
/// where one waits longest (behind an RT task, or behind the most fair tasks), if `me` is
/// idle or at least two fair tasks lighter. Returns whether one came.
fn pull_fair_task(k: &Kernel, me: usize) -> bool {
    let mine = fair_load(&rq_lock(k, me));
    let busiest = (0..k.cpus.len())
        .filter(|&c| c != me)
        .map(|c| (fair_load(&rq_lock(k, c)), c))
        .filter(|&(l, _)| worth_pulling(mine, l))
        .max_by_key(|&((fair, _, rt), _)| (rt, fair));
    let Some((_, src_cpu)) = busiest else { return false };
    let rq = rq_lock(k, me);
    let (mut dst, mut src, _) = double_lock_balance(k, rq, src_cpu);
    if !worth_pulling(fair_load(&dst), fair_load(&src)) {
        return false; // it changed meanwhile
    }
    let candidate = src.fair.iter_ids().find(|&id| src.task(id).allowed & (1 << me) != 0);
    let Some(id) = candidate else { return false };
    move_queued(k, &mut src, &mut dst, id);
    true
}

/// `newidle_balance`: this CPU has nothing to run; pull an RT task, else a fair one. Call with
/// IRQs masked. Returns whether something came.
pub(crate) fn newidle_balance(k: &Kernel) -> bool {
    if k.cpus.len() == 1 {
        return false;
    }
    let me = k.raw_cpu_id();
    pull_rt_task(k, me) || pull_fair_task(k, me)
}

/// Periodic balancing from the tick of CPU `me` (hard-IRQ context), staggered across CPUs.
pub(crate) fn load_balance(k: &Kernel, jiffies: u64) {
    let me = k.raw_cpu_id();
    if k.cpus.len() > 1 && (jiffies + me as u64).is_multiple_of(BALANCE_INTERVAL_TICKS) {
        pull_fair_task(k, me);
    }
}

/// `set_cpus_allowed_ptr`: task `pid` may from now on run only on the CPUs of `mask`. A queued
/// task that may no longer stay where it is moves at once; a running one moves off its CPU at
/// its next switch, which this asks for. Errors name a mask with no CPU of the instance or a pid
/// that does not exist.
pub fn set_cpus_allowed(pid: TaskId, mask: CpuMask) -> Result<(), String> {
    let k = this_kernel();
    let allowed = mask & k.all_cpus();
    if allowed == 0 {
        return Err(format!(
            "set_cpus_allowed: mask {mask:#x} names no CPU of this instance (cpus={}; use bits within {:#x})",
            k.cpus.len(),
            k.all_cpus()
        ));
    }
    if pid >= k.sched.nr_tasks() {
        return Err(format!("set_cpus_allowed: no task with pid {pid}"));
    }
    let _irq = crate::preempt::count::raw_local_irq_save();
    let mut rq = task_rq_lock(&k, pid);
    if rq.task(pid).policy == Policy::Idle {
        return Err(format!("set_cpus_allowed: pid {pid} is an idle task, bound to its CPU"));
    }
    rq.task_mut(pid).allowed = allowed;
    k.task(pid).cpus_allowed.store(allowed, Ordering::Relaxed);
    let cpu = rq.cpu;
    if allowed & (1 << cpu) != 0 {
        return Ok(());
    }
    if rq.curr == pid {
        crate::model::decide::resched_curr(&k, &rq, pid); // it leaves at its next switch
    } else if rq.migrate_after == Some(pid) {
        // In transit off this CPU already: it goes where the new mask says.
    } else if rq.task(pid).on_rq {
        let target = allowed.trailing_zeros() as usize;
        let (mut src, mut dst, _) = double_lock_balance(&k, rq, target);
        // Checked again under both locks (the first may have been dropped): still queued here,
        // not running and not in transit (a task preempted meanwhile may be in `migrate_after`,
        // and its own CPU moves it).
        if src.is_queued(pid) && k.task(pid).cpu.load(Ordering::Acquire) == src.cpu {
            move_queued(&k, &mut src, &mut dst, pid);
        }
    }
    Ok(())
}

/// The scheduler's state as text (Linux's `/proc/sched_debug`): per CPU its current task, its
/// queues, its `cpupri` level and whether it is RT-overloaded; per task its CPU, state and
/// flags. For diagnosis: it locks each run queue in turn.
pub fn sched_debug() -> String {
    use core::fmt::Write;
    let k = this_kernel();
    let mut s = String::new();
    let names: Vec<String> = k.sched.tasks().iter().map(|t| t.name.clone()).collect();
    let ov = k.sched.rt_overloaded.load(Ordering::Relaxed);
    for c in 0..k.cpus.len() {
        let rq = rq_lock(&k, c);
        let rt: Vec<TaskId> = (1..=99u8).rev().flat_map(|p| rq.rt.iter_level(p).collect::<Vec<_>>()).collect();
        let fair: Vec<TaskId> = rq.fair.iter_ids().collect();
        let _ = writeln!(
            s,
            "cpu#{c}: curr {} ({}), level {}, overloaded {}, rt {rt:?}, fair {fair:?}, migrate_after {:?}",
            rq.curr,
            names[rq.curr],
            k.sched.cpupri.level(c),
            ov & (1 << c) != 0,
            rq.migrate_after,
        );
    }
    for (id, name) in names.iter().enumerate() {
        let t = k.task(id);
        let cpu = t.cpu.load(Ordering::Relaxed);
        let ts = rq_lock(&k, cpu).task(id).clone();
        let _ = writeln!(
            s,
            "  pid {id} {name}: cpu {cpu}, on_cpu {:?}, {:?}, on_rq {}, {:?}, allowed {:#x}",
            t.on_cpu.load(Ordering::Relaxed),
            ts.state,
            ts.on_rq,
            ts.policy,
            ts.allowed
        );
    }
    s
}
