//! Oops bookkeeping as data: the records an oops, a soft lockup or a panic leaves in fixed
//! room, an instance's queue of them for the host side, and the formatted reports. Catching and
//! deciding is `oops`'s, formatting `oops/report.rs`'s.
//!
//! **Invariant.** Data only: this file imports no subsystem, and nothing here allocates on the
//! CPUs' side (the room is reserved when the instance is made).

use crate::arch::{Arch, FixedBuf, IrqSpinLock, Regs, A, TRACE_DEPTH};
use crate::sync::OnceLock;
use crate::task::TaskId;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One oops, as `RunReport::oopses` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OopsReport {
    /// The task's pid.
    pub pid: TaskId,
    /// The task's name.
    pub task: String,
    /// The CPU it ran on.
    pub cpu: usize,
    /// What happened (`kernel NULL pointer dereference at 0x0 ...`, a panic's message).
    pub what: String,
    /// Where: the faulting (or panicking) function as `function+offset/size at file:line`.
    pub rip: String,
    /// The whole report, as printed.
    pub text: String,
}

/// Oopses caught and not yet ended, and raw reports not yet formatted, kept per instance.
const ROOM: usize = 16;

/// An oops as caught, in fixed room.
#[derive(Clone, Copy)]
pub(crate) struct OopsRecord {
    /// What happened (`kernel NULL pointer dereference at 0x0`, a panic's message).
    pub(crate) what: FixedBuf<256>,
    pub(crate) name: FixedBuf<32>,
    pub(crate) pid: TaskId,
    pub(crate) cpu: usize,
    pub(crate) preempt_count: u32,
    pub(crate) irqs_off: bool,
    pub(crate) regs: Regs,
    /// False for a Rust panic: only `rip`, `rsp` and `rbp` (the hook's) were captured.
    pub(crate) full_regs: bool,
    pub(crate) trace: [usize; TRACE_DEPTH],
    pub(crate) depth: usize,
}

/// A soft lockup as the tick saw it.
#[derive(Clone, Copy)]
pub(crate) struct LockupRecord {
    pub(crate) cpu: usize,
    pub(crate) pid: TaskId,
    pub(crate) name: FixedBuf<32>,
    pub(crate) stuck_ms: u64,
    pub(crate) trace: [usize; TRACE_DEPTH],
    pub(crate) depth: usize,
}

/// A raw report for the host side to format. Unboxed on purpose: reports are made where
/// allocating is forbidden (interrupt context, a fault inside `malloc`).
#[derive(Clone, Copy)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Report {
    Oops(OopsRecord),
    SoftLockup(LockupRecord),
}

/// Why the kernel panicked, and the report that led there.
#[derive(Clone, Copy)]
pub(crate) struct PanicRecord {
    pub(crate) reason: FixedBuf<160>,
    pub(crate) cause: Option<Report>,
}

/// An instance's oops bookkeeping.
pub(crate) struct OopsState {
    /// Oopses whose task has not ended yet (room reserved: filled from signal handlers).
    pub(super) in_flight: IrqSpinLock<Vec<OopsRecord>>,
    /// Reports for the host side, in arrival order (room reserved).
    pub(super) pending: IrqSpinLock<Vec<Report>>,
    /// Reports that found no room.
    pub(crate) dropped: AtomicU64,
    /// Oopses so far (Linux's `[#N]`).
    pub(crate) count: AtomicU64,
    /// A CPU has begun a panic (the first one wins and writes `panic`).
    pub(super) panicking: AtomicBool,
    /// `panic` is written: the host side may report it.
    pub(super) panicked: AtomicBool,
    pub(super) panic: IrqSpinLock<Option<PanicRecord>>,
    /// CPUs that have stopped for the panic (bit per CPU).
    pub(crate) stopped: AtomicU64,
    /// The host thread in [`crate::run`], woken when there is something to report.
    pub(crate) supervisor: OnceLock<<A as Arch>::Supervisor>,
    /// CPU 0's thread has finished its work (the instance is down): the supervisor joins it
    /// at once instead of at its next periodic look.
    pub(crate) cpu0_done: AtomicBool,
    /// Formatted oops reports (host side).
    pub(crate) reports: IrqSpinLock<Vec<OopsReport>>,
}

impl OopsState {
    pub(crate) fn new() -> OopsState {
        OopsState {
            in_flight: IrqSpinLock::new(Vec::with_capacity(ROOM)),
            pending: IrqSpinLock::new(Vec::with_capacity(ROOM)),
            dropped: AtomicU64::new(0),
            count: AtomicU64::new(0),
            panicking: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            panic: IrqSpinLock::new(None),
            stopped: AtomicU64::new(0),
            supervisor: OnceLock::new(),
            cpu0_done: AtomicBool::new(false),
            reports: IrqSpinLock::new(Vec::new()),
        }
    }

    /// True once a CPU has begun a panic: every CPU stops at its next interrupt.
    pub(crate) fn panicking(&self) -> bool {
        self.panicking.load(Ordering::Acquire)
    }

    /// The panic, once its record is written.
    pub(crate) fn panic_record(&self) -> Option<PanicRecord> {
        self.panicked.load(Ordering::Acquire).then(|| *self.panic.lock()).flatten()
    }

    /// Queues a raw report for the host side (no allocation; dropped and counted when full).
    pub(crate) fn push(&self, r: Report) {
        let mut p = self.pending.lock();
        if p.len() < p.capacity() {
            p.push(r);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        drop(p);
        self.wake_supervisor();
    }

    /// Takes the raw reports queued so far (host side).
    pub(crate) fn take_pending(&self) -> Vec<Report> {
        let mut p = self.pending.lock();
        let out = p.to_vec();
        p.clear();
        out
    }

    /// Says CPU 0's thread is done and wakes the supervisor (the thread's last act).
    pub(crate) fn cpu0_finished(&self) {
        self.cpu0_done.store(true, Ordering::Release);
        self.wake_supervisor();
    }

    pub(crate) fn wake_supervisor(&self) {
        if let Some(t) = self.supervisor.get() {
            A::supervisor_wake(t);
        }
    }
}
