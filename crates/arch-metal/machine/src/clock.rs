//! Time: the TSC, calibrated once against the PIT.
//!
//! **Mechanism.** [`calibrate`] gates PIT channel 2 (ports `0x42`/`0x43`, the speaker gate
//! `0x61`) for a one-shot count of [`LATCH`] = 11,931 ticks of its 1.193182 MHz clock (about
//! 10 ms) and reads the TSC at both ends of the wait for `OUT2` to rise, as Linux's
//! `pit_calibrate_tsc` does; the TSC frequency is the least difference of three such windows
//! (a host stall while the guest polls can only lengthen a window) times the PIT's rate over
//! the latch, rounded to whole kHz as Linux's `tsc_khz` is. The latch's own length, not 1/100 s:
//! 11,931 ticks are 9.99931 ms, and taking them for 10 ms made every TSC 69 ppm slow (999,931
//! kHz under QEMU's `-icount shift=0`, whose TSC counts one per instruction at exactly 1 GHz of
//! virtual time). There the rounded result is exactly 1,000,000 kHz, the factor below is
//! exactly 1.0, and `now_ns` is the TSC since calibration: ns = cycles = instructions. The PIT, not CPUID `0x15`/`0x16`: under QEMU TCG
//! those leaves are zero or describe the host's nominal clock, and a guest cannot tell which,
//! whereas the PIT's rate is fixed by the PC architecture and QEMU emulates it from the host's
//! clock, as it does the TSC. [`now_ns`] is the TSC since calibration scaled by a 32.32 fixed
//! point factor.
//!
//! **Invariant.** [`calibrate`] runs once, at boot, with interrupts off, before any reader;
//! afterwards the factor never changes, so [`now_ns`] is monotonic on one CPU.

use crate::cpu;
use core::sync::atomic::{AtomicU64, Ordering};

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static TSC_BASE: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds per TSC cycle, 32.32 fixed point.
static NS_PER_CYCLE_FP: AtomicU64 = AtomicU64::new(0);

/// The PIT's input clock, Hz.
const PIT_HZ: u64 = 1_193_182;
/// The calibration window: 1/100 s of the PIT's clock, in its ticks (truncated: 11,931).
const LATCH: u64 = PIT_HZ / 100;

/// Measures the TSC frequency against PIT channel 2 (see the module's description).
pub fn calibrate() -> u64 {
    if TSC_HZ.load(Ordering::Relaxed) != 0 {
        return TSC_HZ.load(Ordering::Relaxed);
    }
    // The least of three windows: a host stall while the guest polls can only lengthen one.
    let cycles = (0..3).map(|_| pit_window()).min().unwrap_or(0);
    let hz = window_hz(cycles);
    TSC_HZ.store(hz, Ordering::Relaxed);
    NS_PER_CYCLE_FP.store(((1_000_000_000u128 << 32) / hz as u128) as u64, Ordering::Relaxed);
    TSC_BASE.store(cpu::rdtsc(), Ordering::Relaxed);
    hz
}

/// The TSC frequency (Hz, in whole kHz) that counts `cycles` across [`LATCH`] PIT ticks.
fn window_hz(cycles: u64) -> u64 {
    let khz = (cycles as u128 * PIT_HZ as u128 + (LATCH * 1000 / 2) as u128) / (LATCH * 1000) as u128;
    khz as u64 * 1000
}

/// TSC cycles across one PIT channel 2 one-shot of [`LATCH`] ticks.
fn pit_window() -> u64 {
    let latch = LATCH;
    // SAFETY: the PIT's and the speaker gate's ports exist on every PC (QEMU's q35 included);
    // only channel 2 (unused by anything else) is programmed.
    unsafe {
        let gate = cpu::inb(0x61);
        cpu::outb(0x61, (gate & !0x02) | 0x01); // gate channel 2 on, speaker off
        cpu::outb(0x43, 0xB0); // channel 2, lobyte/hibyte, mode 0 (one-shot), binary
        cpu::outb(0x42, (latch & 0xFF) as u8); // count, low byte
        cpu::outb(0x42, (latch >> 8) as u8); // high byte: counting starts
        let t0 = cpu::rdtsc();
        while cpu::inb(0x61) & 0x20 == 0 {} // OUT2 rises at terminal count
        let t1 = cpu::rdtsc();
        cpu::outb(0x61, gate);
        t1 - t0
    }
}

/// The calibrated TSC frequency, Hz.
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Cycles to nanoseconds.
#[inline]
pub fn cycles_ns(c: u64) -> u64 {
    ((c as u128 * NS_PER_CYCLE_FP.load(Ordering::Relaxed) as u128) >> 32) as u64
}

/// Nanoseconds to cycles.
pub fn ns_cycles(ns: u64) -> u64 {
    (ns as u128 * tsc_hz() as u128 / 1_000_000_000) as u64
}

/// Nanoseconds since calibration.
#[inline]
pub fn now_ns() -> u64 {
    cycles_ns(cpu::rdtsc().wrapping_sub(TSC_BASE.load(Ordering::Relaxed)))
}

/// The TSC value at `ns` on [`now_ns`]'s scale.
pub fn tsc_at(ns: u64) -> u64 {
    TSC_BASE.load(Ordering::Relaxed) + ns_cycles(ns)
}
