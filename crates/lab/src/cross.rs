//! The cross-CPU probe: an interrupt on one CPU wakes an RT task bound to another.
//!
//! **Mechanism.** A device whose interrupt arrives on CPU [`CPUS`]`.0` (`Device::register_on`)
//! and an RT task (SCHED_FIFO, bound to CPU [`CPUS`]`.1`) that samples cyclictest's way over
//! the deadlines `start + k * interval`: a host thread raises the interrupt at each deadline;
//! the handler, in hard interrupt context on the interrupt's CPU, counts and wakes the task,
//! and that wakeup is remote: the waker's CPU sends the task's CPU the reschedule IPI, and the
//! task's CPU's model decides where its running worker gives the CPU up (at the IPI's exit, at
//! its next point, at the end of its system call). The sample, `now - deadline` when the task
//! runs, is all of it: the interrupt's delivery, the IPI, and whatever kept the task's CPU from
//! the task.
//!
//! **Invariant.** One raise per deadline, made only once the previous one was handled (so no
//! raise coalesces with another), and every raise is waited for: the handler's count equals
//! the samples. The handler and the probe each note the CPU they ran on, so a result
//! shows where the interrupt and the wakeup really were.

use crate::measure::{CrossOut, Placement, ProbeSpec, Stop};
use crate::stats::LatencyHist;
use kernel::device::Device;
use kernel::WaitQueue;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The CPU the interrupt arrives on and the CPU the RT task is bound to (as in the seed
/// scenario on several CPUs: the interrupt on CPU 0, the tasks on CPU 1).
pub const CPUS: (usize, usize) = (0, 1);

/// The interrupt's side: what the handler counts, and the host thread that raises it.
#[derive(Default)]
struct Irq {
    /// Interrupts handled.
    fired: AtomicU64,
    /// CPUs the handler ran on (bit n = CPU n).
    seen: AtomicU64,
    wq: WaitQueue,
    /// The raiser thread, unparked by the handler (it raises the next interrupt only once
    /// this one was handled).
    raiser: std::sync::OnceLock<std::thread::Thread>,
}

impl Irq {
    /// The handler, in hard interrupt context on the interrupt's CPU: counts, tells the
    /// raiser, wakes the probe.
    fn handle(&self) {
        self.seen.fetch_or(1u64.checked_shl(kernel::raw_smp_processor_id() as u32).unwrap_or(0), Ordering::Relaxed);
        self.fired.fetch_add(1, Ordering::AcqRel);
        if let Some(t) = self.raiser.get() {
            t.unpark();
        }
        self.wq.wake_up();
    }
}

/// A registered cross-CPU probe, ready to run.
pub(crate) struct CrossProbe {
    irq: Arc<Irq>,
    dev: Device,
    irq_cpu: usize,
    spec: ProbeSpec,
    /// The host CPU the interrupt's CPU thread is pinned to, if it is.
    irq_host_cpu: Option<usize>,
}

impl CrossProbe {
    /// Registers the probe's device, its interrupt on `irq_cpu`, without a timer: its own
    /// raiser thread raises the interrupt, and a device timer's host thread would poll beside
    /// the CPU threads (on a host with no spare core, on one of theirs). Call from a task.
    /// `irq_host_cpu`: the host CPU the interrupt's CPU thread is pinned to (`pin=`), where the
    /// raiser thread then runs too, as a device interrupt arrives on its CPU.
    pub(crate) fn register(irq_cpu: usize, spec: ProbeSpec, irq_host_cpu: Option<usize>) -> CrossProbe {
        let irq = Arc::new(Irq::default());
        let i = irq.clone();
        let dev = Device::register_raised_on(irq_cpu, "lab-cross", move || i.handle());
        CrossProbe { irq, dev, irq_cpu, spec, irq_host_cpu }
    }

    /// The RT task's priority and period.
    pub(crate) fn spec(&self) -> ProbeSpec {
        self.spec
    }

    /// The probe's loop, run by the RT task (bound to [`CPUS`]`.1`) over the deadlines `start +
    /// k * interval` up to `deadline` (or `stop`'s count): a host thread raises the interrupt
    /// at each deadline (`clock_nanosleep(TIMER_ABSTIME)`, once the previous interrupt was
    /// handled), and the task samples how late it runs after it. The schedule is kept whatever
    /// the task does, so a late wakeup is one late sample, not a later schedule.
    pub(crate) fn run(self, start: u64, deadline: u64, stop: Stop) -> CrossOut {
        let CrossProbe { irq, dev, irq_cpu, spec, irq_host_cpu } = self;
        let total = match stop {
            Stop::After(_) => deadline.saturating_sub(start) / spec.interval_ns,
            Stop::Loops(n) => n,
        };
        let at = move |k: u64| start + k * spec.interval_ns;
        let (i, raiser) = (irq.clone(), dev.raiser());
        let thread = std::thread::Builder::new()
            .name("lab-cross-raise".into())
            .spawn(move || {
                // Not the spawning CPU thread's policy and host CPU: the interrupt source runs
                // at the probe's priority, beside the interrupt's CPU thread when that is pinned
                // (at that thread's own nice, the host lets it wait for a tick).
                if let Some(c) = irq_host_cpu {
                    let _ = hostlab::sched::pin_current_thread(c);
                }
                hostlab::sched::set_best_rt_policy(spec.prio);
                for k in 1..=total {
                    hostlab::sched::sleep_until_ns(at(k));
                    while i.fired.load(Ordering::Acquire) < k - 1 {
                        std::thread::park_timeout(std::time::Duration::from_millis(1));
                    }
                    raiser.raise();
                }
            })
            .expect("cannot start the cross-CPU probe's raiser thread");
        let _ = irq.raiser.set(thread.thread().clone());
        let (mut hist, mut rt) = (LatencyHist::new(), Placement::bound(CPUS.1));
        for k in 1..=total {
            let host = hostlab::sched::involuntary_switches();
            irq.wq.wait_event(|| irq.fired.load(Ordering::Acquire) >= k);
            let late = kernel::time::now_ns().saturating_sub(at(k));
            hist.record_sample(late, hostlab::sched::involuntary_switches() != host);
            rt.saw(kernel::raw_smp_processor_id());
        }
        let _ = thread.join();
        drop(dev);
        let seen = irq.seen.load(Ordering::Relaxed);
        CrossOut { spec, irq: Placement { cpu: Some(irq_cpu), seen }, rt, hist }
    }
}
