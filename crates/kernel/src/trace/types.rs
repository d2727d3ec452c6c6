//! The tracing vocabulary: which tracers run ([`TraceOptions`]), what an event is ([`Event`],
//! [`Record`]) and how a code place is named ([`Where`]).
//!
//! **Invariant.** Every type here is plain `Copy` data with no heap pointers, so the rings
//! preallocated at boot can hold them and recording never allocates.

use crate::arch::{Arch, A};
use crate::config::PreemptModel;
use crate::task::TaskId;
use core::panic::Location;

/// A code location: an address in the machine code (resolved to function and `file:line` by
/// `services::symbols`), and, where known, the source location a `#[track_caller]` API saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Where {
    /// A code address (0: unknown).
    pub ip: usize,
    /// The caller's source location, when the place is an API call (a system call, a sleep).
    pub src: Option<&'static Location<'static>>,
    /// What happened there, when it is not a preemption point (`"syscall entry"`, ...).
    pub what: &'static str,
}

impl Where {
    /// A place known by its code address.
    pub fn ip(ip: usize) -> Where {
        Where { ip, src: None, what: "" }
    }

    /// A place known by the caller's source location (and, inlined here, an address in it).
    #[inline(always)]
    pub fn src(what: &'static str, loc: &'static Location<'static>) -> Where {
        Where { ip: A::current_ip(), src: Some(loc), what }
    }
}

/// How the previous task left the CPU at a switch (`prev_state` of `sched_switch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrevState {
    /// Still runnable: preempted or yielded (`R`).
    Running,
    /// Went to sleep (`S`).
    Sleeping,
    /// Exited (`X`).
    Dead,
}

impl PrevState {
    /// `R` if the task stays runnable, else `S`.
    pub fn of(still_runnable: bool) -> PrevState {
        if still_runnable {
            PrevState::Running
        } else {
            PrevState::Sleeping
        }
    }
}

/// A traced event (names as Linux's tracepoints).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `sched_switch`: `prev` gave the CPU to `next`.
    #[allow(missing_docs)] // the fields are the tracepoint's
    SchedSwitch { prev: TaskId, next: TaskId, prev_state: PrevState },
    /// `sched_wakeup`: `pid` became runnable (`rt_prio` 0 for a fair task).
    #[allow(missing_docs)]
    SchedWakeup { pid: TaskId, rt_prio: u8 },
    /// `sched_wakeup_new`: the new task `pid` was queued for the first time (`rt_prio` 0 for a
    /// fair task).
    #[allow(missing_docs)]
    SchedWakeupNew { pid: TaskId, rt_prio: u8 },
    /// `sched_migrate_task`: `pid` moved from CPU `from` to CPU `to`.
    #[allow(missing_docs)]
    SchedMigrate { pid: TaskId, from: u32, to: u32 },
    /// `irq_handler_entry`: an interrupt on `lines`, interrupting `ip` (0 when replayed by
    /// `local_irq_enable`).
    #[allow(missing_docs)]
    IrqHandlerEntry { lines: u64, ip: usize, replayed: bool },
    /// `irq_handler_exit`: the handlers ran; `preempt` if the exit preempts the task.
    #[allow(missing_docs)]
    IrqHandlerExit { lines: u64, preempt: bool },
    /// `softirq_entry`: softirq vector `vec` starts.
    #[allow(missing_docs)]
    SoftirqEntry { vec: u32 },
    /// `softirq_exit`.
    #[allow(missing_docs)]
    SoftirqExit { vec: u32 },
    /// A preemption point took the CPU (the model rescheduled at `site`).
    #[allow(missing_docs)]
    PointFired { site: usize },
    /// A preemption-point site was patched (patch models).
    #[allow(missing_docs)]
    SitePatched { site: usize },
    /// A patched site was restored.
    #[allow(missing_docs)]
    SiteRestored { site: usize },
    /// The preemption model was switched at run time.
    #[allow(missing_docs)]
    ModelSwitched { from: PreemptModel, to: PreemptModel },
}

impl Event {
    /// The tracepoint name (`sched_switch`, `irq_handler_entry`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Event::SchedSwitch { .. } => "sched_switch",
            Event::SchedWakeup { .. } => "sched_wakeup",
            Event::SchedWakeupNew { .. } => "sched_wakeup_new",
            Event::SchedMigrate { .. } => "sched_migrate_task",
            Event::IrqHandlerEntry { .. } => "irq_handler_entry",
            Event::IrqHandlerExit { .. } => "irq_handler_exit",
            Event::SoftirqEntry { .. } => "softirq_entry",
            Event::SoftirqExit { .. } => "softirq_exit",
            Event::PointFired { .. } => "preempt_point",
            Event::SitePatched { .. } => "site_patched",
            Event::SiteRestored { .. } => "site_restored",
            Event::ModelSwitched { .. } => "model_switched",
        }
    }
}

/// One entry of the event ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Nanoseconds since the instance booted.
    pub ts_ns: u64,
    /// The CPU.
    pub cpu: u32,
    /// The task running when the event happened.
    pub pid: TaskId,
    /// What happened.
    pub event: Event,
}
