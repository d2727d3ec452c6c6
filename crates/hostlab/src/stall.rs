//! The host-stall watcher: stretches in which the host ran nothing of ours at all.
//!
//! **Mechanism.** [`Watcher::start`] starts one host thread at SCHED_FIFO 99 (the lab's top
//! priority, above every probe) that sleeps to an absolute deadline every [`PERIOD_NS`] with
//! `clock_nanosleep(TIMER_ABSTIME)`, as a cyclictest thread does, and keeps every wakeup at
//! least [`STALL_NS`] late as a [`Stall`]: from the deadline to the wakeup. A thread of the
//! highest real-time priority that wakes that late was held off by something no priority of
//! ours can beat: a hypervisor that stopped the vCPU (this VM's stalls of about 4.5 ms), a host
//! kernel section that does not preempt (`preempt=none` hosts), an interrupt storm. The lab
//! asks, after each run, which stalls overlapped it ([`Watcher::stalls_between`]). The
//! period bounds what is missed: a stall longer than [`PERIOD_NS`] always contains a
//! deadline of the watcher, so it is always seen; a shorter one is seen when it does.
//!
//! **Invariant.** The watcher changes no other thread: its only effect on the measured
//! subjects is its own wakeup every [`PERIOD_NS`] (a few µs on one host core). Without
//! SCHED_FIFO (no `CAP_SYS_NICE`) its lateness would be its own scheduling, not a stall, so it
//! does not start ([`Watcher::start`] says why) and the lab reports no stalls instead of
//! wrong ones.

use crate::sched;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The watcher's period: every stall longer than this is seen.
pub const PERIOD_NS: u64 = 2_000_000;
/// A wakeup this late is a stall.
pub const STALL_NS: u64 = 1_000_000;
/// Stalls kept at most (one per period for 200 s); later ones are counted in
/// [`Watcher::dropped`] only.
const MAX_KEPT: usize = 100_000;

/// One stall: the watcher's deadline and the moment it ran (`CLOCK_MONOTONIC` ns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stall {
    pub from_ns: u64,
    pub to_ns: u64,
}

impl Stall {
    /// How long the host held the watcher off.
    pub fn ns(&self) -> u64 {
        self.to_ns - self.from_ns
    }
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    stalls: Mutex<Vec<Stall>>,
    dropped: std::sync::atomic::AtomicU64,
}

/// The running watcher; dropping it stops and joins its thread (within one period).
pub struct Watcher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Starts the watcher thread at SCHED_FIFO 99. `Err` says why there is none: the host
    /// refused SCHED_FIFO, or no thread could be started.
    pub fn start() -> Result<Watcher, String> {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("lab-stall-watch".into())
            .spawn(move || {
                let policy = sched::set_best_rt_policy(99);
                let ok = policy == "SCHED_FIFO 99";
                let _ = tx.send(if ok { Ok(()) } else { Err(policy) });
                if ok {
                    watch(&s);
                }
            })
            .map_err(|e| format!("cannot start the stall watcher's thread: {e}"))?;
        match rx.recv() {
            Ok(Ok(())) => Ok(Watcher { shared, thread: Some(thread) }),
            Ok(Err(policy)) => {
                let _ = thread.join();
                Err(format!("no host-stall watcher: it needs SCHED_FIFO 99 and got {policy}"))
            }
            Err(_) => Err("the stall watcher's thread ended before it started".into()),
        }
    }

    /// The stalls that overlap `[from_ns, to_ns]`, oldest first.
    pub fn stalls_between(&self, from_ns: u64, to_ns: u64) -> Vec<Stall> {
        let all = self.shared.stalls.lock().unwrap_or_else(|e| e.into_inner());
        all.iter().filter(|s| s.to_ns >= from_ns && s.from_ns <= to_ns).copied().collect()
    }

    /// Stalls seen but not kept (past the first 100,000).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The watcher's loop: one deadline per period, every late wakeup kept.
fn watch(s: &Shared) {
    let mut next = sched::now_ns() + PERIOD_NS;
    while !s.stop.load(Ordering::Relaxed) {
        sched::sleep_until_ns(next);
        let now = sched::now_ns();
        if now >= next + STALL_NS {
            let mut v = s.stalls.lock().unwrap_or_else(|e| e.into_inner());
            if v.len() < MAX_KEPT {
                v.push(Stall { from_ns: next, to_ns: now });
            } else {
                s.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        // The next deadline after now: a stall of several periods is one stall, not several.
        next += PERIOD_NS * (now.saturating_sub(next) / PERIOD_NS + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The watcher runs where SCHED_FIFO is allowed and answers by overlap: no stall is made
    /// up for a quiet stretch (a stall seen is real: it is printed), and one stopped watcher
    /// leaves no thread behind.
    #[test]
    fn the_watcher_reports_stalls_by_overlap() {
        let w = match Watcher::start() {
            Ok(w) => w,
            Err(e) => {
                assert!(e.contains("needs SCHED_FIFO 99"), "{e}");
                return crate::testing::skip(&e);
            }
        };
        let t0 = sched::now_ns();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let t1 = sched::now_ns();
        for s in w.stalls_between(t0, t1) {
            assert!(s.ns() >= STALL_NS && s.to_ns >= t0 && s.from_ns <= t1, "{s:?}");
        }
        assert!(w.stalls_between(t1 + 1_000_000_000, t1 + 2_000_000_000).is_empty(), "nothing in the future");
        drop(w);
        let names: Vec<String> = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .collect();
        assert!(!names.iter().any(|n| n.trim_end() == "lab-stall-watch"), "{names:?}");
    }

    #[test]
    fn stalls_overlapping_a_window_are_those_that_touch_it() {
        let w = Watcher { shared: Arc::new(Shared::default()), thread: None };
        w.shared.stalls.lock().unwrap().extend([
            Stall { from_ns: 10, to_ns: 20 },
            Stall { from_ns: 30, to_ns: 40 },
            Stall { from_ns: 50, to_ns: 60 },
        ]);
        let got = |a, b| w.stalls_between(a, b).iter().map(|s| s.from_ns).collect::<Vec<_>>();
        assert_eq!(got(20, 30), [10, 30]);
        assert_eq!(got(41, 49), Vec::<u64>::new());
        assert_eq!(got(0, 100), [10, 30, 50]);
    }
}
