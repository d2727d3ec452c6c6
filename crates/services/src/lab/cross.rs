//! The cross-CPU probe: an interrupt on one CPU wakes an RT task bound to another.
//!
//! **Mechanism.** The probe task (SCHED_FIFO, bound to CPU [`CPUS`]`.1`) registers a device
//! whose interrupt arrives on CPU [`CPUS`]`.0` (`Device::register_on`) and loops cyclictest's
//! way: `next += interval; raise_at(next); wait until the handler has run; sample = now -
//! next`. The device's host thread raises the interrupt at the deadline; the handler, in hard
//! interrupt context on the interrupt's CPU, counts and wakes the probe, and that wakeup is
//! remote: the waker's CPU sends the probe's CPU the reschedule IPI, and the probe's CPU's
//! model decides where its running worker gives the CPU up (at the IPI's exit, at its next
//! point, at the end of its system call). The sample is all of it: the interrupt's delivery,
//! the IPI, and whatever kept the probe's CPU from the probe.
//!
//! **Invariant.** One raise per sample, asked for only after the previous one was handled (so
//! no raise coalesces with another), and every raise is waited for: the handler's count
//! equals the samples. The handler and the probe each note the CPU they ran on, so a result
//! shows where the interrupt and the wakeup really were.

use super::probe::{CrossOut, Placement, ProbeSpec, Stop};
use super::stats::LatencyHist;
use kernel::device::Device;
use kernel::WaitQueue;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The CPU the interrupt arrives on and the CPU the RT task is bound to (as in the seed
/// scenario on several CPUs: the interrupt on CPU 0, the tasks on CPU 1).
pub const CPUS: (usize, usize) = (0, 1);

#[derive(Default)]
struct Irq {
    /// Interrupts handled.
    fired: AtomicU64,
    /// CPUs the handler ran on (bit n = CPU n).
    seen: AtomicU64,
    wq: WaitQueue,
}

/// The probe's loop, run by the RT task (bound to [`CPUS`]`.1`) from `start` until `deadline`
/// or until it has taken `stop`'s count, with the device's interrupt on `irq_cpu`.
pub(crate) fn probe(irq_cpu: usize, spec: ProbeSpec, start: u64, deadline: u64, stop: Stop) -> CrossOut {
    let irq = Arc::new(Irq::default());
    let i = irq.clone();
    let dev = Device::register_on(irq_cpu, "lab-cross", move || {
        i.seen.fetch_or(1u64.checked_shl(kernel::raw_smp_processor_id() as u32).unwrap_or(0), Ordering::Relaxed);
        i.fired.fetch_add(1, Ordering::AcqRel);
        i.wq.wake_up();
    });
    let (mut hist, mut rt) = (LatencyHist::new(), Placement::bound(CPUS.1));
    let mut next = start;
    let mut raised = 0;
    loop {
        next += spec.interval_ns;
        if next > deadline || matches!(stop, Stop::Loops(n) if hist.count() >= n) {
            break;
        }
        let host = hostlab::sched::involuntary_switches();
        raised += 1;
        dev.raise_at(next);
        irq.wq.wait_event(|| irq.fired.load(Ordering::Acquire) >= raised);
        let late = kernel::time::now_ns().saturating_sub(next);
        hist.record_sample(late, hostlab::sched::involuntary_switches() != host);
        rt.saw(kernel::raw_smp_processor_id());
    }
    drop(dev);
    let seen = irq.seen.load(Ordering::Relaxed);
    CrossOut { spec, irq: Placement { cpu: Some(irq_cpu), seen }, rt, hist }
}
