//! Tasklets: deferred functions run by the tasklet softirqs (`TASKLET_SOFTIRQ`, `HI_SOFTIRQ`).
//!
//! **Mechanism.** A [`Tasklet`] has two state bits, as Linux's: `SCHED` (queued to run) and
//! `RUN` (running now). [`tasklet_schedule`] sets `SCHED`; only the call that set it queues the
//! tasklet on this CPU's list and raises the vector, so schedules before the run coalesce. The
//! vector's action takes the whole list, and for each tasklet takes `RUN` (`tasklet_trylock`),
//! clears `SCHED`, runs the function and drops `RUN`; a tasklet whose `RUN` is held (running on
//! another CPU) goes back on the list and the vector is raised again. A tasklet scheduled while
//! it runs is queued again and runs once more, after this run.
//!
//! **Invariant.** A tasklet never runs on two CPUs at once (`RUN`), and runs exactly once per
//! schedule that found `SCHED` clear. Queueing never allocates: every registered tasklet has a
//! reserved slot in each list (a tasklet is on a list at most once, thanks to `SCHED`), and the
//! kernel keeps every tasklet alive, so softirq context never frees one.

pub(crate) mod state;

use crate::arch::IrqSpinLock;
use crate::instance::{this_kernel, try_this_kernel, Kernel};
use crate::softirq::{raise_softirq_irqoff, HI_SOFTIRQ, TASKLET_SOFTIRQ};
use alloc::sync::Arc;
use alloc::{boxed::Box, vec::Vec};
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
pub use state::Tasklet;
use state::{TaskletCpu, TaskletList, TASKLET_STATE_RUN, TASKLET_STATE_SCHED};

impl Tasklet {
    /// Creates and registers a tasklet on the running kernel (`tasklet_setup`). Call from a
    /// task (it allocates its list slots here, so scheduling it never does).
    pub fn new(name: &str, func: impl Fn() + Send + Sync + 'static) -> Arc<Tasklet> {
        let k = this_kernel();
        let mut registry = registry(&k).lock();
        let t = Arc::new(Tasklet {
            name: name.into(),
            index: registry.len(),
            state: AtomicU8::new(0),
            runs: AtomicU64::new(0),
            func: Box::new(func),
        });
        registry.push(t.clone());
        let n = registry.len();
        drop(registry);
        for cpu in k.cpus.iter().map(|c| &c.softirq.tasklets) {
            for list in [&cpu.normal, &cpu.hi] {
                list.lock().reserve(n);
            }
        }
        t
    }

    /// The tasklet's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Times its function has run.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Acquire)
    }

    /// Is it queued to run (`TASKLET_STATE_SCHED`)?
    pub fn is_scheduled(&self) -> bool {
        self.state.load(Ordering::Acquire) & TASKLET_STATE_SCHED != 0
    }

    /// `tasklet_trylock`: take `RUN`; false if it is running.
    fn trylock(&self) -> bool {
        self.state.fetch_or(TASKLET_STATE_RUN, Ordering::AcqRel) & TASKLET_STATE_RUN == 0
    }

    fn unlock(&self) {
        self.state.fetch_and(!TASKLET_STATE_RUN, Ordering::Release);
    }
}

impl TaskletList {
    fn reserve(&mut self, n: usize) {
        self.queued.reserve(n.saturating_sub(self.queued.len()));
        self.batch.reserve(n.saturating_sub(self.batch.len()));
    }

    /// Appends without allocating (the capacity covers every tasklet once).
    fn push(&mut self, index: usize) {
        debug_assert!(self.queued.len() < self.queued.capacity(), "tasklet list slot missing");
        self.queued.push(index);
    }
}

/// Every tasklet of the instance, by index.
fn registry(k: &Kernel) -> &IrqSpinLock<Vec<Arc<Tasklet>>> {
    &k.cpus[0].softirq.tasklets.registry
}

