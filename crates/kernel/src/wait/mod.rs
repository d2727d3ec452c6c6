//! Wait queues: sleep until a condition holds; wake from task or interrupt context.
//!
//! **Mechanism.** [`WaitQueue::wait_event`] is Linux's `prepare_to_wait` loop: join the queue
//! and mark the task sleeping with IRQs masked, then test the condition, and only then
//! schedule. [`WaitQueue::wake_up`] wakes every queued task (they test again).
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
                self.waiters.lock().retain(|&t| t != me);
                return;
            }
            crate::sched::schedule_at(place);
        }
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
