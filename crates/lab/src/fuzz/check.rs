//! The fuzzer's invariants, checked from a finished run's report and its event trace.
//!
//! **Mechanism.** [`check_report`] compares every task's result with the one its operations
//! determine, and every `BUG:` with the ones the program asked for. [`replay`] rebuilds each
//! CPU's run queue from the trace: `sched_wakeup_new` and `sched_wakeup` queue a task on the
//! CPU they are recorded on, `sched_migrate_task` moves it, `sched_switch` takes `next` off the
//! queue and puts `prev` back if it is still runnable (`R`). The kernel records all of these
//! under the run queue's lock, reading the time inside it, so the trace merged by time is the
//! order each run queue saw them in, and the replay is exact, not a guess. At every switch:
//!
//! - `prev` is the task the CPU ran, and `next` is the CPU's idle task or a task queued there
//!   (a task switched to without a wakeup since it slept would be a lost or phantom wakeup);
//! - no queued task outranks `next` (any RT task above its priority, a fair task above idle):
//!   the pick is the same under every model; models differ in *when* they switch, not in whom
//!   they pick;
//! - the one exception is `prev` itself switched out for a lower task while still runnable: the
//!   scheduler does that only when `prev` may no longer run on the CPU (`set_cpus_allowed`), and
//!   then moves it off right after the switch, so the replay requires a `sched_migrate_task` of
//!   it off the CPU before the CPU's next switch (or, if the program changed its affinity more
//!   than once, allows it back on the same CPU: its mask may have changed back meanwhile).
//!
//! **Invariant.** A violation names the CPU, the tasks with their priorities and the event's
//! time, so a failing program can be read against its trace.

use crate::fuzz::program::{task_name, Op, Program};
use kernel::trace::{Event, PrevState, Record};
use kernel::{Policy, RunReport, TaskId};
use std::collections::BTreeSet;

/// A task's rank in the pick: 0 idle, 1 fair, `1 + p` for RT priority `p`.
fn rank(p: Option<Policy>) -> u16 {
    match p {
        None | Some(Policy::Idle) => 0,
        Some(Policy::Normal(_)) => 1,
        Some(Policy::Fifo(p) | Policy::Rr(p)) => 1 + p as u16,
    }
}

fn rank_name(r: u16) -> String {
    match r {
        0 => "idle".into(),
        1 => "fair".into(),
        r => format!("rt {}", r - 1),
    }
}

/// Each task's result and each `BUG:` against what `prog` determines.
pub(crate) fn check_report(prog: &Program, r: &RunReport) -> Vec<String> {
    let mut v = Vec::new();
    if r.init != Ok(0) {
        v.push(format!("init ended with {:?}", r.init));
    }
    for (i, t) in prog.tasks.iter().enumerate() {
        let name = task_name(i);
        expect_result(r, &name, crate::fuzz::program::expected(crate::fuzz::program::task_seed(i), &t.ops), &mut v);
        for (j, op) in t.ops.iter().enumerate() {
            if let Op::Spawn { ops, .. } = op {
                let seed = crate::fuzz::program::child_seed(crate::fuzz::program::task_seed(i), j);
                expect_result(r, &format!("{name}.c{j}"), crate::fuzz::program::expected(seed, ops), &mut v);
            }
        }
    }
    let asked = |b: &str| {
        prog.tasks.iter().enumerate().any(|(i, t)| {
            let named = b.contains(&format!("task '{}'", task_name(i)));
            let sleeper = Program::atomic_sleeps(&t.ops) > 0;
            sleeper
                && (named && b.contains("scheduling while atomic")
                    || b.contains(&format!("migration of task '{}' ", task_name(i))))
        })
    };
    for b in r.bugs.iter().filter(|b| !asked(b)) {
        v.push(format!("a BUG the program did not ask for: {b}"));
    }
    for (i, t) in prog.tasks.iter().enumerate() {
        let want = format!("task '{}'", task_name(i));
        let got = r.bugs.iter().filter(|b| b.contains("scheduling while atomic") && b.contains(&want)).count();
        if Program::atomic_sleeps(&t.ops) > 0 && got == 0 && r.bugs.len() < 64 {
            v.push(format!(
                "{}: slept inside preempt_disable, and no 'scheduling while atomic' BUG named it",
                task_name(i)
            ));
        }
    }
    v
}

