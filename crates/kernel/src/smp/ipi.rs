//! Raising an IPI, and the reschedule IPI's mailbox (Linux's `smp_send_reschedule`).
//!
//! **Mechanism.** An IPI is a real interrupt on the target CPU's thread: the sender writes the
//! target's mailbox, then raises the IPI's line in the target's IRR and rings its doorbell
//! (`Arch::irq_raise`). The reschedule IPI carries the wakeup that asked for it (the woken
//! task, whether it is RT, whether the target runs a fair task); the target's handler takes it
//! ([`take_resched`]) and hands it to its own model (`model::decide::scheduler_ipi`), which
//! decides as for a local wakeup.
//!
//! **Invariant.** No IPI is lost: the mailbox is written before the line is raised, the
//! handler empties the mailbox after the line is taken, and a raise that finds the line
//! already pending coalesces into the run that will read the mailbox. An IPI sent to a CPU
//! still coming up (no doorbell yet) is found by that CPU's own look at its mailboxes once its
//! doorbell is published ([`ipi_online`]; a fence on each side orders the two). Each IPI sent
//! and received is counted on its CPU. This file calls no subsystem: the scheduler and the
//! models send through it.

use crate::arch::{Arch, A};
use crate::instance::Kernel;
use crate::model::policy::Wakeup;
use core::sync::atomic::{fence, Ordering};

/// The reschedule mailbox's RT bit.
const RESCHED_RT: u64 = 1 << 63;
/// The reschedule mailbox's "the target runs a fair task" bit.
const RESCHED_CURR_FAIR: u64 = 1 << 62;
/// The woken pid + 1 in the low bits (0: no wakeup pending, just a kick).
const RESCHED_PID: u64 = (1 << 62) - 1;

/// Raises `line` on CPU `cpu` and counts the IPI. A CPU still coming up has no doorbell yet:
/// the mailbox written before this call is then read by [`ipi_online`] on that CPU.
pub(super) fn send_ipi(k: &Kernel, cpu: usize, line: u32) {
    // Pairs with the fence in `ipi_online`: either this load sees the doorbell, or that CPU's
    // look at its mailboxes sees what the caller wrote there.
    fence(Ordering::SeqCst);
    let Some(r) = k.cpus[cpu].raiser.get() else { return };
    k.raw_this_cpu().stats.ipis_sent.fetch_add(1, Ordering::Relaxed);
    A::irq_raise(r, line);
}

/// Called by CPU `cpu` once its doorbell is published: an IPI sent before that found no
/// doorbell, so the CPU raises its own IPI lines for whatever its mailboxes already hold
/// (taken when it first enables IRQs, like any interrupt that arrived while masked).
pub(crate) fn ipi_online(k: &Kernel, cpu: usize) {
    fence(Ordering::SeqCst);
    let c = &k.cpus[cpu];
    let Some(r) = c.raiser.get() else { return };
    if c.ipi.resched.load(Ordering::Acquire) != 0 {
        A::irq_raise(r, crate::irq_desc::LINE_RESCHED);
    }
    if !c.ipi.calls.lock().is_empty() {
        A::irq_raise(r, crate::irq_desc::LINE_CALL_FUNCTION);
    }
}

/// `smp_send_reschedule`: asks CPU `cpu` to reschedule for wakeup `w` (decided under its
/// run-queue lock by the waker). An RT request is never replaced by a fair one.
pub(crate) fn smp_send_reschedule(k: &Kernel, cpu: usize, w: Wakeup) {
    let word = (w.woken as u64 + 1) & RESCHED_PID
        | if w.rt { RESCHED_RT } else { 0 }
        | if w.curr_fair { RESCHED_CURR_FAIR } else { 0 };
    let mb = &k.cpus[cpu].ipi.resched;
    let _ = mb.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| (old & RESCHED_RT == 0 || w.rt).then_some(word));
    send_ipi(k, cpu, crate::irq_desc::LINE_RESCHED);
}

/// Wakes CPU `cpu` out of its idle halt (or interrupts it) with nothing to hand over: it looks
/// at its run queue and at the instance again.
pub(crate) fn kick_cpu(k: &Kernel, cpu: usize) {
    send_ipi(k, cpu, crate::irq_desc::LINE_RESCHED);
}

/// The reschedule IPI's mailbox, taken on its target CPU in hard-IRQ context (counting the IPI
/// received): the wakeup it carries, or `None` for a kick with nothing to hand over.
pub(crate) fn take_resched(k: &Kernel) -> Option<Wakeup> {
    let cpu = k.this_cpu();
    cpu.stats.ipis_received.fetch_add(1, Ordering::Relaxed);
    let word = cpu.ipi.resched.swap(0, Ordering::AcqRel);
    (word & RESCHED_PID != 0).then(|| Wakeup {
        woken: (word & RESCHED_PID) as usize - 1,
        rt: word & RESCHED_RT != 0,
        is_curr: false,
        curr_fair: word & RESCHED_CURR_FAIR != 0,
    })
}
