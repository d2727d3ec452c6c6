//! Devices: a device registered with a timer has a host thread for its timed raises; one
//! registered to be raised only (`Device::register_raised_on`) has none, still interrupts its
//! CPU when raised, and refuses `raise_at`.

use kernel::device::Device;
use kernel::{run, Config};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The host threads of this process named `name` (a device timer's is `dev-NAME`).
fn host_threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("procfs")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

#[test]
fn a_device_raised_only_has_no_host_thread_and_still_interrupts() {
    let r = run(Config { cpus: 2, ..Config::default() }, || {
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        let quiet = Device::register_raised_on(1, "rawonly", move || {
            h.fetch_add(1, Ordering::Relaxed);
        });
        let timed = Device::register_on(0, "timedev", || {});
        let threads = (host_threads_named("dev-rawonly"), host_threads_named("dev-timedev"));
        let raiser = quiet.raiser();
        std::thread::spawn(move || raiser.raise()).join().unwrap();
        while hits.load(Ordering::Relaxed) == 0 {
            kernel::sched_yield();
        }
        drop((quiet, timed));
        assert_eq!(threads, (0, 1), "(dev-rawonly, dev-timedev) host threads");
        hits.load(Ordering::Relaxed) as i64
    })
    .unwrap();
    assert_eq!(r.init, Ok(1));
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
}

#[test]
fn raise_at_on_a_device_without_a_timer_is_refused() {
    let r = run(Config::default(), || {
        let dev = Device::register_raised_on(0, "notimer", || {});
        dev.raise_at(kernel::time::now_ns() + 1_000_000);
        0
    })
    .unwrap();
    let e = r.init.unwrap_err();
    assert!(e.contains("device notimer: raise_at on a device registered without a timer"), "{e}");
}