fn expect_result(r: &RunReport, name: &str, want: i64, v: &mut Vec<String>) {
    match r.tasks.iter().find(|t| t.name == name).map(|t| &t.result) {
        None => v.push(format!("{name}: never spawned")),
        Some(None) => v.push(format!("{name}: never finished")),
        Some(Some(Ok(got))) if *got == want => {}
        Some(Some(got)) => v.push(format!("{name}: returned {got:?}, its operations compute {want}")),
    }
}

/// The run queues rebuilt from the trace (see the module docs).
struct Replay<'a> {
    ranks: Vec<u16>,
    names: &'a [String],
    idle: Vec<TaskId>,
    curr: Vec<TaskId>,
    queued: Vec<BTreeSet<TaskId>>,
    /// The CPU whose run queue holds each task (`task_cpu`), once known.
    cpu: Vec<Option<usize>>,
    /// Per CPU: a task switched out for a lower one while runnable, to be moved off.
    transit: Vec<Option<TaskId>>,
    /// Tasks whose affinity the program changed more than once.
    toggled: BTreeSet<TaskId>,
    v: Vec<String>,
}

impl Replay<'_> {
    fn name(&self, t: TaskId) -> String {
        format!("{} (pid {t}, {})", self.names.get(t).map_or("?", String::as_str), rank_name(self.ranks[t]))
    }

    fn queued_on(&self, t: TaskId) -> Option<usize> {
        self.queued.iter().position(|q| q.contains(&t))
    }

    fn running_on(&self, t: TaskId) -> Option<usize> {
        self.curr.iter().position(|&c| c == t)
    }

    fn bad(&mut self, r: &Record, what: String) {
        if self.v.len() < 20 {
            self.v.push(format!("trace at {} ns, CPU {}: {what}", r.ts_ns, r.cpu));
        }
    }

    fn wakeup(&mut self, r: &Record, pid: TaskId) {
        let c = r.cpu as usize;
        if let Some(on) = self.running_on(pid) {
            if on != c {
                self.bad(r, format!("{} woken on this CPU while running on CPU {on}", self.name(pid)));
            }
            return;
        }
        if let Some(q) = self.queued_on(pid) {
            if q != c {
                self.bad(r, format!("{} woken on this CPU while queued on CPU {q}", self.name(pid)));
            }
            return;
        }
        if self.transit.contains(&Some(pid)) {
            return; // still runnable, on its way off its CPU
        }
        if self.cpu[pid].is_some_and(|k| k != c) {
            self.bad(r, format!("{} woken here, but its run queue is CPU {:?}'s", self.name(pid), self.cpu[pid]));
        }
        self.cpu[pid] = Some(c);
        self.queued[c].insert(pid);
    }

    fn migrate(&mut self, r: &Record, pid: TaskId, from: usize, to: usize) {
        if self.running_on(pid).is_some() {
            self.bad(r, format!("{} moved from CPU {from} to {to} while running", self.name(pid)));
        }
        if self.cpu[pid].is_some_and(|k| k != from) {
            self.bad(
                r,
                format!("{} moved from CPU {from}, but its run queue was CPU {:?}'s", self.name(pid), self.cpu[pid]),
            );
        }
        self.cpu[pid] = Some(to);
        let runnable = self.queued[from].remove(&pid) || self.transit[from] == Some(pid);
        if self.transit[from] == Some(pid) {
            self.transit[from] = None;
        }
        if runnable {
            self.queued[to].insert(pid);
        }
    }

    fn switch(&mut self, r: &Record, prev: TaskId, next: TaskId, state: PrevState) {
        let c = r.cpu as usize;
        if self.curr[c] != prev {
            self.bad(r, format!("switch from {}, but the CPU ran {}", self.name(prev), self.name(self.curr[c])));
        }
        if let Some(t) = self.transit[c].take() {
            if self.toggled.contains(&t) {
                self.queued[c].insert(t); // its mask may have come back to this CPU
            } else {
                self.bad(r, format!("{} was switched out for a lower task and never moved off this CPU", self.name(t)));
            }
        }
        if next != self.idle[c] && !self.queued[c].remove(&next) {
            self.bad(
                r,
                format!("switch to {}, which was not runnable on this CPU (a lost or phantom wakeup)", self.name(next)),
            );
        }
        if let Some(&top) = self.queued[c].iter().max_by_key(|&&t| self.ranks[t]) {
            if self.ranks[top] > self.ranks[next] {
                self.bad(r, format!("switch to {} while {} waited on this CPU", self.name(next), self.name(top)));
            }
        }
        self.curr[c] = next;
        self.cpu[next] = Some(c);
        if state == PrevState::Running && prev != self.idle[c] {
            if self.ranks[prev] > self.ranks[next] {
                self.transit[c] = Some(prev);
            } else {
                self.queued[c].insert(prev);
            }
        }
    }
}

