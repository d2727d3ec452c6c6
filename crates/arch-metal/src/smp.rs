//! The image's SMP scenario (`image.run=smp`, with `cpus=2` and QEMU's `-smp 2`): the `rt`
//! scenario placed as the hosted one on 2 CPUs (`crate::scenarios::rt`), a remote wake-up
//! through the reschedule IPI, and the function-call IPI's round trip.
//!
//! **Mechanism.** `remote_wakeup`: an RT task pinned to CPU 1 sleeps on a wait queue; a task
//! pinned to CPU 0 stamps the TSC and wakes it, so the core's wake-up of a task of another CPU
//! sends CPU 1 the reschedule IPI (`irq_raise` to CPU 1's line: a fixed IPI to its APIC ID);
//! the RT task stamps the TSC as it runs: the wake-up to the task running, in cycles (in
//! instructions under `-icount shift=0`). `ipi_round_trip`: CPU 0 runs
//! `smp_call_function_single(1, .., wait)` 100 times: each is a function-call IPI to CPU 1
//! and CPU 0 waiting for its completion; min and median in cycles. Then the register torture
//! (`crate::torture`) on CPU 1: both its tasks bound there, in user mode under every model
//! and in kernel mode under `full`. One JSON line each.
//!
//! **Invariant.** Every task it spawns finishes (the run's summary counts them).

use alloc::sync::Arc;
use alloc::vec::Vec;
use arch_metal::kprintln;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::{PreemptModel, TaskBuilder, WaitQueue};

/// The TSC when CPU 0 woke the RT task (0: not yet).
static WOKE_TSC: AtomicU64 = AtomicU64::new(0);

/// The scenario (see the module's description); the failed checks.
pub(crate) fn init(model: PreemptModel, _bh: kernel::BhMode) -> i64 {
    let mut failed =
        i64::from(!crate::scenarios::rt(model, 2)) + i64::from(!remote_wakeup()) + i64::from(!ipi_round_trip());
    // the register torture on CPU 1 (an AP): user mode under every model, kernel mode where
    // an interrupt's return preempts kernel code
    failed += i64::from(!crate::torture::torture_on(false, 1));
    if model == PreemptModel::Full {
        failed += i64::from(!crate::torture::torture_on(true, 1));
    }
    failed
}

fn remote_wakeup() -> bool {
    let wq = Arc::new(WaitQueue::new());
    let w = wq.clone();
    let rt = kernel::spawn(TaskBuilder::new("rt-cpu1").fifo(50).cpus(0b10), move || {
        let before = kernel::smp_processor_id() as u64;
        w.wait_event(|| WOKE_TSC.load(Ordering::Acquire) != 0);
        let cycles = arch_metal::cpu::rdtsc() - WOKE_TSC.load(Ordering::Acquire);
        let after = kernel::smp_processor_id() as u64;
        (before << 48 | after << 40 | cycles.min((1 << 40) - 1)) as i64
    });
    let w = wq.clone();
    let waker = kernel::spawn(TaskBuilder::new("waker-cpu0").cpus(0b01), move || {
        kernel::time::sleep_ns(2_000_000); // the RT task is asleep on CPU 1 by then
        WOKE_TSC.store(arch_metal::cpu::rdtsc(), Ordering::Release);
        w.wake_up();
        kernel::smp_processor_id() as i64
    });
    let (r, k) = (rt.join(), waker.join());
    let (v, waker_cpu) = (r.clone().unwrap_or(-1), k.clone().unwrap_or(-1));
    let (rt_before, rt_after, cycles) = ((v >> 48) & 0xFF, (v >> 40) & 0xFF, v & ((1 << 40) - 1));
    let ok = v >= 0 && waker_cpu == 0 && rt_before == 1 && rt_after == 1;
    kprintln!(
        "{{\"test\":\"remote_wakeup\",\"waker_cpu\":{waker_cpu},\"rt_cpu\":{rt_after},\"wake_to_run_cycles\":{cycles},\"ok\":{ok}}}"
    );
    ok
}

fn ipi_round_trip() -> bool {
    let on_cpu1 = Arc::new(AtomicU64::new(0));
    let t = kernel::spawn(TaskBuilder::new("ipi-cpu0").cpus(0b01), move || {
        let mut rounds = Vec::new();
        for _ in 0..100 {
            let o = on_cpu1.clone();
            let t0 = arch_metal::cpu::rdtsc();
            let r = kernel::smp::smp_call_function_single(
                1,
                move || {
                    if kernel::smp_processor_id() == 1 {
                        o.fetch_add(1, Ordering::AcqRel);
                    }
                },
                true,
            );
            rounds.push(arch_metal::cpu::rdtsc() - t0);
            if r.is_err() {
                return -1;
            }
        }
        rounds.sort_unstable();
        let ran = on_cpu1.load(Ordering::Acquire);
        kprintln!(
            "{{\"test\":\"ipi_round_trip_cycles\",\"rounds\":100,\"ran_on_cpu1\":{ran},\"min\":{},\"median\":{},\"max\":{},\"ok\":{}}}",
            rounds[0],
            rounds[50],
            rounds[99],
            ran == 100
        );
        i64::from(ran != 100)
    });
    t.join() == Ok(0)
}
