//! Helpers shared by the integration tests.
#![allow(dead_code)]

use kernel::{run, Config, RunReport};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
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
