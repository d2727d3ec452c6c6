//! Host scheduling for the lab: a host thread's policy (SCHED_FIFO for the host peer's probes,
//! a nice value for the threads that run workloads, a kernel instance's CPU thread included),
//! the host CPUs a lab thread may use and its pinning, and an absolute-deadline sleep.
//!
//! **Mechanism.** [`set_best_rt_policy`] asks the host for SCHED_FIFO at a priority through
//! `pthread_setschedparam`; when the host refuses (EPERM without `CAP_SYS_NICE`), it falls back
//! to the best the host allows (SCHED_RR, then nice -20, then the thread's current policy) and
//! says which one it got. [`sleep_until_ns`] is `clock_nanosleep(CLOCK_MONOTONIC,
//! TIMER_ABSTIME)` on `CLOCK_MONOTONIC`, the clock the kernel reads (`kernel::time::now_ns`),
//! which is cyclictest's sleep. [`pin_current_thread`] and [`allowed_cpus`] are
//! `sched_setaffinity`/`sched_getaffinity` for the lab's own host threads (a kernel's CPU
//! threads are pinned by the arch layer).
//!
//! **Invariant.** These calls change only the calling thread. They are system calls of the
//! host (foreign code), so a CPU thread may make them from a task: preemption waits for them.

/// Sets the calling host thread's policy to SCHED_FIFO `prio` or the best the host allows, and
/// returns a description of what it got (e.g. `"SCHED_FIFO 80"`, or `"nice -20 (SCHED_FIFO
/// refused: Operation not permitted)"`).
pub fn set_best_rt_policy(prio: u8) -> String {
    let fifo = set_policy(libc::SCHED_FIFO, prio);
    if fifo.is_ok() {
        return format!("SCHED_FIFO {prio}");
    }
    let why = fifo.err().map(|e| e.to_string()).unwrap_or_default();
    if set_policy(libc::SCHED_RR, prio).is_ok() {
        return format!("SCHED_RR {prio} (SCHED_FIFO refused: {why})");
    }
    // SAFETY: setpriority on the calling thread (tid) with a valid nice value.
    let nice = unsafe { libc::setpriority(libc::PRIO_PROCESS, gettid(), -20) };
    if nice == 0 {
        return format!("SCHED_OTHER nice -20 (SCHED_FIFO refused: {why})");
    }
    format!("SCHED_OTHER nice 0 (SCHED_FIFO refused: {why}; nice -20 refused too)")
}

/// Sets the calling thread's nice value (SCHED_OTHER weight) and returns what it got, e.g.
/// `"SCHED_OTHER nice -20"` or `"SCHED_OTHER nice 0 (nice -20 refused: ...)"`.
pub fn set_nice(nice: i8) -> String {
    // SAFETY: setpriority on the calling thread (its tid) with a nice value in -20..=19.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, gettid(), nice.clamp(-20, 19) as i32) };
    if rc == 0 {
        return format!("SCHED_OTHER nice {nice}");
    }
    let why = std::io::Error::last_os_error();
    // SAFETY: getpriority on the calling thread; errno is not consulted (a nice of -1 is fine).
    let now = unsafe { libc::getpriority(libc::PRIO_PROCESS, gettid()) };
    format!("SCHED_OTHER nice {now} (nice {nice} refused: {why})")
}

/// Puts the calling thread back to SCHED_OTHER (nice unchanged).
pub fn set_normal_policy() {
    let _ = set_policy(libc::SCHED_OTHER, 0);
}

/// The calling thread's host id, as `setpriority` wants it.
fn gettid() -> libc::id_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as libc::id_t }
}

/// Pins the calling lab thread to host CPU `cpu` (`sched_setaffinity`). Fails if the host does
/// not allow it.
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it; the call only reads
    // the set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The host CPU the calling thread is running on now (`sched_getcpu`; `None` if the host does
/// not say).
pub fn current_cpu() -> Option<usize> {
    // SAFETY: sched_getcpu takes no arguments and only reads the calling thread's CPU.
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).ok()
}

/// The host CPUs the calling thread may run on (`sched_getaffinity`; `[0]` if the host does not
/// say).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills the set we own; CPU_ISSET reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

fn set_policy(policy: libc::c_int, prio: u8) -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: prio as libc::c_int };
    // SAFETY: `param` is a valid sched_param; pthread_self() is the calling thread.
    let rc = unsafe { libc::pthread_setschedparam(libc::pthread_self(), policy, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(rc))
    }
}

/// Times the host took the CPU from the calling thread against its will so far
/// (`getrusage(RUSAGE_THREAD).ru_nivcsw`): a change between two reads means the host ran
/// something else on this thread's CPU in between.
pub fn involuntary_switches() -> u64 {
    // SAFETY: a zeroed rusage is a valid out-parameter; RUSAGE_THREAD reads the caller's own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    ru.ru_nivcsw as u64
}

/// Sleeps the calling host thread until `deadline_ns` on `CLOCK_MONOTONIC` in nanoseconds (the
/// clock of `kernel::time::now_ns`): `clock_nanosleep` with `TIMER_ABSTIME`, restarted after a
/// signal.
pub fn sleep_until_ns(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    loop {
        // SAFETY: `ts` is a valid timespec; the remaining-time pointer may be null for
        // TIMER_ABSTIME.
        let rc =
            unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &ts, std::ptr::null_mut()) };
        if rc != libc::EINTR {
            return;
        }
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds, the clock [`sleep_until_ns`] sleeps on.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-parameter; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_until_reaches_the_deadline() {
        let deadline = now_ns() + 2_000_000;
        sleep_until_ns(deadline);
        assert!(now_ns() >= deadline);
        sleep_until_ns(0); // a deadline in the past returns at once
    }

    #[test]
    fn a_lab_thread_pins_to_an_allowed_cpu() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        let last = *cpus.last().unwrap();
        let (pinned, now) =
            std::thread::spawn(move || (pin_current_thread(last).is_ok(), allowed_cpus())).join().unwrap();
        assert!(pinned, "pinning to an allowed CPU ({last}) is always allowed");
        assert_eq!(now, [last]);
    }

    #[test]
    fn best_policy_names_what_it_got() {
        let got = std::thread::spawn(|| {
            let got = set_best_rt_policy(1);
            set_normal_policy();
            got
        })
        .join()
        .unwrap();
        assert!(got.starts_with("SCHED_"), "{got}");
        let got = std::thread::spawn(|| set_nice(5)).join().unwrap();
        assert_eq!(got, "SCHED_OTHER nice 5", "raising nice is always allowed");
    }
}
