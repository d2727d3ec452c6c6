//! The watch on a lab run: a kernel instance that does not finish in time is a hang, reported
//! as an error instead of stopping the lab forever.
//!
//! **Mechanism.** [`run_watched`] runs `kernel::run` on a host thread of its own and waits for
//! its report at most [`hang_limit`]: twice the run's planned length plus [`HANG_GRACE_NS`].
//!
//! **Invariant.** The caller always gets an answer within the limit: the report, or an error
//! naming the limit (the hung instance, whose tasks cannot be killed, is left behind idle).

use crate::measure::{ProbeSpec, Stop};
use kernel::Config;

/// Time a run may take past twice its planned length before the lab calls the instance hung.
pub(crate) const HANG_GRACE_NS: u64 = 60_000_000_000;

/// How long a run with this stop condition may take: twice its planned length (a probe's
/// interval times its loops, or the duration) plus [`HANG_GRACE_NS`].
pub(crate) fn hang_limit(stop: Stop, probes: &[ProbeSpec]) -> std::time::Duration {
    let planned = match stop {
        Stop::After(ns) => ns,
        Stop::Loops(n) => probes.iter().map(|p| p.interval_ns.saturating_mul(n)).max().unwrap_or(0),
    };
    std::time::Duration::from_nanos(planned.saturating_mul(2).saturating_add(HANG_GRACE_NS))
}

/// `kernel::run` on a host thread of its own, watched: a run that has not ended within `limit`
/// is reported as a hang (an error naming the limit) instead of stopping the whole lab
/// forever. The hung instance cannot be killed (its tasks are host-thread contexts); it is
/// left behind, idle, and the caller's error ends the command.
pub(crate) fn run_watched(
    config: Config,
    limit: std::time::Duration,
    init: impl FnOnce() -> i64 + Send + 'static,
) -> Result<kernel::RunReport, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("lab-instance".into())
        .spawn(move || {
            let _ = tx.send(kernel::run(config, init));
        })
        .map_err(|e| format!("cannot start a host thread for the kernel instance: {e}"))?;
    match rx.recv_timeout(limit) {
        Ok(report) => report.map_err(|e| e.to_string()),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "the kernel instance did not finish within {:.0} s (twice the run's length plus {} s): it hung, a bug of atomkernel; please report it with the command line (the instance is left behind)",
            limit.as_secs_f64(),
            HANG_GRACE_NS / 1_000_000_000
        )),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            Err("the kernel instance's host thread panicked (see the message above)".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernel::Config;

    /// A run that never ends is reported as hung within its limit, not waited for forever.
    #[test]
    fn a_hung_instance_is_an_error_not_a_hang() {
        let limit = std::time::Duration::from_millis(500);
        let e = run_watched(Config::default(), limit, || {
            let wq = kernel::WaitQueue::new();
            wq.wait_event(|| false); // never woken: the instance hangs
            0
        })
        .unwrap_err();
        assert!(e.contains("did not finish within 0 s") && e.contains("hung"), "{e}");
    }

    #[test]
    fn the_hang_limit_follows_the_runs_length() {
        let p = [ProbeSpec { prio: 80, interval_ns: 1_000_000 }];
        let grace = std::time::Duration::from_nanos(HANG_GRACE_NS);
        assert_eq!(hang_limit(Stop::After(2_000_000_000), &p), grace + std::time::Duration::from_secs(4));
        assert_eq!(hang_limit(Stop::Loops(1000), &p), grace + std::time::Duration::from_secs(2));
    }
}
