//! The function-call IPI (Linux's `smp_call_function_single/many`, `kernel/smp.c`); raising
//! IPIs and the reschedule IPI are `ipi.rs`'s.
//!
//! **Mechanism.** A function call is queued in the target's call queue and the target's
//! function-call line raised (`ipi::send_ipi`); the handler runs every queued call in hard-IRQ
//! context and drops its reference to it; a waiting sender spins until it holds the only
//! reference, with its own IRQs on so that calls aimed at it are served meanwhile. A call not
//! waited for stays in the instance's in-flight list until it has run everywhere, and is freed
//! by a later sender, never in a target's interrupt.
//!
//! **Invariant.** A call is queued before its line is raised, so no call is lost (as for every
//! IPI: see `ipi.rs`); the memory of a call is never freed in interrupt context.

pub(crate) mod ipi;
pub(crate) mod state;

use crate::arch::{Arch, A};
use crate::instance::{this_kernel, Kernel};
use crate::task::CpuMask;
use alloc::sync::Arc;
use alloc::{boxed::Box, format, string::String};
use core::panic::Location;
use core::sync::atomic::Ordering;
use ipi::send_ipi;
use state::CallData;

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
