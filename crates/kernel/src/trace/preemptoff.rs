//! The `preemptoff`/`irqsoff` tracer: the longest stretches during which the running task could
//! not have been taken from the CPU under the current model (`tracing_max_latency`).
//!
//! **Mechanism.** What counts depends on the model:
//!
//! - `none`, `voluntary`, `cpulock`, `patch-*` (**atom** stretches): kernel code can only give
//!   the CPU away at a preemption opportunity: a preemption point, `cond_resched()`,
//!   `ret_from_syscall`, or a switch. A stretch runs from one opportunity to the next while the
//!   task is in kernel mode: it opens at system-call entry, at a point and when a task is
//!   switched in in kernel mode, and closes at the next point, at `ret_from_syscall`, or at a
//!   switch away. (Under `none` a point gives nothing away, but it still ends an atom: the
//!   tracer measures atoms, which is what `voluntary` would make preemptible.)
//! - `full`, `lazy` (**preempt-disabled / IRQs-off** sections): kernel code can be taken
//!   anywhere except inside `preempt_disable()` or `local_irq_save()` sections of kernel code;
//!   a section opens when the first guard is taken and closes when the last one is dropped.
//!
//! **Invariant.** Only kernel-mode time is measured, and a stretch is counted only if both its
//! ends were seen in the same mode: a stretch cut by a model switch, or by a return to user
//! mode that no hook saw, is discarded rather than reported too long. Nothing here allocates.

use super::types::Where;
use crate::config::PreemptModel;
use crate::task::TaskId;
use alloc::vec::Vec;

/// How many of the longest stretches are kept.
pub(super) const TOP: usize = 8;

/// What kept the CPU from being taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StretchKind {
    /// Kernel code between two preemption opportunities (an atom).
    Atom,
    /// A `preempt_disable()` section (`preemptoff`).
    PreemptDisabled,
    /// A `local_irq_save()` section (`irqsoff`).
    IrqsOff,
}

impl StretchKind {
    /// The ftrace-style tracer name for the kind.
    pub fn tracer(self) -> &'static str {
        match self {
            StretchKind::Atom => "preemptoff (atom)",
            StretchKind::PreemptDisabled => "preemptoff",
            StretchKind::IrqsOff => "irqsoff",
        }
    }
}

/// One non-preemptible stretch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stretch {
    /// Its length in nanoseconds.
    pub ns: u64,
    /// When it began, in nanoseconds since boot.
    pub start_ns: u64,
    /// Where it began (ip 0 and no source: the task was switched in there).
    pub start: Where,
    /// Where it ended.
    pub end: Where,
    /// The task.
    pub pid: TaskId,
    /// What kind of stretch it was.
    pub kind: StretchKind,
    /// The model it was measured under.
    pub model: PreemptModel,
    /// Times the host took the CPU away during it (`Arch::cpu_stolen`): 0 unless the stretch
    /// holds the host's time too.
    pub host_held: u64,
}

#[derive(Clone, Copy, Debug)]
struct Open {
    start_ns: u64,
    start_stolen: u64,
    start: Where,
    pid: TaskId,
    kind: StretchKind,
    model: PreemptModel,
}

#[derive(Default)]
pub(super) struct State {
    /// The CPU's `Arch::cpu_stolen` at the event being recorded (set before each one).
    pub(super) stolen: u64,
    open: Option<Open>,
    depth: u32,
    top: [Option<Stretch>; TOP],
    count: u64,
}

fn atoms(model: PreemptModel) -> bool {
    !model.preempts_kernel_code()
}

impl State {
    fn begin(&mut self, now: u64, start: Where, pid: TaskId, kind: StretchKind, model: PreemptModel) {
        self.open = Some(Open { start_ns: now, start_stolen: self.stolen, start, pid, kind, model });
    }

    fn close(&mut self, now: u64, end: Where) {
        let Some(o) = self.open.take() else { return };
        self.count += 1;
        let s = Stretch {
            ns: now.saturating_sub(o.start_ns),
            start_ns: o.start_ns,
            start: o.start,
            end,
            pid: o.pid,
            kind: o.kind,
            model: o.model,
            host_held: self.stolen.saturating_sub(o.start_stolen),
        };
        let slot = self.top.iter().position(|t| t.is_none_or(|t| s.ns > t.ns));
        if let Some(i) = slot {
            self.top.copy_within(i..TOP - 1, i + 1);
            self.top[i] = Some(s);
        }
    }

