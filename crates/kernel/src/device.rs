//! Devices: interrupt sources outside the CPU, raised by host threads.
//!
//! **Mechanism.** [`Device::register`] gives a handler a free interrupt line of the current
//! CPU ([`Device::register_on`]: of a chosen CPU). The device can then be raised from any
//! thread ([`DeviceRaiser::raise`]: set the line in the CPU's IRR, ring the doorbell signal),
//! or at a chosen moment by the device's own host thread ([`Device::raise_at`]), which is how
//! the "ISR" of the 1996 scenario arrives in the middle of an atom without the atom having to
//! cooperate.
//!
//! **Invariant.** The handler runs in hard interrupt context on the device's CPU, once per
//! raise that finds the line clear (raises of a line already pending coalesce, as an edge
//! interrupt's do); devices count their own events, so coalescing loses none.

use crate::instance::this_kernel;
use crate::irq::{free_irq, request_irq, IrqHandler};
use arch::irq::IrqRaiser;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A handle for raising a device's interrupt from any thread.
#[derive(Clone, Debug)]
pub struct DeviceRaiser {
    raiser: IrqRaiser,
    line: u32,
}

impl DeviceRaiser {
    /// Asserts the device's interrupt line.
    pub fn raise(&self) {
        self.raiser.raise(self.line);
    }
}

struct Timed {
    deadline: AtomicU64,
    stop: AtomicBool,
    ready: AtomicBool,
}

/// How long the device thread polls for a new deadline before it parks: waking a parked host
/// thread on an idle host core costs milliseconds, which would make the interrupt late.
const POLL_BEFORE_PARK_NS: u64 = 50_000_000;

/// A registered device with an interrupt line and a host thread for timed interrupts.
pub struct Device {
    name: String,
    line: u32,
    raiser: DeviceRaiser,
    timed: Arc<Timed>,
    thread: Option<JoinHandle<()>>,
}

impl Device {
    /// Registers `handler` (run in hard interrupt context) for a new device on the calling
    /// task's CPU. Call from a task. Panics if all device lines are taken.
    pub fn register(name: &str, handler: impl Fn() + Send + Sync + 'static) -> Device {
        Device::register_on(crate::instance::this_cpu_id(), name, handler)
    }

    /// Registers `handler` for a new device whose interrupt arrives on CPU `cpu` (its IRQ
    /// affinity). Call from a task. Panics if `cpu` is not a CPU of the instance or all device
    /// lines are taken.
    pub fn register_on(cpu: usize, name: &str, handler: impl Fn() + Send + Sync + 'static) -> Device {
        let k = this_kernel();
        if cpu >= k.cpus.len() {
            panic!("device '{name}': CPU {cpu} does not exist (cpus={}; use 0..{})", k.cpus.len(), k.cpus.len());
        }
        let handler: IrqHandler = Arc::new(handler);
        let line = request_irq(&k, handler).unwrap_or_else(|| panic!("device '{name}': no free interrupt line"));
        let raiser = DeviceRaiser { raiser: k.cpus[cpu].raiser.get().expect("CPU is up").clone(), line };
        let timed = Arc::new(Timed {
            deadline: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            ready: AtomicBool::new(false),
        });
        let (r, t, cpus) = (raiser.clone(), timed.clone(), k.helper_cpus.clone());
        let thread = std::thread::Builder::new()
            .name(format!("dev-{name}"))
            .spawn(move || {
                arch::cpu::set_affinity(&cpus);
                device_thread(r, t)
            })
            .expect("cannot start a device thread");
        while !timed.ready.load(Ordering::Acquire) {
            std::hint::spin_loop(); // the thread's first run takes the host a while
        }
        crate::printk!("device {name}: registered on IRQ line {line}");
        Device { name: name.into(), line, raiser, timed, thread: Some(thread) }
    }

    /// The interrupt line.
    pub fn line(&self) -> u32 {
        self.line
    }

    /// A raiser for other threads.
    pub fn raiser(&self) -> DeviceRaiser {
        self.raiser.clone()
    }

    /// Raises the interrupt now.
    pub fn raise(&self) {
        self.raiser.raise();
    }

    /// Has the device's host thread raise the interrupt at `deadline_ns` (monotonic clock),
    /// while the CPU goes on with whatever it is doing. A later call replaces an earlier one
    /// that has not fired yet.
    pub fn raise_at(&self, deadline_ns: u64) {
        self.timed.deadline.store(deadline_ns.max(1), Ordering::Release);
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }
}

fn device_thread(raiser: DeviceRaiser, timed: Arc<Timed>) {
    timed.ready.store(true, Ordering::Release);
    let mut idle_since = arch::clock::now_ns();
    while !timed.stop.load(Ordering::Acquire) {
        let deadline = timed.deadline.swap(0, Ordering::AcqRel);
        if deadline == 0 {
            if arch::clock::now_ns() - idle_since > POLL_BEFORE_PARK_NS {
                std::thread::park();
                idle_since = arch::clock::now_ns();
            }
            std::hint::spin_loop();
            continue;
        }
        // Sleep most of the way, then spin: thread wake-up is coarse.
        let now = arch::clock::now_ns();
        if deadline > now + 100_000 {
            std::thread::sleep(std::time::Duration::from_nanos(deadline - now - 100_000));
        }
        while arch::clock::now_ns() < deadline {
            std::hint::spin_loop();
        }
        raiser.raise();
        idle_since = arch::clock::now_ns();
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.timed.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        if let Some(k) = crate::instance::try_this_kernel() {
            free_irq(&k, self.line);
            crate::printk!("device {}: released IRQ line {}", self.name, self.line);
        }
    }
}
