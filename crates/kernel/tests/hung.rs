//! The hung-CPU report (`hung_timeout_ms=`): once per idle stretch past the timeout, naming
//! every sleeping task; never when the option is off.

mod common;
use common::{run_with_timeout, RtWakeup};
use kernel::Config;

/// Sleeps in `init` until a device interrupt `wait_ms` from now wakes it: the CPU idles that
/// long with two tasks asleep (it and `ksoftirqd`). Returns the log.
fn idle_for(hung_timeout_ms: u64, wait_ms: u64) -> String {
    let config = Config { hung_timeout_ms, ..Config::default() };
    let r = run_with_timeout(config, 30, move || {
        let wake = RtWakeup::new("late");
        wake.device().raise_at(kernel::time::now_ns() + wait_ms * 1_000_000);
        wake.wait();
        0
    });
    assert_eq!(r.init, Ok(0));
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
    r.log
}

#[test]
fn a_long_idle_stretch_with_sleeping_tasks_is_reported_once() {
    let log = idle_for(100, 600);
    let reports: Vec<&str> = log.lines().filter(|l| l.contains("INFO: CPU 0 idle for")).collect();
    assert_eq!(reports.len(), 1, "one report per idle stretch:\n{log}");
    assert!(reports[0].contains("2 tasks asleep") && reports[0].contains("hung_timeout_ms=100"), "{log}");
    assert!(log.lines().any(|l| l.contains("INFO:   pid 1 init: Interruptible")), "the sleeper is named:\n{log}");
}

#[test]
fn no_report_when_off_or_when_the_wait_is_shorter() {
    assert!(!idle_for(0, 300).contains("INFO: CPU 0 idle"), "hung_timeout_ms=0 is off");
    assert!(!idle_for(2_000, 100).contains("INFO: CPU 0 idle"), "a 100 ms wait is below a 2 s timeout");
}

#[test]
fn the_boot_option_parses() {
    assert_eq!(Config::from_cmdline("hung_timeout_ms=250").unwrap().hung_timeout_ms, 250);
    let e = Config::from_cmdline("hung_timeout_ms=soon").unwrap_err().0;
    assert!(e.contains("hung_timeout_ms=soon: expected a whole number"), "{e}");
}
