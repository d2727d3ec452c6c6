//! `SYNC_CORE` rounds for `patch_sync=ipi` on more than one CPU: every other CPU made to
//! execute a serializing instruction after a text write, before it runs the written code.
//!
//! **Mechanism.** A round takes the next generation number ([`round`]), sends an NMI to every
//! other running CPU (the local APIC's ICR, delivery mode NMI, one IPI per CPU) and spins until
//! each has acknowledged that generation. The NMI's handler ([`nmi`], called from the IDT's
//! vector 2) stores the current generation in its CPU's slot; the `iretq` that ends it is the
//! serializing instruction (Intel SDM vol. 3, 9.1.3, "Handling Self- and Cross-Modifying
//! Code": the executing CPU serializes between the write and its first execution of the
//! written bytes), and between the acknowledgement and the `iretq` the CPU runs only the
//! handler's own code. An NMI, unlike a fixed IPI, is taken whatever the target's IF: the
//! patching CPU writes from interrupt context with IF clear and holds the sites' lock, and a
//! CPU spinning with IF clear on that lock (or on any other) still answers, so a round cannot
//! deadlock. Linux's `text_poke_sync` sends ordinary IPIs and waits with interrupts enabled;
//! an NMI is what lets this one wait with them disabled.
//!
//! **Invariants.** Rounds are made under the sites' lock only (one at a time), by a CPU with
//! IF clear. A CPU's slot only grows. A round that waits longer than `SPIN_LIMIT` polls (a
//! CPU that cannot take an NMI: it is not running this image) is a `BUG`: the text is
//! already written, so going on without the serialization would be silent corruption.

use crate::{apic, percpu, smp};
use core::sync::atomic::{AtomicU64, Ordering};

/// The ICR's delivery mode NMI (bits 8-10 = 100b) with the level asserted (bit 14); the
/// vector field is ignored for an NMI.
const ICR_NMI: u32 = (0b100 << 8) | (1 << 14);
/// Polls of the acknowledgements before a round is declared lost (seconds of virtual time).
const SPIN_LIMIT: u64 = 1 << 32;

/// The last round's generation.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// Each CPU's last acknowledged generation, by CPU number.
static SEEN: [AtomicU64; smp::MAX_CPUS] = [const { AtomicU64::new(0) }; smp::MAX_CPUS];
/// NMIs that found no round to acknowledge (none is sent otherwise: counted, not fatal).
static STRAY: AtomicU64 = AtomicU64::new(0);
/// The rounds' summed time, from the first NMI sent to the last acknowledgement (TSC cycles).
static CYCLES: AtomicU64 = AtomicU64::new(0);

/// One serializing round on every other running CPU; returns once each has acknowledged.
/// Call with IF clear, under the sites' lock. On one CPU there is nothing to do (`false`).
pub fn round() -> bool {
    let cpus = smp::cpus();
    if cpus <= 1 {
        return false;
    }
    let me = percpu::cpu_number();
    let t0 = crate::cpu::rdtsc();
    let generation = GENERATION.fetch_add(1, Ordering::AcqRel) + 1;
    let others = || (0..cpus).filter(move |&c| c != me);
    for cpu in others() {
        if let Some(id) = smp::apic_id(cpu) {
            apic::send_ipi(id, ICR_NMI);
        }
    }
    for cpu in others() {
        let mut spins = 0u64;
        while SEEN[cpu as usize].load(Ordering::Acquire) < generation {
            spins += 1;
            if spins == SPIN_LIMIT {
                crate::kprintln!("DIE: BUG: CPU {cpu} did not answer the SYNC_CORE NMI of round {generation}");
                crate::serial::exit(crate::exit_codes::PANIC);
            }
            core::hint::spin_loop();
        }
    }
    CYCLES.fetch_add(crate::cpu::rdtsc() - t0, Ordering::Relaxed);
    true
}

/// The NMI's handler: acknowledges the current round for this CPU. The `iretq` after it
/// serializes. Then one `pause`, the spin-wait hint: the round's CPU is spinning for this
/// acknowledgement, and under QEMU's round-robin TCG a `pause` ends this vCPU's turn, so the
/// waiter runs next instead of after this CPU's whole time slice (about 95,000 instructions
/// of it, measured, when the CPU was busy); on a real CPU it is a few dozen cycles.
pub fn nmi() {
    let generation = GENERATION.load(Ordering::Acquire);
    let slot = &SEEN[percpu::cpu_number() as usize];
    if slot.load(Ordering::Relaxed) >= generation {
        STRAY.fetch_add(1, Ordering::Relaxed);
    }
    slot.fetch_max(generation, Ordering::AcqRel);
    core::hint::spin_loop();
}

/// The rounds made so far, their summed time (TSC cycles), and the NMIs that found none.
pub fn counts() -> (u64, u64, u64) {
    (GENERATION.load(Ordering::Relaxed), CYCLES.load(Ordering::Relaxed), STRAY.load(Ordering::Relaxed))
}
