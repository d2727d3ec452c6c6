//! The hung-CPU report (`hung_timeout_ms=`): Linux's hung-task detector, for a whole CPU.
//!
//! **Mechanism.** The idle loop notes when the CPU last ran a task. Each time it wakes from
//! `safe_halt` with nothing to run, it checks how long it has been idle; past the boot
//! option's timeout, with tasks still alive (all of them asleep, or the idle loop would have
//! run one), it writes one report to the log and to stderr: every task with its state,
//! policy and mode, and the pending softirqs. A kernel that sleeps that long with work left
//! is waiting for something that is not coming, such as a lost interrupt or a missed
//! wakeup; the report shows who waits. A device may legitimately keep a CPU idle that long
//! too, so it is an `INFO:` line, not a `BUG:`.
//!
//! **Invariant.** One report per idle stretch; none when the option is 0 (the default); the
//! check costs the idle loop one clock read per wakeup and nothing on any task's path.

use crate::instance::Kernel;
use crate::sched::TaskState;

/// The idle loop's record of its current idle stretch.
pub(crate) struct HungCheck {
    timeout_ns: u64,
    idle_since: u64,
    reported: bool,
}

impl HungCheck {
    pub(crate) fn new(k: &Kernel) -> HungCheck {
        HungCheck {
            timeout_ns: k.config.hung_timeout_ms.saturating_mul(1_000_000),
            idle_since: arch::clock::now_ns(),
            reported: false,
        }
    }

    /// A task ran: a new idle stretch starts now.
    pub(crate) fn ran(&mut self) {
        if self.timeout_ns != 0 {
            self.idle_since = arch::clock::now_ns();
            self.reported = false;
        }
    }

    /// After a wakeup of the idle CPU: report once if this idle stretch passed the timeout.
    pub(crate) fn check(&mut self, k: &Kernel) {
        if self.timeout_ns == 0 || self.reported {
            return;
        }
        let idle = arch::clock::now_ns().saturating_sub(self.idle_since);
        if idle >= self.timeout_ns {
            self.reported = true;
            report(k, idle);
        }
    }
}

fn report(k: &Kernel, idle_ns: u64) {
    let names: Vec<String> = k.tasks.lock().iter().map(|t| t.name.clone()).collect();
    let states: Vec<_> = (0..names.len())
        .map(|id| (id, crate::sched::rq_lock::task_rq_lock(k, id).task(id).clone()))
        .filter(|(_, t)| t.policy != crate::task::Policy::Idle)
        .collect();
    let asleep = states.iter().filter(|(_, t)| t.state == TaskState::Interruptible).count();
    crate::printk::printk_emerg(
        k,
        format_args!(
            "INFO: CPU {} idle for {} ms with {asleep} tasks asleep and none runnable (hung_timeout_ms={}); softirqs pending {:#x}",
            k.raw_cpu_id(),
            idle_ns / 1_000_000,
            k.config.hung_timeout_ms,
            crate::softirq::local_softirq_pending()
        ),
    );
    for (id, t) in states.iter().filter(|(_, t)| t.state != TaskState::Dead) {
        crate::printk::printk_emerg(
            k,
            format_args!("INFO:   pid {id} {}: {:?}, {:?}, {:?} mode", names[*id], t.state, t.policy, t.mode),
        );
    }
}
