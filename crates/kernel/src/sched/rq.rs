//! One CPU's run queue (`rq`): its class queues and the scheduling state of every task, and
//! the class logic (pick, enqueue, tick) over them. The scheduler's data, below its entry
//! points (`entry.rs`), which lock and switch.
//!
//! **Invariant.** Nothing here allocates but [`Rq::add_task`], and nothing here locks or
//! switches: the caller holds the run queue's lock.

use super::fair::{self, FairEntity, FairRunQueue, FairTunables};
use super::rt::RtRunQueue;
use crate::arch::{Arch, A};
use crate::task::{CpuMask, Policy, TaskId};
use alloc::vec::Vec;

/// A task's run state (`TASK_RUNNING`, `TASK_INTERRUPTIBLE`, `TASK_DEAD`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TaskState {
    Running,
    Interruptible,
    Dead,
}

/// Where a task's CPU is executing: its own code, or kernel code on its behalf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    User = 0,
    Kernel = 1,
}

/// A task's scheduling state (the scheduler's part of `task_struct`).
#[derive(Clone, Debug)]
pub(crate) struct TaskSched {
    pub policy: Policy,
    pub state: TaskState,
    pub on_rq: bool,
    pub se: FairEntity,
    pub rr_left: u32,
    /// Requeue at the tail of its priority when switched out (RR slice used up, or yield).
    pub to_tail: bool,
    pub mode: Mode,
    /// The CPUs it may run on (`cpus_mask`).
    pub allowed: CpuMask,
}

/// One CPU's run queue, and the scheduling state of every task (authoritative for the tasks
/// whose CPU this is).
pub(crate) struct Rq {
    pub(crate) cpu: usize,
    pub(crate) tasks: Vec<TaskSched>,
    pub(crate) rt: RtRunQueue,
    pub(crate) fair: FairRunQueue,
    pub(crate) curr: TaskId,
    pub(crate) idle: TaskId,
    pub(crate) nr_switches: u64,
    pub(crate) rr_timeslice: u32,
    /// A task `__schedule` took off this CPU because it may no longer run here: still runnable
    /// (`on_rq`) but on no class queue, so no waker or balancer touches it; moved to an allowed
    /// CPU right after the switch (`finish_task_switch`).
    pub(crate) migrate_after: Option<TaskId>,
}

impl Rq {
    pub(crate) fn new(cpu: usize, rr_timeslice: u32) -> Rq {
        Rq {
            cpu,
            tasks: Vec::new(),
            rt: RtRunQueue::new(),
            fair: FairRunQueue::new(FairTunables::default()),
            curr: 0,
            idle: 0,
            nr_switches: 0,
            rr_timeslice,
            migrate_after: None,
        }
    }

    /// Registers task `id` (which must be the next id) and reserves queue room for it.
    pub(crate) fn add_task(&mut self, id: TaskId, policy: Policy, mode: Mode, allowed: CpuMask) {
        assert_eq!(id, self.tasks.len(), "task ids are dense");
        let nice = if let Policy::Normal(n) = policy { n } else { 0 };
        let mut se = FairEntity::new(nice);
        self.fair.place_entity(&mut se, true);
        self.tasks.push(TaskSched {
            policy,
            state: TaskState::Running,
            on_rq: false,
            se,
            rr_left: self.rr_timeslice,
            to_tail: false,
            mode,
            allowed,
        });
        self.rt.reserve(id + 1);
        self.fair.reserve(id + 1);
    }

    pub(crate) fn task(&self, id: TaskId) -> &TaskSched {
        &self.tasks[id]
    }

    pub(crate) fn task_mut(&mut self, id: TaskId) -> &mut TaskSched {
        &mut self.tasks[id]
    }

    fn may_run_here(&self, id: TaskId) -> bool {
        self.tasks[id].allowed & (1 << self.cpu) != 0
    }

    pub(crate) fn enqueue(&mut self, id: TaskId, head: bool) {
        let t = &mut self.tasks[id];
        t.on_rq = true;
        match t.policy {
            Policy::Fifo(p) | Policy::Rr(p) if head => self.rt.enqueue_head(id, p),
            Policy::Fifo(p) | Policy::Rr(p) => self.rt.enqueue(id, p),
            Policy::Normal(_) => self.fair.enqueue(id, t.se.vruntime, t.se.weight),
            Policy::Idle => {}
        }
    }

    /// Is task `id` in one of this run queue's class queues (queued, not running, not in
    /// transit)?
    pub(crate) fn is_queued(&self, id: TaskId) -> bool {
        self.rt.is_queued(id) || self.fair.is_queued(id)
    }

    /// Takes a queued (not running) task off the class queues (`deactivate_task`).
    pub(crate) fn dequeue(&mut self, id: TaskId) {
        let t = &mut self.tasks[id];
        t.on_rq = false;
        match t.policy {
            Policy::Fifo(_) | Policy::Rr(_) => {
                self.rt.dequeue(id);
            }
            Policy::Normal(_) => {
                self.fair.dequeue(id);
            }
            Policy::Idle => {}
        }
    }

