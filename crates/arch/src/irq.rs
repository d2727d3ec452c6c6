//! Interrupt lines, the soft IRQ mask and pending-IRQ replay.
//!
//! **Mechanism.** Every interrupt of a CPU arrives as one host signal, `sig_irq`, on that
//! CPU's thread: timers send it with `si_value` naming their line, devices and other CPUs set a
//! bit in the CPU's interrupt request register (IRR, an atomic word) and `tgkill` the thread.
//! `local_irq_disable` never calls `sigprocmask`: it sets a per-CPU flag. A signal that finds the
//! flag set records its lines as pending and returns at once; clearing the flag replays them
//! (the lazy masking of Xen PV and powerpc).
//!
//! **Invariant.** Between [`local_irq_disable`] and the matching enable, no interrupt handler of
//! the core runs on this CPU, and no interrupt is lost: a line raised while masked is handled
//! exactly once, when the mask clears. The doorbell rule of [`IrqRaiser::raise`] keeps signal
//! traffic to one in flight per CPU however fast a device raises.

use crate::entry::{self, IrqFrame};
use crate::percpu;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The host signal that carries every interrupt of every CPU.
pub(crate) fn sig_irq() -> libc::c_int {
    libc::SIGRTMIN() + 5
}

/// `local_irq_disable()`: set the soft mask.
#[inline(always)]
pub fn local_irq_disable() {
    percpu::set_irqs_masked(true);
}

/// `local_irq_enable()`: clear the soft mask, first replaying every interrupt that arrived
/// while it was set (each with the mask set, as on real entry).
///
/// With nothing pending (the usual case) it is two loads and a store of this thread's words,
/// no locked instruction: a signal before the store finds the mask set and leaves its lines
/// pending, which the second load sees (the mask is then taken back and the lines replayed);
/// one after it is handled there and then.
#[inline(always)]
pub fn local_irq_enable() {
    if percpu::pending() == 0 {
        percpu::set_irqs_masked(false);
        if percpu::pending() == 0 {
            return;
        }
        percpu::set_irqs_masked(true);
    }
    replay_and_enable();
}

/// [`local_irq_enable`] with lines pending: replay them all, then clear the mask.
#[inline(never)]
fn replay_and_enable() {
    // The replay may preempt the task (a replayed interrupt's `Preempt` is served by a direct
    // call), and the task may then resume on another CPU thread: so no per-CPU reference is
    // held across it, and each step below reaches this thread's words afresh.
    loop {
        // One `xchg` on the word (a `%fs`-relative one, so right on the thread the task runs
        // on now): a signal lands before it (and is taken now) or after it (and is seen below).
        let pending = percpu::take_pending();
        if pending != 0 {
            entry::run_irq(pending, &IrqFrame::replayed());
            continue;
        }
        percpu::set_irqs_masked(false);
        // A signal between the read of `pending` and the clear found the mask set and left its
        // lines pending: take the mask back and replay them rather than lose them.
        if percpu::pending() == 0 {
            return;
        }
        percpu::set_irqs_masked(true);
    }
}

/// `local_irq_save()`: mask and return whether IRQs were masked before.
#[inline(always)]
pub fn local_irq_save() -> bool {
    // A load and a store: a signal between them finds the mask clear, runs to completion and
    // leaves it as it found it.
    let was = percpu::irqs_masked();
    percpu::set_irqs_masked(true);
    was
}

/// `local_irq_restore(flags)`: undo a [`local_irq_save`].
#[inline(always)]
pub fn local_irq_restore(was_masked: bool) {
    if !was_masked {
        local_irq_enable();
    }
}

/// `irqs_disabled()`.
#[inline(always)]
pub fn irqs_disabled() -> bool {
    percpu::irqs_masked()
}

/// Lines raised while masked and not yet replayed (for tests and tracing).
pub(crate) fn pending_lines() -> u64 {
    percpu::pending()
}

/// A handle that raises interrupt lines on one CPU from any thread: a device's interrupt pin,
/// or another CPU's IPI.
#[derive(Clone, Debug)]
pub struct IrqRaiser {
    pub(crate) pid: libc::pid_t,
    pub(crate) tid: libc::pid_t,
    pub(crate) irr: Arc<AtomicU64>,
}

impl IrqRaiser {
    /// Raise `line` (0..64). Only the raise that finds the IRR empty rings the doorbell (sends
    /// the signal); the handler empties the IRR with one swap, so it sees every line set before
    /// the swap, and a raise after the swap finds it empty and rings again.
    pub fn raise(&self, line: u32) {
        assert!(line < 64, "IRQ line {line} out of range 0..64");
        let before = self.irr.fetch_or(1 << line, Ordering::AcqRel);
        if before == 0 {
            // SAFETY: tgkill only sends a signal; `pid`/`tid` name this process's CPU thread,
            // and a stale tid can only reach a thread of this process whose handler ignores
            // signals it is not registered for.
            unsafe {
                libc::syscall(libc::SYS_tgkill, self.pid, self.tid, sig_irq());
            }
        }
    }

    /// The host thread id of the target CPU.
    pub fn tid(&self) -> i32 {
        self.tid
    }
}

/// Takes the lines posted to this CPU's IRR (called by the signal handler).
pub(crate) fn take_irr() -> u64 {
    percpu::with(|l| {
        let irr = l.irr.get();
        if irr.is_null() {
            0
        } else {
            // SAFETY: `irr` was set by `CpuRegistration::new` from an `Arc` that the
            // registration keeps alive until it clears this pointer.
            unsafe { (*irr).swap(0, Ordering::AcqRel) }
        }
    })
}
