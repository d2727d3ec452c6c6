//! A device's timed interrupt: a host thread that raises a CPU's interrupt line at a set time.
//!
//! **Mechanism.** The 1996 scenario needs its "ISR" to arrive in the middle of an atom without
//! the atom cooperating, so the interrupt source must be outside the CPUs under test: here a
//! host thread of the device's own, on host CPUs away from the kernel's, told a deadline by
//! [`DeviceTimer::fire_at`]. It sleeps most of the way, spins the rest (thread wake-up is
//! coarse), then raises the line through the CPU's [`IrqRaiser`] as any interrupt arrives.
//! It polls for a new deadline for a while before parking, because waking a parked host thread
//! on an idle host core costs milliseconds, which would make the interrupt late.
//!
//! **Invariant.** One raise per deadline told; a later deadline replaces one not yet reached;
//! dropping the device stops and joins its thread.

use crate::irq::IrqRaiser;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// How long the device thread polls for a new deadline before it parks.
const POLL_BEFORE_PARK_NS: u64 = 50_000_000;

struct Timed {
    deadline: AtomicU64,
    stop: AtomicBool,
    ready: AtomicBool,
}

/// A device's timed interrupt source (see the module docs).
pub struct DeviceTimer {
    timed: Arc<Timed>,
    thread: Option<JoinHandle<()>>,
}

impl DeviceTimer {
    /// Starts the device thread `dev-{name}` on `host_cpus`, raising `line` through `raiser`.
    pub fn new(name: &str, raiser: IrqRaiser, line: u32, host_cpus: Vec<usize>) -> DeviceTimer {
        let timed = Arc::new(Timed {
            deadline: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            ready: AtomicBool::new(false),
        });
        let t = timed.clone();
        let thread = std::thread::Builder::new()
            .name(format!("dev-{name}"))
            .spawn(move || {
                crate::cpu::set_affinity(&host_cpus);
                device_thread(raiser, line, t)
            })
            .expect("cannot start a device thread");
        while !timed.ready.load(Ordering::Acquire) {
            std::hint::spin_loop(); // the thread's first run takes the host a while
        }
        DeviceTimer { timed, thread: Some(thread) }
    }

    /// Raises the line at `deadline_ns` (monotonic clock), replacing a deadline not reached.
    pub fn fire_at(&self, deadline_ns: u64) {
        self.timed.deadline.store(deadline_ns.max(1), Ordering::Release);
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }
}

fn device_thread(raiser: IrqRaiser, line: u32, timed: Arc<Timed>) {
    let now = crate::clock::now_ns;
    timed.ready.store(true, Ordering::Release);
    let mut idle_since = now();
    while !timed.stop.load(Ordering::Acquire) {
        let deadline = timed.deadline.swap(0, Ordering::AcqRel);
        if deadline == 0 {
            if now() - idle_since > POLL_BEFORE_PARK_NS {
                std::thread::park();
                idle_since = now();
            }
            std::hint::spin_loop();
            continue;
        }
        // Sleep most of the way, then spin: thread wake-up is coarse.
        let t = now();
        if deadline > t + 100_000 {
            std::thread::sleep(std::time::Duration::from_nanos(deadline - t - 100_000));
        }
        while now() < deadline {
            std::hint::spin_loop();
        }
        raiser.raise(line);
        idle_since = now();
    }
}

impl Drop for DeviceTimer {
    fn drop(&mut self) {
        self.timed.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