    /// `put_prev_task`: charge `prev` for its run and, if it stays runnable, queue it again;
    /// returns its total runtime. A task that was preempted (rather than giving up the CPU)
    /// stays runnable whatever its state, as Linux's `__schedule(SM_PREEMPT)` does. An RT task
    /// that stays runnable keeps its place at the head of its priority (Linux never takes the
    /// running RT task off its list), unless its RR slice ran out: then it goes to the tail.
    /// A runnable task no longer allowed on this CPU stays runnable but off the class queues,
    /// noted in `migrate_after`.
    pub(crate) fn put_prev(&mut self, prev: TaskId, now: u64, preempt: bool) -> u64 {
        fair::update_curr(&mut self.tasks[prev].se, now);
        let t = &mut self.tasks[prev];
        let total = t.se.sum_exec_runtime;
        let sleeps = t.state != TaskState::Running && !preempt;
        if t.policy == Policy::Idle {
            return total;
        }
        if sleeps || t.state == TaskState::Dead {
            t.on_rq = false; // deactivate_task
            return total;
        }
        let expired = core::mem::take(&mut t.to_tail);
        if expired {
            t.rr_left = self.rr_timeslice;
        }
        let head = t.policy.rt_prio().is_some() && !expired;
        if !self.may_run_here(prev) {
            // Still runnable (`on_rq`), in transit: on no class queue until it is moved.
            self.migrate_after = Some(prev);
            return total;
        }
        self.enqueue(prev, head);
        total
    }

    /// `pick_next_task`: RT first, then fair, then idle.
    pub(crate) fn pick_next(&mut self, now: u64) -> TaskId {
        let next = match self.rt.pick_next() {
            Some(id) => id,
            None => match self.fair.pick_next() {
                Some((id, _)) => id,
                None => self.idle,
            },
        };
        let se = &mut self.tasks[next].se;
        fair::set_next_entity(se, now);
        let curr_v = (self.tasks[next].policy != Policy::Idle).then_some(self.tasks[next].se.vruntime);
        self.fair.update_min_vruntime(curr_v);
        next
    }

    /// `ttwu_do_activate`: queues a woken task (state already running, not on a queue) and
    /// says whether the current task should be preempted for it.
    pub(crate) fn activate_woken(&mut self, id: TaskId) -> bool {
        if self.tasks[id].policy.rt_prio().is_none() {
            let mut se = self.tasks[id].se;
            self.fair.place_entity(&mut se, false);
            self.tasks[id].se = se;
        }
        self.enqueue(id, false);
        // Charge the running task up to now before comparing (as Linux's update_curr in
        // check_preempt_wakeup_fair), or a slow tick would leave its vruntime stale.
        let curr = self.curr;
        fair::update_curr(&mut self.tasks[curr].se, A::now_ns());
        self.check_preempt_curr(id)
    }

    /// `wake_up_new_task`.
    pub(crate) fn wake_new(&mut self, id: TaskId) -> bool {
        self.enqueue(id, false);
        self.check_preempt_curr(id)
    }

    /// `check_preempt_curr`: does `woken` deserve the CPU more than `curr`?
    pub(crate) fn check_preempt_curr(&self, woken: TaskId) -> bool {
        let (c, w) = (&self.tasks[self.curr], &self.tasks[woken]);
        match (c.policy, w.policy) {
            (Policy::Idle, _) => true,
            (_, Policy::Fifo(wp) | Policy::Rr(wp)) => c.policy.rt_prio().is_none_or(|cp| wp > cp),
            (Policy::Normal(_), Policy::Normal(_)) => self.fair.check_preempt_wakeup(&c.se, &w.se),
            _ => false,
        }
    }

    /// `scheduler_tick` for `ticks` ticks (more than one when the host held the CPU thread up):
    /// charge the running task and decide whether its time is up.
    pub(crate) fn tick(&mut self, now: u64, ticks: u64) -> bool {
        let curr = self.curr;
        fair::update_curr(&mut self.tasks[curr].se, now);
        let t = &mut self.tasks[curr];
        match t.policy {
            Policy::Rr(p) => {
                t.rr_left = t.rr_left.saturating_sub(ticks.min(u32::MAX as u64) as u32);
                if t.rr_left > 0 {
                    return false;
                }
                t.rr_left = self.rr_timeslice;
                // Only yield the CPU if another task shares the priority (task_tick_rt).
                let others = self.rt.iter_level(p).next().is_some();
                t.to_tail = others;
                others
            }
            Policy::Normal(_) => {
                let nr = self.fair.nr_running() + 1;
                let load = self.fair.load_weight() + t.se.weight;
                self.fair.check_preempt_tick(&t.se, nr, load)
            }
            Policy::Fifo(_) | Policy::Idle => false,
        }
    }

    /// Is any task other than idle runnable here (queued, not running)?
    pub(crate) fn has_runnable(&self) -> bool {
        self.rt.nr_running() + self.fair.nr_running() > 0
    }

    /// Runnable tasks here, the running one included (idle excluded): the load balancing
    /// compares.
    pub(crate) fn nr_running(&self) -> usize {
        self.rt.nr_running() + self.fair.nr_running() + usize::from(self.curr != self.idle)
    }

    /// The priority level the CPU runs at, for `cpupri`: 0 idle, 1 fair, `1 + p` for rt `p`.
    pub(crate) fn prio_level(&self) -> usize {
        match self.tasks[self.curr].policy {
            Policy::Idle => 0,
            Policy::Normal(_) => 1,
            Policy::Fifo(p) | Policy::Rr(p) => 1 + p as usize,
        }
    }

    /// Takes task `id`'s state out of this run queue's copy for a move to `dst` (called with
    /// both locked; the task is on neither queue). Its vruntime is made relative to this
    /// queue's floor and rebased on the other's, as Linux's `migrate_task_rq_fair`.
    pub(crate) fn move_state_to(&mut self, dst: &mut Rq, id: TaskId) {
        let mut t = self.tasks[id].clone();
        let rel = t.se.vruntime.saturating_sub(self.fair.min_vruntime());
        t.se.vruntime = dst.fair.min_vruntime() + rel;
        dst.tasks[id] = t;
    }
}
