//! Wait queues: sleep until a condition holds; wake from task or interrupt context.
//!
//! **Mechanism.** [`WaitQueue::wait_event`] is Linux's `prepare_to_wait` loop: join the queue
//! and mark the task sleeping with IRQs masked, then test the condition, and only then
//! schedule. A woken task tests the condition first (it runs: `schedule` returned) and joins
//! the queue again only if it is still false. [`WaitQueue::wake_up`] wakes every queued task
//! (they test again).
//!
//! **Invariant.** No lost wakeups: a waker that makes the condition true after the waiter's
//! test finds the waiter already queued and sleeping, and makes it runnable, so its
//! `schedule()` returns at once.

pub(crate) mod queue;

use crate::instance::this_kernel;
use crate::sched::rq::TaskState;

pub use queue::WaitQueue;

impl WaitQueue {
    /// Sleeps until `cond()` is true (`wait_event`). Call from a task.
    #[track_caller]
    pub fn wait_event(&self, mut cond: impl FnMut() -> bool) {
        if cond() {
            return;
        }
        let place = core::panic::Location::caller();
        let k = this_kernel();
        crate::syscall::kernel_call_at(place, || {
            let me = k.task(crate::instance::current_pid());
            me.wait.begin(place);
            self.wait_event_at(&mut cond, place);
            me.wait.end();
        });
    }

    /// [`WaitQueue::wait_event`] as an interruptible sleep (`wait_event_interruptible`): the
    /// hung-task detector does not watch it (`join`, like `wait4`).
    #[track_caller]
    pub(crate) fn wait_event_interruptible(&self, mut cond: impl FnMut() -> bool) {
        if cond() {
            return;
        }
        let place = core::panic::Location::caller();
        crate::syscall::kernel_call(|| self.wait_event_at(&mut cond, place));
    }

    fn wait_event_at(&self, cond: &mut dyn FnMut() -> bool, place: &core::panic::Location<'_>) {
        let k = this_kernel();
        loop {
            let me = {
                let _irq = crate::preempt::guard::local_irq_save();
                let me = k.current_id();
                let mut w = self.waiters.lock();
                if !w.contains(&me) {
                    w.push(me);
                }
                crate::sched::set_current_state(&k, TaskState::Interruptible);
                me
            };
            if cond() {
                crate::sched::set_current_state(&k, TaskState::Running);
                self.finish_wait(me);
                return;
            }
            crate::sched::schedule_at(place);
            // `schedule` returns with the task running: a sleeper comes back only through
            // `wake_up_process`, which set `Running` under the lock the sleep was decided
            // under. So the condition is tested before joining the queue again: true, it
            // returns with nothing to undo but its place on the queue (Linux's `finish_wait`,
            // for a wakeup that did not come from this queue); false, it prepares again and
            // tests once more before sleeping (no lost wakeup: the test that decides the
            // sleep is the one after the task is queued and marked sleeping).
            if cond() {
                self.finish_wait(me);
                return;
            }
        }
    }

    /// Takes task `me` off the queue if a wakeup from elsewhere left it there.
    fn finish_wait(&self, me: crate::task::TaskId) {
        self.waiters.lock().retain(|&t| t != me);
    }

    /// Wakes every waiting task (`wake_up_all`); returns how many were asleep. Safe from
    /// interrupt context: it never allocates.
    pub fn wake_up(&self) -> usize {
        let Some(k) = crate::instance::try_this_kernel() else { return 0 };
        let mut w = self.waiters.lock();
        let mut woken = 0;
        while let Some(id) = w.pop() {
            woken += usize::from(crate::sched::wake_up_process(&k, id));
        }
        woken
    }
}

#[cfg(test)]
mod tests {
    use super::WaitQueue;
    use crate::config::Config;
    use crate::sched::rq::TaskState;
    use alloc::sync::Arc;
    use core::sync::atomic::{AtomicBool, Ordering};
    use std::prelude::rust_2021::*;

    /// A sleeper woken by something other than its queue (`wake_up_process` straight, as a
    /// timer or `kthread` wakeup would) returns from the wait running and off the queue.
    #[test]
    fn a_sleeper_woken_from_elsewhere_returns_running_and_off_the_queue() {
        let r = crate::run(Config::default(), || {
            let k = crate::instance::this_kernel();
            let (q, flag) = (Arc::new(WaitQueue::new()), Arc::new(AtomicBool::new(false)));
            let (q2, flag2) = (q.clone(), flag.clone());
            let sleeper = crate::spawn(crate::TaskBuilder::new("sleeper").fifo(50), move || {
                q2.wait_event(|| flag2.load(Ordering::Acquire));
                let k = crate::instance::this_kernel();
                let state = {
                    let rq = crate::sched::rq_lock::this_rq_lock(&k);
                    rq.task(rq.curr).state
                };
                (state == TaskState::Running) as i64 + 2 * q2.len() as i64
            });
            while q.is_empty() {
                crate::sched::cond_resched();
            }
            flag.store(true, Ordering::Release);
            assert!(crate::sched::wake_up_process(&k, sleeper.id()), "the sleeper was not asleep");
            sleeper.join().unwrap()
        })
        .unwrap();
        assert!(r.bugs.is_empty(), "{:?}", r.bugs);
        assert_eq!(r.init, Ok(1), "1: running and off the queue; 0: not running; 3: still queued");
    }
}
