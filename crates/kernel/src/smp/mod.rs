//! Inter-processor interrupts: the reschedule IPI and the function-call IPI
//! (Linux's `smp_send_reschedule`, `smp_call_function_single/many`, `kernel/smp.c`).
//!
//! **Mechanism.** An IPI is a real interrupt on the target CPU's thread: the sender writes the
//! target's mailbox, then raises the IPI's line in the target's IRR and rings its doorbell
//! (`Arch::irq_raise`). The reschedule IPI carries the wakeup that asked for it
//! (the woken task, whether it is RT, whether the target runs a fair task): the target's
//! handler (`scheduler_ipi`) hands it to its own model's `resched_curr`, and the interrupt's
//! exit (or the target's next point, or its `ret_from_syscall`) then decides by that model, as
//! for a local wakeup. A function call is queued in the target's call queue; the handler runs
//! every queued call in hard-IRQ context and drops its reference to it; a waiting sender spins
//! until it holds the only reference, with its own IRQs on so that calls aimed at it are served
//! meanwhile. A call not waited for stays in
//! the instance's in-flight list until it has run everywhere, and is freed by a later sender,
//! never in a target's interrupt.
//!
//! **Invariant.** No IPI is lost: the mailbox is written before the line is raised, the
//! handler empties the mailbox after the line is taken, and a raise that finds the line
//! already pending coalesces into the run that will read the mailbox. An IPI sent to a CPU
//! still coming up (no doorbell yet) is found by that CPU's own look at its mailboxes once its
//! doorbell is published (`ipi_online`; a fence on each side orders the two). Each IPI sent and
//! received is counted on its CPU.

use crate::arch::{Arch, A};
pub(crate) mod state;

use crate::instance::{this_kernel, Kernel};
use crate::model::Wakeup;
use crate::task::CpuMask;
use alloc::sync::Arc;
use alloc::{boxed::Box, format, string::String};
use core::panic::Location;
use core::sync::atomic::{fence, Ordering};
use state::CallData;

/// The reschedule mailbox's RT bit.
const RESCHED_RT: u64 = 1 << 63;
/// The reschedule mailbox's "the target runs a fair task" bit.
const RESCHED_CURR_FAIR: u64 = 1 << 62;
/// The woken pid + 1 in the low bits (0: no wakeup pending, just a kick).
const RESCHED_PID: u64 = (1 << 62) - 1;

/// Raises `line` on CPU `cpu` and counts the IPI. A CPU still coming up has no doorbell yet:
/// the mailbox written before this call is then read by [`ipi_online`] on that CPU.
fn send_ipi(k: &Kernel, cpu: usize, line: u32) {
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

/// The reschedule IPI's handler (`scheduler_ipi`), in hard-IRQ context.
pub(crate) fn scheduler_ipi(k: &Kernel) {
    let cpu = k.this_cpu();
    cpu.stats.ipis_received.fetch_add(1, Ordering::Relaxed);
    let word = cpu.ipi.resched.swap(0, Ordering::AcqRel);
    if word & RESCHED_PID == 0 {
        return;
    }
    let w = Wakeup {
        woken: (word & RESCHED_PID) as usize - 1,
        rt: word & RESCHED_RT != 0,
        is_curr: false,
        curr_fair: word & RESCHED_CURR_FAIR != 0,
    };
    crate::model::resched_local(k, w);
}

/// The function-call IPI's handler, in hard-IRQ context: runs every queued call.
pub(crate) fn call_function_interrupt(k: &Kernel) {
    let cpu = k.this_cpu();
    cpu.stats.ipis_received.fetch_add(1, Ordering::Relaxed);
    loop {
        let next = cpu.ipi.calls.lock().pop_front();
        let Some(call) = next else { break };
        (call.func)();
        drop(call); // never the last reference: the sender holds one (see below)
    }
}

/// Runs `func` on every CPU of `mask` (the caller's own included if it is in the mask, with IRQs
/// masked there too, as Linux's `on_each_cpu_mask`), through the function-call IPI; with `wait`,
/// returns once every one has run it. Call from a task with IRQs on. Errors name a mask with no
/// CPU of the instance, or a caller with IRQs off (waiting then could deadlock).
#[track_caller]
pub fn smp_call_function_many(
    mask: CpuMask,
    func: impl Fn() + Send + Sync + 'static,
    wait: bool,
) -> Result<(), String> {
    let k = this_kernel();
    let mask = check_mask(&k, mask)?;
    if A::irqs_disabled() {
        k.bug("smp_call_function with IRQs disabled", Location::caller());
        return Err(
            "smp_call_function: called with IRQs disabled (it could deadlock waiting); enable them first".into()
        );
    }
    let call = Arc::new(CallData { func: Box::new(func) });
    let _pin = crate::preempt::guard::preempt_disable(); // `me` stays this CPU
    let me = k.raw_cpu_id();
    for cpu in (0..k.cpus.len()).filter(|&c| mask & (1 << c) != 0 && c != me) {
        k.cpus[cpu].ipi.calls.lock().push_back(call.clone());
        send_ipi(&k, cpu, crate::irq_desc::LINE_CALL_FUNCTION);
    }
    if mask & (1 << me) != 0 {
        let _irq = crate::preempt::guard::local_irq_save();
        (call.func)();
    }
    // A target drops its reference after running the call: the sender keeps one until it holds
    // the last, so the memory is freed here (or by a later sender), in task context.
    let mut spins = 0;
    while wait && Arc::strong_count(&call) > 1 {
        A::cpu_relax(&mut spins);
    }
    let mut inflight = k.smp.lock();
    inflight.retain(|c| Arc::strong_count(c) > 1);
    if Arc::strong_count(&call) > 1 {
        inflight.push(call);
    }
    Ok(())
}

/// Runs `func` on CPU `cpu` ([`smp_call_function_many`] with one CPU).
#[track_caller]
pub fn smp_call_function_single(cpu: usize, func: impl Fn() + Send + Sync + 'static, wait: bool) -> Result<(), String> {
    if cpu >= 64 {
        return Err(format!("smp_call_function_single: CPU {cpu} does not exist (cpus= is at most 64)"));
    }
    smp_call_function_many(1 << cpu, func, wait)
}

fn check_mask(k: &Kernel, mask: CpuMask) -> Result<CpuMask, String> {
    let m = mask & k.all_cpus();
    if m == 0 {
        return Err(format!(
            "smp_call_function: mask {mask:#x} names no CPU of this instance (cpus={}; use bits within {:#x})",
            k.cpus.len(),
            k.all_cpus()
        ));
    }
    Ok(m)
}

/// The number of CPUs of the running instance (`num_online_cpus`).
pub fn num_cpus() -> usize {
    this_kernel().cpus.len()
}