/// Replays the run queues of `r`'s trace and checks every switch (see the module docs).
pub(crate) fn replay(prog: &Program, r: &RunReport) -> Vec<String> {
    let Some(tr) = &r.trace else { return vec!["the run has no trace".into()] };
    if tr.events_lost > 0 {
        return vec![format!("the trace lost {} events (its ring overflowed): the replay needs all", tr.events_lost)];
    }
    let n = tr.task_names.len();
    let mut ranks = vec![0u16; n];
    for t in &r.tasks {
        ranks[t.id] = rank(Some(t.policy));
    }
    let idle: Vec<TaskId> =
        (0..prog.cpus).map(|c| tr.task_names.iter().position(|s| *s == format!("swapper/{c}")).unwrap_or(0)).collect();
    let mut toggled = BTreeSet::new();
    for i in 0..prog.tasks.len() {
        let changes =
            prog.tasks.iter().flat_map(|t| &t.ops).filter(|op| matches!(op, Op::Affinity { task, .. } if *task == i));
        if changes.count() > 1 {
            if let Some(t) = r.tasks.iter().find(|t| t.name == task_name(i)) {
                toggled.insert(t.id);
            }
        }
    }
    let mut p = Replay {
        ranks,
        names: &tr.task_names,
        curr: idle.clone(),
        idle,
        queued: vec![BTreeSet::new(); prog.cpus],
        cpu: vec![None; n],
        transit: vec![None; prog.cpus],
        toggled,
        v: Vec::new(),
    };
    for rec in &tr.events {
        match rec.event {
            Event::SchedWakeupNew { pid, .. } | Event::SchedWakeup { pid, .. } => p.wakeup(rec, pid),
            Event::SchedMigrate { pid, from, to } => p.migrate(rec, pid, from as usize, to as usize),
            Event::SchedSwitch { prev, next, prev_state } => p.switch(rec, prev, next, prev_state),
            _ => {}
        }
    }
    for c in 0..prog.cpus {
        if let Some(t) = p.transit[c] {
            p.v.push(format!("CPU {c}: {} was switched out for a lower task and never moved off", p.name(t)));
        }
        if let Some(&t) = p.queued[c].iter().next() {
            p.v.push(format!("CPU {c}: {} still runnable when the trace ends", p.name(t)));
        }
    }
    p.v
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernel::trace::TraceReport;
    use kernel::TaskReport;

    /// Two CPUs: swapper/0 (pid 0), swapper/1 (1), a fair task (2), RT 10 (3), RT 50 (4).
    fn report(events: &[(u32, Event)]) -> RunReport {
        let names: Vec<String> = ["swapper/0", "swapper/1", "fair", "rt10", "rt50"].map(String::from).to_vec();
        let pols = [Policy::Normal(0), Policy::Fifo(10), Policy::Fifo(50)];
        let tasks = (2..5)
            .map(|id| TaskReport {
                id,
                name: names[id].clone(),
                policy: pols[id - 2],
                result: Some(Ok(0)),
                stats: Default::default(),
            })
            .collect();
        let events = events
            .iter()
            .enumerate()
            .map(|(i, &(cpu, event))| Record { ts_ns: i as u64, cpu, pid: 0, event })
            .collect();
        RunReport {
            init: Ok(0),
            tasks,
            bugs: Vec::new(),
            log: String::new(),
            jiffies: 0,
            irqs: 0,
            switches: 0,
            patch: Default::default(),
            trace: Some(TraceReport { events, task_names: names, ..Default::default() }),
            cpus: Vec::new(),
            oopses: Vec::new(),
        }
    }

    fn prog() -> Program {
        Program {
            cpus: 2,
            hz: 1000,
            model: kernel::PreemptModel::Full,
            bh: kernel::BhMode::Classic,
            patch_leaf: kernel::PatchLeaf::Walk,
            devices: vec![],
            tasks: vec![],
        }
    }

    fn new(pid: TaskId) -> Event {
        Event::SchedWakeupNew { pid, rt_prio: 0 }
    }
    fn sw(prev: TaskId, next: TaskId, s: PrevState) -> Event {
        Event::SchedSwitch { prev, next, prev_state: s }
    }
    use PrevState::{Dead, Running, Sleeping};

    #[test]
    fn a_wakeup_on_another_cpu_needs_a_move_there_first() {
        let r = report(&[
            (0, new(2)),
            (0, sw(0, 2, Running)),
            (0, new(4)),
            (0, sw(2, 4, Running)),
            (1, new(3)),
            (1, sw(1, 3, Running)),
            (0, sw(4, 2, Dead)),
            (0, sw(2, 0, Sleeping)),
            (1, Event::SchedWakeup { pid: 2, rt_prio: 0 }),
            (1, sw(3, 1, Dead)),
            (1, Event::SchedMigrate { pid: 2, from: 0, to: 1 }),
        ]);
        // pid 2 slept on CPU 0; its wakeup on CPU 1 without a move first is refused...
        let v = replay(&prog(), &r);
        assert!(v.iter().any(|v| v.contains("its run queue is CPU Some(0)'s")), "{v:?}");
        // ...and accepted once the move comes first.
        let r = report(&[
            (0, new(2)),
            (0, sw(0, 2, Running)),
            (0, sw(2, 0, Sleeping)),
            (1, Event::SchedMigrate { pid: 2, from: 0, to: 1 }),
            (1, Event::SchedWakeup { pid: 2, rt_prio: 0 }),
            (1, sw(1, 2, Running)),
            (1, sw(2, 1, Dead)),
        ]);
        assert_eq!(replay(&prog(), &r), Vec::<String>::new());
    }

    #[test]
    fn a_higher_rt_task_waiting_at_a_switch_is_a_violation() {
        let r = report(&[
            (0, new(4)),
            (0, new(2)),
            (0, sw(0, 2, Running)),
            (0, sw(2, 4, Running)),
            (0, sw(4, 2, Dead)),
            (0, sw(2, 0, Dead)),
        ]);
        let v = replay(&prog(), &r);
        assert!(v[0].contains("switch to fair (pid 2, fair) while rt50 (pid 4, rt 50) waited"), "{v:?}");
        // An RT task waiting on the other CPU does not count against this one.
        let r = report(&[(1, new(4)), (0, new(2)), (0, sw(0, 2, Running)), (1, sw(1, 4, Dead)), (0, sw(2, 0, Dead))]);
        assert_eq!(replay(&prog(), &r), Vec::<String>::new());
    }

    #[test]
    fn a_switch_to_a_task_never_woken_is_a_lost_or_phantom_wakeup() {
        let r = report(&[(0, new(2)), (0, sw(0, 2, Running)), (0, sw(2, 0, Sleeping)), (0, sw(0, 2, Dead))]);
        let v = replay(&prog(), &r);
        assert!(v.iter().any(|v| v.contains("switch to fair (pid 2, fair), which was not runnable")), "{v:?}");
    }

    #[test]
    fn a_runnable_task_switched_out_for_a_lower_one_must_leave_the_cpu() {
        let stays = [(0, new(4)), (0, sw(0, 4, Running)), (0, new(2)), (0, sw(4, 2, Running)), (0, sw(2, 4, Dead))];
        let v = replay(&prog(), &report(&stays));
        assert!(v.iter().any(|v| v.contains("rt50 (pid 4, rt 50) was switched out for a lower task")), "{v:?}");
        let leaves = [
            (0, new(4)),
            (0, sw(0, 4, Running)),
            (0, new(2)),
            (0, sw(4, 2, Running)),
            (1, Event::SchedMigrate { pid: 4, from: 0, to: 1 }),
            (1, sw(1, 4, Dead)),
            (0, sw(2, 0, Dead)),
        ];
        assert_eq!(replay(&prog(), &report(&leaves)), Vec::<String>::new());
    }
}
