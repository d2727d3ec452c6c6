//! Time: the tick (jiffies, scheduler tick) and one-shot high-resolution timers.
//!
//! **Mechanism.** The periodic host timer raises the tick line (`irq::LINE_TICK`) `HZ` times a second:
//! jiffies advance (by the overruns too, so no tick is lost when the CPU thread was held up)
//! and `Sched::tick` charges the running task. Sleepers are kept in a min-heap
//! of deadlines; one one-shot host timer, raising `irq::LINE_HRTIMER`, is always armed
//! for the earliest deadline, so a sleeper wakes on time rather than at the next tick.
//!
//! **Invariant.** No wakeup is lost: a sleeper is in the heap and marked sleeping before IRQs
//! are enabled again, and every expiry is handled with IRQs masked; a deadline already past
//! when armed fires at once.

use crate::arch::{Arch, A};
use crate::instance::{this_kernel, Kernel};
pub(crate) mod state;

pub use crate::task::timerlat::WakeupParts;

use crate::sched::rq::TaskState;
use core::sync::atomic::Ordering;

/// The tick: advance jiffies, run the scheduler tick.
pub(crate) fn timer_interrupt(k: &Kernel) {
    let cpu = k.this_cpu();
    // Ticks the host coalesced while the CPU thread was held up count too: against jiffies
    // (on CPU 0) and against the running task's RR slice.
    let ticks = 1 + cpu.tick_timer.get().map_or(0, A::timer_overrun) as u64;
    if cpu.id == 0 {
        k.time.jiffies.fetch_add(ticks, Ordering::Relaxed);
    }
    crate::model::decide::tick(k);
    crate::softirq::run_local_timers(k);
    {
        let mut rq = crate::sched::rq_lock::rq_lock(k, cpu.id);
        if rq.tick(A::now_ns(), ticks) {
            let curr = rq.curr;
            crate::model::decide::resched_curr(k, &rq, curr);
        }
    }
    crate::sched::balance::load_balance(k, k.time.jiffies());
}

/// Wakes every sleeper whose deadline has passed and re-arms the host timer.
pub(crate) fn hrtimer_interrupt(k: &Kernel) {
    let now = A::now_ns();
    loop {
        let expired = k.this_cpu().timers.lock().pop_expired(now);
        let Some(id) = expired else { break };
        if crate::sched::wake_up_process(k, id) {
            timerlat_woken(k, id);
        }
    }
    rearm(k);
}

/// A tracked task (`TaskBuilder::timerlat`) woken by this CPU's hrtimer onto this CPU takes the
/// interrupt's entry and IP, and is the CPU's pending wakeup until it runs.
fn timerlat_woken(k: &Kernel, id: crate::task::TaskId) {
    let task = k.task(id);
    let cpu = k.this_cpu();
    if task.timerlat.load(Ordering::Relaxed) && task.cpu.load(Ordering::Relaxed) == cpu.id {
        let s = &cpu.stamps;
        task.wakeup.woken(s.irq_entry.load(Ordering::Relaxed), s.irq_ip.load(Ordering::Relaxed));
        s.pending.store(id + 1, Ordering::Relaxed);
    }
}

/// Where the calling task's last timer wakeup went (`TaskBuilder::timerlat`): the parts of the
/// lateness of a wakeup due at `deadline` that ran at `run` (both on [`now_ns`]'s clock), which
/// add up to `run - deadline`; `None` when the wakeup was not a local hrtimer wakeup of a
/// tracked task, or a stamp is missing. Takes the stamps: a second call gives `None`.
pub fn wakeup_parts(deadline: u64, run: u64) -> Option<crate::task::timerlat::WakeupParts> {
    let k = this_kernel();
    k.task(crate::instance::current_pid()).wakeup.take(deadline, run)
}

fn rearm(k: &Kernel) {
    let cpu = k.this_cpu();
    if let (Some(d), Some(t)) = (cpu.timers.lock().next_deadline(), cpu.hrtimer.get()) {
        A::timer_set_oneshot_at(t, d);
    }
}

/// Sleeps until `deadline_ns` on `Arch::now_ns`'s clock (an absolute time, as
/// `clock_nanosleep(TIMER_ABSTIME)`).
#[track_caller]
pub fn sleep_until(deadline_ns: u64) {
    let place = core::panic::Location::caller();
    crate::syscall::kernel_call(|| sleep_until_at(deadline_ns, place));
}

fn sleep_until_at(deadline_ns: u64, place: &core::panic::Location<'_>) {
    let k = this_kernel();
    if A::now_ns() >= deadline_ns {
        // nothing to wait for (a host hold or an interrupt's exit took the time): no schedule,
        // but a sleep in atomic context is reported all the same
        crate::sched::might_sleep(&k, place);
        return;
    }
    while A::now_ns() < deadline_ns {
        {
            let _irq = crate::preempt::guard::local_irq_save();
            let me = k.current_id();
            if k.this_cpu().timers.lock().arm(deadline_ns, me) {
                rearm(&k);
            }
            crate::sched::set_current_state(&k, TaskState::Interruptible);
        }
        crate::sched::schedule_at(place);
    }
}

/// Sleeps for `ns` nanoseconds.
#[track_caller]
pub fn sleep_ns(ns: u64) {
    sleep_until(A::now_ns() + ns);
}

/// The clock kernel code reads: nanoseconds on the host's monotonic clock.
pub fn now_ns() -> u64 {
    A::now_ns()
}

/// How many times the machine under the calling CPU took it away from the kernel so far (on
/// the hosted arch, the host's involuntary switches of the CPU's thread): two reads that differ
/// bracket a stretch the host held. Call where the task cannot move between the two reads
/// (bound to one CPU).
pub fn cpu_stolen() -> u64 {
    A::cpu_stolen()
}

/// Jiffies of the running kernel.
pub fn jiffies() -> u64 {
    this_kernel().time.jiffies()
}
