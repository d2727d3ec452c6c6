//! Devices: interrupt sources outside the CPUs.
//!
//! **Mechanism.** [`Device::register`] gives a handler a free interrupt line of the current
//! CPU ([`Device::register_on`]: of a chosen CPU). The device can then be raised from any
//! thread ([`DeviceRaiser::raise`]: set the line in the CPU's IRR, ring the doorbell signal),
//! or at a chosen moment by the arch's device timer ([`Device::raise_at`]: a host thread of the
//! device's own on the hosted arch), which is how
//! the "ISR" of the 1996 scenario arrives in the middle of an atom without the atom having to
//! cooperate.
//!
//! **Invariant.** The handler runs in hard interrupt context on the device's CPU, once per
//! raise that finds the line clear (raises of a line already pending coalesce, as an edge
//! interrupt's do); devices count their own events, so coalescing loses none.

use crate::arch::{Arch, DeviceTimer, IrqRaiser, A};
use crate::instance::this_kernel;
use crate::irq_desc::IrqHandler;
use alloc::string::String;
use alloc::sync::Arc;

/// A handle for raising a device's interrupt from any thread.
#[derive(Clone, Debug)]
pub struct DeviceRaiser {
    raiser: IrqRaiser,
    line: u32,
}

impl DeviceRaiser {
    /// Asserts the device's interrupt line.
    pub fn raise(&self) {
        A::irq_raise(&self.raiser, self.line);
    }
}

/// A registered device with an interrupt line and a timer for timed interrupts.
pub struct Device {
    name: String,
    line: u32,
    raiser: DeviceRaiser,
    timer: Option<DeviceTimer>,
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
        let mut dev = Device::register_raised_on(cpu, name, handler);
        let k = this_kernel();
        dev.timer = Some(A::device_timer_new(name, dev.raiser.raiser.clone(), dev.line, k.helper_cpus.clone()));
        dev
    }

    /// As [`register_on`](Self::register_on), for a device raised only by [`raise`](Self::raise)
    /// and its [`DeviceRaiser`]s: it has no timer, so no host thread of its own competes with
    /// the CPUs (the hosted timer polls for a while after each deadline and at its start), and
    /// [`raise_at`](Self::raise_at) on it is a bug.
    pub fn register_raised_on(cpu: usize, name: &str, handler: impl Fn() + Send + Sync + 'static) -> Device {
        let k = this_kernel();
        if cpu >= k.cpus.len() {
            panic!("device '{name}': CPU {cpu} does not exist (cpus={}; use 0..{})", k.cpus.len(), k.cpus.len());
        }
        let handler: IrqHandler = Arc::new(handler);
        let line = k.irq.request(handler).unwrap_or_else(|| panic!("device '{name}': no free interrupt line"));
        let raiser = DeviceRaiser { raiser: k.cpus[cpu].raiser.get().expect("CPU is up").clone(), line };
        crate::printk!("device {name}: registered on IRQ line {line}");
        Device { name: name.into(), line, raiser, timer: None }
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
    /// Panics on a device registered without a timer ([`register_raised_on`](Self::register_raised_on)).
    pub fn raise_at(&self, deadline_ns: u64) {
        match &self.timer {
            Some(t) => A::device_timer_fire_at(t, deadline_ns),
            None => panic!(
                "device {}: raise_at on a device registered without a timer (use Device::register_on)",
                self.name
            ),
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        drop(self.timer.take()); // stops the source before its line is freed
        if let Some(k) = crate::instance::try_this_kernel() {
            if !k.irq.free(self.line) {
                let what = format_args!("free_irq: line {}'s handler still runs after 2 s", self.line);
                k.bug_args(what, core::panic::Location::caller());
            }
            crate::printk!("device {}: released IRQ line {}", self.name, self.line);
        }
    }
}
