//! Helpers shared by the integration tests.
#![allow(dead_code)]

use kernel::device::Device;
use kernel::{run, spawn, Config, RunReport, TaskBuilder, TaskHandle, WaitQueue};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// Runs a kernel on its own thread and fails the test if it has not finished in `secs`
/// (a lost wakeup shows up as a hang; this turns it into a failure).
pub(crate) fn run_with_timeout(config: Config, secs: u64, init: impl FnOnce() -> i64 + Send + 'static) -> RunReport {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(run(config, init));
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(r) => r.expect("kernel failed to boot"),
        Err(_) => panic!("kernel instance did not finish within {secs}s (lost wakeup or missed preemption?)"),
    }
}

/// A fixed-capacity, allocation-free event log that tasks on one CPU may share (no locks,
/// so a task preempted while appending never blocks another).
pub(crate) struct EventLog {
    slots: Vec<AtomicUsize>,
    len: AtomicUsize,
}

impl EventLog {
    pub(crate) fn new(cap: usize) -> Self {
        EventLog { slots: (0..cap).map(|_| AtomicUsize::new(0)).collect(), len: AtomicUsize::new(0) }
    }

    pub(crate) fn push(&self, v: usize) {
        let i = self.len.fetch_add(1, Ordering::AcqRel);
        if i < self.slots.len() {
            self.slots[i].store(v, Ordering::Release);
        }
    }

    pub(crate) fn to_vec(&self) -> Vec<usize> {
        let n = self.len.load(Ordering::Acquire).min(self.slots.len());
        self.slots[..n].iter().map(|s| s.load(Ordering::Acquire)).collect()
    }
}

/// Spins in user mode for `ns` of wall time.
/// The clock is read every 256 pause instructions, so an interrupt almost always lands in this
/// loop's own code (kernel text) rather than in the vDSO's clock (foreign code, where a model
/// that preempts at interrupt exit must retry).
pub(crate) fn spin_ns(ns: u64) {
    let end = kernel::time::now_ns() + ns;
    while kernel::time::now_ns() < end {
        for _ in 0..256 {
            std::hint::spin_loop();
        }
    }
}

/// A device interrupt that wakes waiting tasks: its handler sets a "fired" flag (`Release`)
/// and wakes a wait queue; [`RtWakeup::wait`] and the tasks of [`RtWakeup::spawn_rt`] sleep
/// on that queue until the flag is set (`Acquire`). Cloning shares the device, flag and queue.
#[derive(Clone)]
pub(crate) struct RtWakeup {
    dev: Arc<Device>,
    fired: Arc<AtomicBool>,
    wq: Arc<WaitQueue>,
}

impl RtWakeup {
    /// Registers the device `device_name` on this CPU. Call from a task.
    pub(crate) fn new(device_name: &str) -> Self {
        let fired = Arc::new(AtomicBool::new(false));
        let wq = Arc::new(WaitQueue::new());
        let (f, w) = (fired.clone(), wq.clone());
        let dev = Arc::new(Device::register(device_name, move || {
            f.store(true, Ordering::Release);
            w.wake_up();
        }));
        RtWakeup { dev, fired, wq }
    }

    /// The device, to `raise` or `raise_at`; it is released when the last clone is dropped.
    pub(crate) fn device(&self) -> &Arc<Device> {
        &self.dev
    }

    /// Whether the interrupt has fired.
    pub(crate) fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// The "fired" flag itself, for code that takes an `&AtomicBool`.
    pub(crate) fn fired_flag(&self) -> &AtomicBool {
        &self.fired
    }

    /// Sleeps the calling task until the interrupt has fired.
    pub(crate) fn wait(&self) {
        self.wq.wait_event(|| self.fired.load(Ordering::Acquire));
    }

    /// Spawns the SCHED_FIFO task `name` at `prio`, which waits for the interrupt and then
    /// returns what `body` returns. The task holds the flag and the queue, not the device.
    pub(crate) fn spawn_rt(&self, name: &str, prio: u8, body: impl FnOnce() -> i64 + Send + 'static) -> TaskHandle {
        let (f, w) = (self.fired.clone(), self.wq.clone());
        spawn(TaskBuilder::new(name).fifo(prio), move || {
            w.wait_event(|| f.load(Ordering::Acquire));
            body()
        })
    }
}
