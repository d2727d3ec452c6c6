//! The clocksource: `CLOCK_MONOTONIC` in nanoseconds (a vDSO read, no system call, safe in a
//! signal handler).

/// Nanoseconds since an arbitrary fixed point; never goes backwards.
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-parameter; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
