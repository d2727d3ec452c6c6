//! The `wakeup_rt` tracer: how long the highest-priority RT task woken waited for the CPU, and
//! what ran meanwhile.
//!
//! **Mechanism.** As ftrace's `wakeup_rt`, it follows one wake-up at a time: the highest RT
//! priority woken and not yet running. At its `sched_wakeup` it notes the time, the task that
//! was running and where (the IP the waking interrupt found, or the running task's last point
//! or system-call border). Every switch before the woken task runs adds the task switched out
//! to the list of runners, with how long it ran and where it gave the CPU up. The switch that
//! runs the woken task closes the record; the worst [`TOP`] are kept.
//!
//! **Invariant.** Nothing here allocates (fixed arrays), and a record is closed only by the
//! switch to the very task that was woken.

use super::types::Where;
use crate::task::TaskId;
use alloc::vec::Vec;

/// How many of the worst wake-ups are kept.
pub(super) const TOP: usize = 8;
/// Runners named per wake-up (the rest are counted).
pub(super) const RUNNERS: usize = 4;

/// A task that ran between an RT wake-up and the RT task running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Runner {
    /// The task that ran.
    pub pid: TaskId,
    /// How long it ran after the wake-up, in nanoseconds.
    pub ns: u64,
    /// Where it gave the CPU up (its last point or system-call border before the switch, or
    /// the IP where an interrupt preempted it).
    pub gave_up_at: Where,
}

/// One RT wake-up and its latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WakeupRt {
    /// The RT task.
    pub pid: TaskId,
    /// Its rt priority.
    pub rt_prio: u8,
    /// From `sched_wakeup` to the switch that ran it, in nanoseconds.
    pub latency_ns: u64,
    /// When it was woken, in nanoseconds since boot.
    pub woken_ns: u64,
    /// The task running when it was woken.
    pub woken_during: TaskId,
    /// Where that task was.
    pub woken_at: Where,
    /// The tasks that ran before it, in order (the first `RUNNERS`, 4).
    pub runners: [Option<Runner>; RUNNERS],
    /// Further runners not named.
    pub more_runners: u32,
    /// Times the host took the CPU away between the wake-up and the switch (`Arch::cpu_stolen`
    /// on the CPU that ran it).
    pub host_held: u64,
}

impl WakeupRt {
    /// The named runners, in order.
    pub fn runners(&self) -> impl Iterator<Item = &Runner> {
        self.runners.iter().flatten()
    }
}

#[derive(Default)]
pub(super) struct State {
    /// The CPU's `Arch::cpu_stolen` at the event being recorded (set before each one).
    pub(super) stolen: u64,
    /// The followed wake-up, since when its current runner ran, and the host's count when it
    /// was woken (`None` until known: a remote wake-up's is taken at the target's first switch).
    pending: Option<(WakeupRt, u64, Option<u64>)>,
    worst: [Option<WakeupRt>; TOP],
}

impl State {
    pub(super) fn wakeup(&mut self, now: u64, pid: TaskId, rt_prio: u8, curr: TaskId, w: Where, stolen: Option<u64>) {
        if curr == pid || self.pending.is_some_and(|(p, _, _)| p.pid != pid && p.rt_prio >= rt_prio) {
            return;
        }
        let r = WakeupRt {
            pid,
            rt_prio,
            latency_ns: 0,
            woken_ns: now,
            woken_during: curr,
            woken_at: w,
            runners: [None; RUNNERS],
            more_runners: 0,
            host_held: 0,
        };
        self.pending = Some((r, now, stolen));
    }

    pub(super) fn switch(&mut self, now: u64, prev: TaskId, next: TaskId, w: Where) {
        let Some((mut r, since, stolen)) = self.pending else { return };
        let stolen = stolen.unwrap_or(self.stolen);
        if prev != r.pid {
            let runner = Runner { pid: prev, ns: now.saturating_sub(since), gave_up_at: w };
            match r.runners.iter_mut().find(|s| s.is_none()) {
                Some(slot) => *slot = Some(runner),
                None => r.more_runners += 1,
            }
        }
        if next != r.pid {
            self.pending = Some((r, now, Some(stolen)));
            return;
        }
        self.pending = None;
        r.latency_ns = now.saturating_sub(r.woken_ns);
        r.host_held = self.stolen.saturating_sub(stolen);
        if let Some(i) = self.worst.iter().position(|t| t.is_none_or(|t| r.latency_ns > t.latency_ns)) {
            self.worst.copy_within(i..TOP - 1, i + 1);
            self.worst[i] = Some(r);
        }
    }

    pub(super) fn worst(&self) -> Vec<WakeupRt> {
        self.worst.iter().flatten().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2021::*;

    #[test]
    fn the_runner_between_wakeup_and_switch_is_named() {
        let mut s = State::default();
        let at = Where::ip(0x42);
        s.wakeup(100, 2, 50, 3, at, Some(7));
        s.wakeup(110, 4, 10, 3, Where::ip(1), Some(7)); // lower priority: not followed
        s.stolen = 9; // the host took the CPU twice meanwhile
        s.switch(400, 3, 2, Where::ip(0x99));
        let w = s.worst();
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].pid, w[0].latency_ns, w[0].woken_during, w[0].woken_at), (2, 300, 3, at));
        assert_eq!(w[0].host_held, 2);
        let r: Vec<_> = w[0].runners().copied().collect();
        assert_eq!(r, vec![Runner { pid: 3, ns: 300, gave_up_at: Where::ip(0x99) }]);
    }
}
