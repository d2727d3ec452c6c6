//! The clocksource: `CLOCK_MONOTONIC` in nanoseconds (a vDSO read, no system call, safe in a
//! signal handler); the TSC for timing short stretches (a third to a half of the vDSO read's
//! cost here), converted with a factor measured against `CLOCK_MONOTONIC` once per process;
//! and how often the host took the calling thread away.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Nanoseconds since an arbitrary fixed point; never goes backwards.
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-parameter; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The calling thread's involuntary context switches so far (`getrusage(RUSAGE_THREAD)`):
/// each is the host taking the CPU's thread away. A system call; safe in a signal handler.
pub fn thread_preempted() -> u64 {
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage; RUSAGE_THREAD reads the caller's own counts.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    ru.ru_nivcsw as u64
}

/// The time-stamp counter (`rdtsc`): constant-rate and synchronised across cores on the hosts
/// atomkernel runs on (`constant_tsc`, `nonstop_tsc`); only differences are meaningful.
#[inline(always)]
pub fn cycles() -> u64 {
    // SAFETY: `rdtsc` reads a counter; it has no preconditions and touches no memory.
    unsafe { std::arch::x86_64::_rdtsc() }
}

/// Nanoseconds per cycle, in 32.32 fixed point (0 until measured).
static NS_PER_CYCLE_Q32: AtomicU64 = AtomicU64::new(0);
static CALIBRATED: OnceLock<()> = OnceLock::new();

/// Measures the TSC's rate against `CLOCK_MONOTONIC` over about 2 ms, once per process (later
/// calls return at once). Call outside signal context before [`cycles_ns`] is needed: CPU
/// bring-up does.
pub fn calibrate() {
    CALIBRATED.get_or_init(|| {
        let (t0, c0) = pair();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let (t1, c1) = pair();
        let q = (((t1 - t0) as u128) << 32) / (c1 - c0).max(1) as u128;
        NS_PER_CYCLE_Q32.store(q as u64, Ordering::Relaxed);
    });
}

/// A (nanoseconds, cycles) pair read back to back; a pair the host split (the reads around
/// the cycle count more than 2 us apart) is taken again.
fn pair() -> (u64, u64) {
    loop {
        let (t0, c, t1) = (now_ns(), cycles(), now_ns());
        if t1 - t0 < 2_000 {
            return (t0 / 2 + t1 / 2, c);
        }
    }
}

/// `c` cycles of [`cycles`] in nanoseconds. Signal-safe.
#[inline]
pub fn cycles_ns(c: u64) -> u64 {
    ((c as u128 * NS_PER_CYCLE_Q32.load(Ordering::Relaxed) as u128) >> 32) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cycles converted agree with the monotonic clock over a stretch (within 1%; each end's
    /// pair is read within 2 us).
    #[test]
    fn cycles_convert_to_the_monotonic_clocks_nanoseconds() {
        calibrate();
        let (t0, c0) = pair();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (t1, c1) = pair();
        let (ns, conv) = ((t1 - t0) as f64, cycles_ns(c1 - c0) as f64);
        assert!((conv / ns - 1.0).abs() < 0.01, "{conv} ns from cycles against {ns} ns");
    }
}
