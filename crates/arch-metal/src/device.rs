//! The image's device scenario (`image.run=device`): the device timer's interrupts, armed on
//! CPU 0, arrive on the device's CPU through the HPET comparator and the IOAPIC
//! (`arch_metal::hpet`), and a deadline already past fires at once.
//!
//! **Mechanism.** Two devices are registered on the last CPU running (CPU 1 under QEMU's
//! `-smp 2` with `cpus=2`, else CPU 0); a task pinned to CPU 0 arms the first 10 ms ahead
//! and then the second 1 ms in the past, and spins (at most 1 s) until both handlers ran.
//! Each handler records its CPU and its place in the order of arrival. The past deadline's
//! interrupt must come first (at once, long before the other's; were both due when the
//! CPU takes the interrupt, as after a host stall of its thread without `-icount`, one
//! interrupt would serve both in line order, the future's first), both on the devices' CPU, and
//! the device vector's interrupts counted per CPU must have grown there and nowhere else. One
//! JSON line, `device`.
//!
//! **Invariant.** The spin is bounded; every task it spawns finishes.

use arch_metal::kprintln;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::device::Device;
use kernel::{PreemptModel, TaskBuilder};

/// How far ahead the future deadline is, and how far back the past one.
const AHEAD_NS: u64 = 10_000_000;
const BEHIND_NS: u64 = 1_000_000;

/// One device's handler's record: its CPU and its place in the order of arrival (0: not yet).
struct Arrival {
    cpu: AtomicU64,
    order: AtomicU64,
    ns: AtomicU64,
}

impl Arrival {
    const fn new() -> Self {
        Arrival { cpu: AtomicU64::new(u64::MAX), order: AtomicU64::new(0), ns: AtomicU64::new(0) }
    }
}

static ARRIVALS: AtomicU64 = AtomicU64::new(0);
static PAST: Arrival = Arrival::new();
static FUTURE: Arrival = Arrival::new();

fn handler(a: &'static Arrival) -> impl Fn() + Send + Sync + 'static {
    move || {
        if a.order.load(Ordering::Acquire) == 0 {
            a.cpu.store(kernel::raw_smp_processor_id() as u64, Ordering::Release);
            a.ns.store(kernel::time::now_ns(), Ordering::Release);
            a.order.store(ARRIVALS.fetch_add(1, Ordering::AcqRel) + 1, Ordering::Release);
        }
    }
}

/// The scenario (see the module's description); the failed checks.
pub(crate) fn init(_model: PreemptModel, _bh: kernel::BhMode) -> i64 {
    let target = arch_metal::smp::cpus() as usize - 1;
    let t = kernel::spawn(TaskBuilder::new("device-armer").cpus(0b01), move || {
        let future = Device::register_on(target, "hpet-future", handler(&FUTURE));
        let past = Device::register_on(target, "hpet-past", handler(&PAST));
        let before: alloc::vec::Vec<u64> = (0..=target as u32).map(arch_metal::hpet::delivered).collect();
        let armed_cpu = kernel::raw_smp_processor_id();
        let now = kernel::time::now_ns();
        future.raise_at(now + AHEAD_NS);
        let past_armed = kernel::time::now_ns();
        past.raise_at(past_armed - BEHIND_NS);
        while ARRIVALS.load(Ordering::Acquire) < 2 && kernel::time::now_ns() < now + 1_000_000_000 {
            core::hint::spin_loop();
        }
        let grown: alloc::vec::Vec<u64> =
            (0..=target as u32).map(|c| arch_metal::hpet::delivered(c) - before[c as usize]).collect();
        let failed = report(target, armed_cpu, past_armed, &grown);
        drop((future, past));
        failed
    });
    i64::from(t.join() != Ok(0))
}

/// Prints the `device` line; 0 if every check held.
fn report(target: usize, armed_cpu: usize, past_armed: u64, grown: &[u64]) -> i64 {
    let (past_order, future_order) = (PAST.order.load(Ordering::Acquire), FUTURE.order.load(Ordering::Acquire));
    let (past_cpu, future_cpu) = (PAST.cpu.load(Ordering::Acquire), FUTURE.cpu.load(Ordering::Acquire));
    let past_to_irq_ns = PAST.ns.load(Ordering::Acquire).saturating_sub(past_armed);
    let hpet = arch_metal::hpet::present();
    let only_target = grown.iter().enumerate().all(|(c, &n)| if c == target { n >= 2 } else { n == 0 });
    let ok = hpet
        && past_order == 1
        && future_order == 2
        && past_cpu == target as u64
        && future_cpu == target as u64
        && only_target;
    kprintln!(
        "{{\"test\":\"device\",\"source\":\"{}\",\"armed_cpu\":{armed_cpu},\"target_cpu\":{target},\"past_cpu\":{past_cpu},\
         \"future_cpu\":{future_cpu},\"past_order\":{past_order},\"future_order\":{future_order},\
         \"past_to_irq_ns\":{past_to_irq_ns},\"device_vector_irqs\":{grown:?},\"ok\":{ok}}}",
        if hpet { "hpet" } else { "apic" }
    );
    i64::from(!ok)
}
