//! The tracers' state, as data: which tracers run, each CPU's ring, latency tracers and
//! profile, and the tracers' claim on the point sites. The hooks that feed them are `trace`'s.
//!
//! **Invariant.** Data only: this file imports no subsystem, and recording never allocates
//! (every CPU's state is preallocated at boot).

use super::types::{Event, Record, Where};
use super::{preemptoff, profile, ring, wakeup_rt};
use crate::arch::{AllSitesClaim, Arch, IrqSpinLock, A};
use crate::config::{TraceOptions, BUILT, EVENTS};
use crate::sync::OnceLock;
use crate::task::TaskId;
use alloc::boxed::Box;
use core::sync::atomic::{AtomicU8, Ordering};

/// Everything one CPU's tracers hold; preallocated at boot, touched with IRQs masked.
pub(crate) struct CpuTrace {
    pub(super) ring: ring::Ring,
    pub(super) preemptoff: preemptoff::State,
    pub(super) wakeup: wakeup_rt::State,
    pub(super) profile: profile::Profile,
    /// The running task's most recent known place (a point, a system-call border, the IP an
    /// interrupt found): where it was when something happened to it.
    pub(super) last_where: Where,
    /// The running task, as of the last `sched_switch` (so that recording never needs the
    /// scheduler's lock: callers may hold it).
    pub(super) curr: TaskId,
    /// The CPU this state belongs to.
    pub(super) cpu: u32,
}

impl CpuTrace {
    /// Notes the CPU's `Arch::cpu_stolen` for the latency tracers' next record (a stretch or a
    /// wake-up that spans a change held the host's time too).
    pub(super) fn note_stolen(&mut self) {
        let s = crate::arch::A::cpu_stolen();
        self.preemptoff.stolen = s;
        self.wakeup.stolen = s;
    }
}

/// The tracing state of one kernel instance.
pub struct Tracer {
    pub(super) flags: AtomicU8,
    pub(super) options: TraceOptions,
    pub(super) cpus: OnceLock<Box<[IrqSpinLock<CpuTrace>]>>,
    /// The latency tracers' claim on every preemption-point site, from boot to shutdown.
    pub(super) sites_claim: IrqSpinLock<Option<AllSitesClaim>>,
    pub(super) boot_ns: u64,
}

impl Tracer {
    pub(crate) fn new(options: TraceOptions) -> Tracer {
        let sites_claim = IrqSpinLock::new(None);
        Tracer { flags: AtomicU8::new(0), options, cpus: OnceLock::new(), sites_claim, boot_ns: A::now_ns() }
    }

    /// True if any tracer in `mask` is on: one relaxed load and a test (a constant `false`
    /// without the `trace` feature).
    #[inline(always)]
    pub(super) fn on(&self, mask: u8) -> bool {
        BUILT && self.flags.load(Ordering::Relaxed) & mask != 0
    }

    /// Runs `f` on the calling CPU's tracing state.
    pub(super) fn with(&self, f: impl FnOnce(&mut CpuTrace, u64)) {
        self.with_cpu(A::cpu_number() as usize, f);
    }

    /// Runs `f` on CPU `cpu`'s tracing state (a wakeup is recorded where the task will run).
    pub(super) fn with_cpu(&self, cpu: usize, f: impl FnOnce(&mut CpuTrace, u64)) {
        if let Some(t) = self.cpus.get().and_then(|c| c.get(cpu)) {
            let now = A::now_ns().saturating_sub(self.boot_ns);
            f(&mut t.lock(), now);
        }
    }

    pub(super) fn record(&self, t: &mut CpuTrace, now: u64, event: Event) {
        if self.on(EVENTS) {
            t.ring.push(Record { ts_ns: now, cpu: t.cpu, pid: t.curr, event });
        }
    }
}
