//! The CPU's timers: POSIX timers whose expiry is delivered as `irq::sig_irq` to one
//! CPU thread (`SIGEV_THREAD_ID`), carrying their interrupt line in `si_value`.
//!
//! **Invariant.** A timer interrupts only the thread that created it, so kernel instances (and
//! tests) running side by side in one process never receive each other's ticks.

use crate::irq;
use std::io;

/// A host timer bound to the CPU thread that created it.
#[derive(Debug)]
pub struct HostTimer {
    id: libc::timer_t,
}

fn timespec(ns: u64) -> libc::timespec {
    libc::timespec { tv_sec: (ns / 1_000_000_000) as libc::time_t, tv_nsec: (ns % 1_000_000_000) as libc::c_long }
}

impl HostTimer {
    /// A disarmed timer that raises `line` on the calling thread.
    pub fn new(line: u32) -> io::Result<HostTimer> {
        assert!(line < 64, "IRQ line {line} out of range");
        // SAFETY: a zeroed sigevent is valid; the fields set describe thread-directed delivery
        // of sig_irq to this thread; `id` is an out-parameter.
        unsafe {
            let mut sev: libc::sigevent = std::mem::zeroed();
            sev.sigev_notify = libc::SIGEV_THREAD_ID;
            sev.sigev_signo = irq::sig_irq();
            sev.sigev_notify_thread_id = libc::gettid();
            sev.sigev_value = libc::sigval { sival_ptr: line as usize as *mut libc::c_void };
            let mut id: libc::timer_t = std::ptr::null_mut();
            if libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut id) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(HostTimer { id })
        }
    }

    fn settime(&self, flags: i32, value_ns: u64, interval_ns: u64) {
        let spec = libc::itimerspec { it_interval: timespec(interval_ns), it_value: timespec(value_ns) };
        // SAFETY: `id` is a live timer owned by self; `spec` is a valid input.
        unsafe { libc::timer_settime(self.id, flags, &spec, std::ptr::null_mut()) };
    }

    /// Fires every `period_ns`, first after one period.
    pub fn set_periodic(&self, period_ns: u64) {
        self.settime(0, period_ns, period_ns);
    }

    /// Fires once at `deadline_ns` on [`crate::clock::now_ns`]'s clock (at once if it is past).
    pub fn set_oneshot_at(&self, deadline_ns: u64) {
        self.settime(libc::TIMER_ABSTIME, deadline_ns.max(1), 0);
    }

    /// Stops the timer.
    pub fn disarm(&self) {
        self.settime(0, 0, 0);
    }

    /// Expirations missed because the signal was still pending (`timer_getoverrun`).
    pub fn overrun(&self) -> u32 {
        // SAFETY: `id` is a live timer owned by self.
        unsafe { libc::timer_getoverrun(self.id).max(0) as u32 }
    }
}

impl Drop for HostTimer {
    fn drop(&mut self) {
        // SAFETY: `id` is a live timer owned by self, deleted once.
        unsafe { libc::timer_delete(self.id) };
    }
}

// SAFETY: a timer_t is a process-wide id (an integer in a pointer): timer_settime and
// timer_delete may be called on it from any thread.
unsafe impl Send for HostTimer {}
// SAFETY: as above; the methods take &self and the host serialises operations on one timer.
unsafe impl Sync for HostTimer {}
