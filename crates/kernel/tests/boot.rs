//! Boot, spawn, join, sleep, shutdown; several instances side by side.

use kernel::{run, spawn, Config, TaskBuilder};

#[test]
fn init_result_is_returned() {
    let r = run(Config::default(), || 42).unwrap();
    assert_eq!(r.init, Ok(42));
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
    assert!(r.log.contains("booting 1 CPU"), "{}", r.log);
}

#[test]
fn spawn_and_join() {
    let r = run(Config::default(), || {
        let a = spawn(TaskBuilder::new("a"), || 1);
        let b = spawn(TaskBuilder::new("b").fifo(10), || 2);
        a.join().unwrap() + b.join().unwrap()
    })
    .unwrap();
    assert_eq!(r.init, Ok(3));
    assert_eq!(r.tasks.len(), 4, "init, ksoftirqd/0, a, b");
    assert_eq!(r.tasks[1].name, "ksoftirqd/0");
}

#[test]
fn sleep_wakes_after_deadline() {
    let r = run(Config::default(), || {
        let t0 = kernel::time::now_ns();
        kernel::time::sleep_ns(3_000_000);
        (kernel::time::now_ns() - t0 >= 3_000_000) as i64
    })
    .unwrap();
    assert_eq!(r.init, Ok(1));
}

#[test]
fn panicking_task_reports_its_message() {
    let r = run(Config::default(), || {
        let t = spawn(TaskBuilder::new("oops"), || panic!("deliberate"));
        match t.join() {
            Err(m) if m.contains("deliberate") => 7,
            _ => 0,
        }
    })
    .unwrap();
    assert_eq!(r.init, Ok(7));
}

#[test]
fn instances_side_by_side() {
    let hs: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                run(Config::default(), move || {
                    kernel::time::sleep_ns(2_000_000);
                    i
                })
            })
        })
        .collect();
    for (i, h) in hs.into_iter().enumerate() {
        assert_eq!(h.join().unwrap().unwrap().init, Ok(i as i64));
    }
}

#[test]
fn syscalls_are_counted_per_task() {
    let r = run(Config::default(), || {
        spawn(TaskBuilder::new("three"), || {
            for _ in 0..3 {
                kernel::syscall(|| kernel::time::sleep_ns(100_000)); // sleeps inside: switches
            }
            0
        })
        .join()
        .unwrap()
    })
    .unwrap();
    let t = r.tasks.iter().find(|t| t.name == "three").unwrap();
    assert_eq!(t.stats.syscalls, 3, "{:?}", t.stats);
}

/// Every CPU is up before any task runs (a CPU that came up first may pull `init` and run it
/// while later CPUs are still coming up): `init` may at once register a device on every CPU.
#[test]
fn every_cpu_is_up_when_init_first_runs() {
    for _ in 0..20 {
        let r = run(Config { cpus: 6, ..Config::default() }, || {
            (0..6).map(|c| kernel::device::Device::register_on(c, &format!("dev{c}"), || {}).line() as i64).count()
                as i64
        })
        .unwrap();
        assert_eq!(r.init, Ok(6));
        assert!(r.bugs.is_empty(), "{:?}", r.bugs);
    }
}
