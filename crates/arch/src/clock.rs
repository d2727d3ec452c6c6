//! The clocksource: `CLOCK_MONOTONIC` in nanoseconds (a vDSO read, no system call, safe in a
//! signal handler); and how often the host took the calling thread away.

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
