//! The hung-task detectors: per task (`hung_task_timeout_ms=`, Linux's `khungtaskd`) and for
//! a whole idle CPU (`hung_timeout_ms=`).
//!
//! **Per task.** A task entering an uninterruptible wait ([`crate::WaitQueue::wait_event`];
//! not `join`, which sleeps interruptibly as `wait4` does) notes when and where ([`WaitNote`]); the host side of the instance ([`HungTasks`], run
//! by the thread in [`crate::run`]) scans the tasks every quarter of the timeout, as
//! `khungtaskd` does, and reports a task that has been in one wait longer than the timeout
//! without being switched in once (its switch count unchanged since the scan that first saw
//! it waiting): `INFO: task NAME:PID blocked for more than N ms` with the wait's `file:line`,
//! once per wait; with `hung_task_panic=1` the kernel panics naming it. The scan reads only
//! atomics and the task table, never a run-queue lock, so a stuck CPU cannot stop it.
//!
//! **Whole CPU.** The idle loop notes when the CPU last ran a task. Each time it wakes from
//! `safe_halt` with nothing to run, it checks how long it has been idle; past the boot
//! option's timeout, with tasks still alive (all of them asleep, or the idle loop would have
//! run one), it writes one report to the log and to stderr: every task with its state,
//! policy and mode, and the pending softirqs. A kernel that sleeps that long with work left
//! is waiting for something that is not coming, such as a lost interrupt or a missed
//! wakeup; the report shows who waits. A device may legitimately keep a CPU idle that long
//! too, so it is an `INFO:` line, not a `BUG:`.
//!
//! **Invariant.** One report per wait (per task) and per idle stretch (per CPU); none when the
//! options are 0 (the default). The per-task note costs a wait two stores on its sleeping
//! path; the whole-CPU check costs the idle loop one clock read per wakeup.

use crate::arch::{Arch, A};
use crate::instance::Kernel;
use crate::sched::rq::TaskState;
use alloc::{format, string::String, string::ToString, vec::Vec};
use core::sync::atomic::Ordering;
use core::time::Duration;

/// The per-task scan's memory of each task: its switch count, since when it has not changed,
/// and the wait already reported.
#[derive(Clone, Copy, Default)]
struct Seen {
    switches: u64,
    unchanged_since: u64,
    reported_wait: u64,
}

/// The per-task hung-task scan (host side).
pub(crate) struct HungTasks {
    timeout_ns: u64,
    next_scan: u64,
    seen: Vec<Seen>,
}

/// How often the host side looks at the instance when it has nothing else to do.
const IDLE_PERIOD: Duration = Duration::from_millis(20);

impl HungTasks {
    pub(crate) fn new(k: &Kernel) -> HungTasks {
        HungTasks {
            timeout_ns: k.config.watchdog.hung_task_timeout_ms.saturating_mul(1_000_000),
            next_scan: 0,
            seen: Vec::new(),
        }
    }

    /// How long the host side may sleep before its next look.
    pub(crate) fn period(&self) -> Duration {
        if self.timeout_ns == 0 {
            IDLE_PERIOD
        } else {
            IDLE_PERIOD.min(Duration::from_nanos(self.timeout_ns / 4).max(Duration::from_millis(1)))
        }
    }

    /// Scans the tasks if a scan is due; reports each newly hung one, and returns the panic
    /// reason if `hung_task_panic=1` and one was found.
    pub(crate) fn scan(&mut self, k: &Kernel) -> Option<String> {
        let now = A::now_ns();
        if self.timeout_ns == 0 || now < self.next_scan {
            return None;
        }
        self.next_scan = now + self.timeout_ns / 4;
        let tasks = k.sched.tasks();
        self.seen.resize(tasks.len(), Seen::default());
        let mut panic = None;
        for (t, seen) in tasks.iter().zip(self.seen.iter_mut()) {
            let s = t.stats.snapshot();
            let switches = s.voluntary_switches + s.involuntary_switches;
            if switches != seen.switches || seen.unchanged_since == 0 {
                *seen = Seen { switches, unchanged_since: now, ..*seen };
            }
            let since = t.wait.since.load(Ordering::Acquire);
            let hung = since != 0 && since != seen.reported_wait;
            // A wait may begin on a CPU after `now` was read: saturate.
            let waited = now.saturating_sub(since);
            if !hung || waited < self.timeout_ns || now.saturating_sub(seen.unchanged_since) < self.timeout_ns {
                continue;
            }
            seen.reported_wait = since;
            let place = t.wait.place.lock().map_or_else(|| "?".to_string(), |p| format!("{}:{}", p.file(), p.line()));
            let line = format!(
                "INFO: task {}:{} blocked for more than {} ms (hung_task_timeout_ms={}), waiting in wait_event at {place}",
                t.name,
                t.id,
                waited / 1_000_000,
                k.config.watchdog.hung_task_timeout_ms
            );
            crate::printk::printk_emerg(k, format_args!("{line}"));
            if k.config.watchdog.hung_task_panic && panic.is_none() {
                panic = Some(format!("hung_task: blocked tasks: {}:{} waiting at {place}", t.name, t.id));
            }
        }
        panic
    }
}

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
            idle_since: A::now_ns(),
            reported: false,
        }
    }

    /// A task ran: a new idle stretch starts now.
    pub(crate) fn ran(&mut self) {
        if self.timeout_ns != 0 {
            self.idle_since = A::now_ns();
            self.reported = false;
        }
    }

    /// After a wakeup of the idle CPU: report once if this idle stretch passed the timeout.
    pub(crate) fn check(&mut self, k: &Kernel) {
        if self.timeout_ns == 0 || self.reported {
            return;
        }
        let idle = A::now_ns().saturating_sub(self.idle_since);
        if idle >= self.timeout_ns {
            self.reported = true;
            report(k, idle);
        }
    }
}

fn report(k: &Kernel, idle_ns: u64) {
    let names: Vec<String> = k.sched.tasks().iter().map(|t| t.name.clone()).collect();
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
            k.raw_this_cpu().softirq.pending()
        ),
    );
    for (id, t) in states.iter().filter(|(_, t)| t.state != TaskState::Dead) {
        crate::printk::printk_emerg(
            k,
            format_args!("INFO:   pid {id} {}: {:?}, {:?}, {:?} mode", names[*id], t.state, t.policy, t.mode),
        );
    }
}