fn list(cpu: &TaskletCpu, vector: usize) -> &IrqSpinLock<TaskletList> {
    if vector == HI_SOFTIRQ {
        &cpu.hi
    } else {
        &cpu.normal
    }
}

/// `tasklet_schedule`: queue `t` to run once in `TASKLET_SOFTIRQ`. Returns false if it was
/// already queued (this schedule coalesces with that one). Safe from any context.
pub fn tasklet_schedule(t: &Tasklet) -> bool {
    schedule_on(t, TASKLET_SOFTIRQ)
}

/// `tasklet_hi_schedule`: as [`tasklet_schedule`], on `HI_SOFTIRQ` (served before every other
/// vector).
pub fn tasklet_hi_schedule(t: &Tasklet) -> bool {
    schedule_on(t, HI_SOFTIRQ)
}

fn schedule_on(t: &Tasklet, vector: usize) -> bool {
    if t.state.fetch_or(TASKLET_STATE_SCHED, Ordering::AcqRel) & TASKLET_STATE_SCHED != 0 {
        return false;
    }
    let Some(k) = try_this_kernel() else { return false };
    let _irq = crate::preempt::guard::local_irq_save();
    list(&k.this_cpu().softirq.tasklets, vector).lock().push(t.index);
    raise_softirq_irqoff(&k, vector);
    true
}

/// The action of `TASKLET_SOFTIRQ` and `HI_SOFTIRQ` (`tasklet_action_common`).
pub(crate) fn tasklet_action(vector: usize) {
    let Some(k) = try_this_kernel() else { return };
    let cpu = &k.this_cpu().softirq.tasklets;
    {
        let mut l = list(cpu, vector).lock();
        let TaskletList { queued, batch } = &mut *l;
        core::mem::swap(queued, batch);
    }
    for i in 0.. {
        // A statement of its own, so the list's lock is dropped before the tasklet runs.
        let next = list(cpu, vector).lock().batch.get(i).copied();
        let Some(index) = next else { break };
        run_one(&k, cpu, vector, index);
    }
    list(cpu, vector).lock().batch.clear();
}

fn run_one(k: &Kernel, cpu: &TaskletCpu, vector: usize, index: usize) {
    let t = registry(k).lock()[index].clone();
    if t.trylock() {
        let was = t.state.fetch_and(!TASKLET_STATE_SCHED, Ordering::AcqRel);
        debug_assert!(was & TASKLET_STATE_SCHED != 0, "tasklet '{}' on the list but not scheduled", t.name);
        (t.func)();
        t.runs.fetch_add(1, Ordering::AcqRel);
        t.unlock();
        return;
    }
    // Running on another CPU: try again in a later pass.
    let _irq = crate::preempt::guard::local_irq_save();
    list(cpu, vector).lock().push(index);
    raise_softirq_irqoff(k, vector);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2021::*;

    fn tasklet() -> Tasklet {
        Tasklet { name: "t".into(), index: 0, state: AtomicU8::new(0), runs: AtomicU64::new(0), func: Box::new(|| {}) }
    }

    /// What keeps a tasklet off two CPUs at once: a second `tasklet_trylock` fails while the
    /// first runner holds `RUN` (its tasklet goes back on the list instead), and `SCHED` is
    /// independent of it, so a schedule during the run queues one more run.
    #[test]
    fn run_bit_admits_one_runner_and_leaves_sched_alone() {
        let t = tasklet();
        t.state.fetch_or(TASKLET_STATE_SCHED, Ordering::AcqRel);
        assert!(t.trylock());
        assert!(!t.trylock(), "a second CPU must not run it now");
        t.state.fetch_and(!TASKLET_STATE_SCHED, Ordering::AcqRel);
        assert!(!t.is_scheduled());
        t.state.fetch_or(TASKLET_STATE_SCHED, Ordering::AcqRel); // scheduled while running
        t.unlock();
        assert!(t.is_scheduled(), "the schedule made during the run is kept");
        assert!(t.trylock());
    }
}