    /// A preemption point or `cond_resched()`: one atom ends and the next begins.
    pub(super) fn opportunity(&mut self, now: u64, model: PreemptModel, w: Where, pid: TaskId) {
        if atoms(model) {
            self.close(now, w);
            self.begin(now, w, pid, StretchKind::Atom, model);
        }
    }

    /// System-call entry: the first atom begins (anything open was user time: dropped).
    pub(super) fn syscall_entry(&mut self, now: u64, model: PreemptModel, w: Where, pid: TaskId) {
        if atoms(model) {
            self.open = None;
            self.begin(now, w, pid, StretchKind::Atom, model);
        }
    }

    /// `ret_from_syscall`: the last atom ends.
    pub(super) fn syscall_exit(&mut self, now: u64, model: PreemptModel, w: Where) {
        if atoms(model) {
            self.close(now, w);
        }
    }

    /// A switch: the previous task's stretch ends where it gave the CPU up (if it was in kernel
    /// mode), and a task switched in in kernel mode starts one.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn switch(
        &mut self,
        now: u64,
        model: PreemptModel,
        w: Where,
        prev_kernel: bool,
        next: TaskId,
        next_kernel: bool,
    ) {
        self.depth = 0;
        if !atoms(model) {
            self.open = None;
            return;
        }
        if prev_kernel {
            self.close(now, w);
        }
        self.open = None;
        if next_kernel {
            self.begin(now, Where::default(), next, StretchKind::Atom, model);
        }
    }

    /// A `preempt_disable()`/`local_irq_save()` guard is taken (`full`, `lazy`).
    pub(super) fn section_enter(&mut self, now: u64, w: Where, pid: TaskId, irqs: bool, model: PreemptModel) {
        self.depth += 1;
        if self.depth == 1 {
            let kind = if irqs { StretchKind::IrqsOff } else { StretchKind::PreemptDisabled };
            self.begin(now, w, pid, kind, model);
        }
    }

    /// The matching guard is dropped; the outermost one closes the section.
    pub(super) fn section_exit(&mut self, now: u64, w: Where) {
        if self.depth == 0 {
            return; // taken before tracing saw it
        }
        self.depth -= 1;
        if self.depth == 0 {
            self.close(now, w);
        }
    }

    /// Forget the open stretch (the model changed under it).
    pub(super) fn reset(&mut self) {
        self.open = None;
        self.depth = 0;
    }

    pub(super) fn top(&self) -> Vec<Stretch> {
        self.top.iter().flatten().copied().collect()
    }

    pub(super) fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2021::*;

    #[test]
    fn the_longest_atom_is_kept_first_with_its_ends() {
        let m = PreemptModel::Voluntary;
        let mut s = State::default();
        let (a, b, c) = (Where::ip(0x10), Where::ip(0x20), Where::ip(0x30));
        s.syscall_entry(0, m, a, 3);
        s.opportunity(5, m, b, 3);
        s.stolen = 1; // the host took the CPU once in the second stretch
        s.opportunity(100, m, c, 3);
        s.syscall_exit(110, m, a);
        let top = s.top();
        assert_eq!(top.len(), 3);
        assert_eq!((top[0].ns, top[0].start, top[0].end, top[0].host_held), (95, b, c, 1));
        assert_eq!((top[1].host_held, top[2].host_held), (0, 0), "{top:?}");
        assert_eq!(s.count(), 3);
    }

    #[test]
    fn user_time_and_full_model_atoms_are_not_counted() {
        let mut s = State::default();
        s.switch(0, PreemptModel::None, Where::default(), false, 2, true);
        s.switch(50, PreemptModel::None, Where::default(), false, 3, false);
        s.opportunity(60, PreemptModel::Full, Where::ip(1), 3);
        assert!(s.top().is_empty(), "{:?}", s.top());
        s.section_enter(70, Where::ip(2), 3, true, PreemptModel::Full);
        s.section_enter(71, Where::ip(3), 3, false, PreemptModel::Full);
        s.section_exit(72, Where::ip(4));
        s.section_exit(80, Where::ip(5));
        let top = s.top();
        assert_eq!((top.len(), top[0].ns, top[0].kind), (1, 10, StretchKind::IrqsOff));
        assert_eq!((top[0].start, top[0].end), (Where::ip(2), Where::ip(5)));
    }
}
