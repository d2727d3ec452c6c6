//! Oops containment and the panic: each fault kind kills only its task (a bystander and an RT
//! task finish, the process exits 0), and under `panic_on_oops=1`, or in interrupt context,
//! ends in a clean kernel panic (`run` returns an error, the process exits non-zero). Each case
//! runs in a child process (this test binary, re-executed with the case in the environment),
//! because the process's fate is what is tested; each boots with `cpus=1` and `cpus=2`.

use arch_hosted::testing::faults;
use kernel::{spawn, syscall, Config, TaskBuilder};
use std::process::Command;

const CASE: &str = "ATOMKERNEL_OOPS_CASE";

/// The child's side: runs the case named in the environment and exits with its verdict.
/// In the parent (no case set) it does nothing.
#[test]
fn child_process_entry() {
    let Ok(case) = std::env::var(CASE) else { return };
    let case: &'static str = case.leak();
    let (mode, kind) = case.split_once(':').expect("mode:kind");
    let code = match mode {
        "contain" => contain(kind),
        "panic" => panic_on_oops(kind),
        "fatal" => fatal(kind),
        "lockup" => lockup(kind),
        "hung" => hung_panic(),
        other => panic!("unknown mode {other}"),
    };
    std::process::exit(code);
}

/// Runs this binary's `child_process_entry` with `case`; returns (exit code, stderr).
fn child(case: &str) -> (Option<i32>, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["child_process_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(CASE, case)
        .output()
        .expect("re-execute the test binary");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn recurse(n: u64) -> u64 {
    let pad = std::hint::black_box([n; 64]);
    if n == 0 {
        return pad[1];
    }
    recurse(n + 1) + pad[3]
}

/// The fault of `kind`, in kernel mode (inside a system call).
fn fault(kind: &str) -> i64 {
    let zero = std::hint::black_box(0i64);
    match kind {
        "panic" => panic!("the faulty task gives up"),
        "checked-div" => 10 / zero,
        "preempt-guard" => syscall(|| {
            let _g = kernel::preempt::preempt_disable();
            panic!("a panic holding a preempt guard")
        }),
        "stack-overflow" => recurse(1) as i64,
        "null" => faults::read_null() as i64,
        "wild" => faults::read_wild() as i64,
        "sigbus" => faults::read_past_file() as i64,
        "sigill" => {
            faults::invalid_opcode();
            0
        }
        "sigfpe" => faults::divide_error(7, zero as u64) as i64,
        "int3" => {
            faults::breakpoint();
            0
        }
        other => panic!("unknown fault kind {other}"),
    }
}

/// What the oops must say for each kind.
fn expected(kind: &str) -> &'static str {
    match kind {
        "panic" => "the faulty task gives up",
        "checked-div" => "attempt to divide by zero",
        "preempt-guard" => "a panic holding a preempt guard",
        "stack-overflow" => "kernel stack overflow",
        "null" => "kernel NULL pointer dereference at 0x0",
        "wild" => "unable to handle page fault",
        "sigbus" => "bus error",
        "sigill" => "invalid opcode",
        "sigfpe" => "divide error",
        "int3" => "int3",
        _ => "?",
    }
}

/// Boots with a faulty task, a bystander and an RT task; returns the report.
fn boot(kind: &'static str, cmdline: &str) -> Result<kernel::RunReport, kernel::BootError> {
    let config = Config::from_cmdline(cmdline).unwrap();
    kernel::run(config, move || {
        let faulty = spawn(TaskBuilder::new("faulty").stack_size(64 * 1024), move || syscall(|| fault(kind)));
        let bystander = spawn(TaskBuilder::new("bystander"), || (0..2000).map(|i| syscall(|| i)).sum());
        let rt = spawn(TaskBuilder::new("rt").fifo(50), || {
            kernel::time::sleep_ns(2_000_000);
            9
        });
        let f = faulty.join().expect_err("the faulty task must die");
        assert!(f.starts_with("oops: ") && f.contains(expected(kind)) && f.contains("'faulty'"), "{f}");
        assert_eq!(bystander.join(), Ok((0..2000).sum()));
        assert_eq!(rt.join(), Ok(9));
        0
    })
}

fn contain(kind: &'static str) -> i32 {
    for cpus in [1, 2] {
        let r = boot(kind, &format!("cpus={cpus}")).unwrap_or_else(|e| panic!("cpus={cpus}: {e}"));
        assert_eq!(r.init, Ok(0), "cpus={cpus}");
        assert_eq!(r.oopses.len(), 1, "cpus={cpus}: {:?}", r.oopses);
        let o = &r.oopses[0];
        assert_eq!(o.task, "faulty");
        assert!(o.what.contains(expected(kind)), "{}", o.text);
        assert!(o.rip.contains('+') && o.rip.contains(" at crates/"), "{}", o.text);
        assert!(o.text.contains(&format!("PID: {} Comm: faulty", o.pid)), "{}", o.text);
        assert!(o.text.contains("preempt_count: ") && o.text.contains("Call Trace:"), "{}", o.text);
        assert!(o.text.contains("crates/kernel/tests/oops.rs"), "the task's own frames: {}", o.text);
        assert!(r.log.contains("Oops: "), "the report is in the log");
        if kind == "preempt-guard" {
            assert!(o.text.contains("preempt_count: 0x1"), "{}", o.text);
        }
        eprintln!("CONTAINED cpus={cpus}");
    }
    0
}

fn panic_on_oops(kind: &'static str) -> i32 {
    match boot(kind, "cpus=2 panic_on_oops=1") {
        Ok(_) => 0, // the parent sees the 0 and fails
        Err(e) => {
            eprintln!("run returned: {e}");
            1
        }
    }
}

fn check_contained(kind: &str) {
    let (code, err) = child(&format!("contain:{kind}"));
    assert_eq!(code, Some(0), "{kind}: the process must live on\n{err}");
    assert!(err.contains("CONTAINED cpus=1") && err.contains("CONTAINED cpus=2"), "{err}");
    assert!(err.contains("Oops: ") && err.contains(expected(kind)), "the report reaches stderr: {err}");
}

fn check_panics(kind: &str) {
    let (code, err) = child(&format!("panic:{kind}"));
    assert_eq!(code, Some(1), "{kind}: run must return an error and the process exit non-zero\n{err}");
    assert!(err.contains("Kernel panic - not syncing: Fatal exception (panic_on_oops=1)"), "{err}");
    assert!(err.contains("Oops: ") && err.contains(expected(kind)), "{err}");
    assert!(err.contains("--- printk log ---") && err.contains("atomkernel: booting 2 CPUs"), "{err}");
    assert!(err.contains("run returned: Kernel panic"), "{err}");
}

macro_rules! fault_tests {
    ($($name:ident, $panics:ident: $kind:literal;)*) => {$(
        #[test]
        fn $name() {
            check_contained($kind);
        }
        #[test]
        fn $panics() {
            check_panics($kind);
        }
    )*};
}

fault_tests! {
    a_panic_is_contained, a_panic_panics_with_panic_on_oops: "panic";
    a_checked_division_by_zero_is_contained, a_checked_division_by_zero_panics_with_panic_on_oops: "checked-div";
    a_panic_holding_a_preempt_guard_is_contained, a_panic_holding_a_preempt_guard_panics_with_panic_on_oops: "preempt-guard";
    a_stack_overflow_is_contained, a_stack_overflow_panics_with_panic_on_oops: "stack-overflow";
    a_null_read_is_contained, a_null_read_panics_with_panic_on_oops: "null";
    a_wild_read_is_contained, a_wild_read_panics_with_panic_on_oops: "wild";
    a_sigbus_is_contained, a_sigbus_panics_with_panic_on_oops: "sigbus";
    a_sigill_is_contained, a_sigill_panics_with_panic_on_oops: "sigill";
    a_div_instruction_by_zero_is_contained, a_div_instruction_by_zero_panics_with_panic_on_oops: "sigfpe";
    a_foreign_breakpoint_is_contained, a_foreign_breakpoint_panics_with_panic_on_oops: "int3";
}

/// A fault where no task can be killed: always a kernel panic, whatever `panic_on_oops` says.
fn fatal(kind: &'static str) -> i32 {
    let r = kernel::run(Config::from_cmdline("cpus=2").unwrap(), move || {
        match kind {
            "device-irq" => {
                let dev = kernel::device::Device::register("faulty-dev", || {
                    faults::read_null();
                });
                dev.raise();
                kernel::time::sleep_ns(1_000_000_000);
            }
            "device-irq-formatted" => {
                let n = std::hint::black_box(7);
                let dev = kernel::device::Device::register("faulty-dev", move || {
                    panic!("a handler gives up after {n} tries")
                });
                dev.raise();
                kernel::time::sleep_ns(1_000_000_000);
            }
            "softirq" => {
                kernel::softirq::open_softirq(kernel::softirq::BLOCK_SOFTIRQ, || panic!("a softirq gives up")).unwrap();
                syscall(|| kernel::softirq::raise_softirq(kernel::softirq::BLOCK_SOFTIRQ));
                kernel::time::sleep_ns(1_000_000_000);
            }
            "irqs-off" => {
                let _irq = kernel::preempt::local_irq_save();
                faults::read_null();
            }
            other => panic!("unknown fatal kind {other}"),
        }
        0
    });
    match r {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("run returned: {e}");
            1
        }
    }
}

fn check_fatal(kind: &str, reason: &str, what: &str) {
    let (code, err) = child(&format!("fatal:{kind}"));
    assert_eq!(code, Some(1), "{kind}: a clean panic, run returning an error\n{err}");
    assert!(err.contains(&format!("Kernel panic - not syncing: {reason}")), "{err}");
    assert!(err.contains(what) && err.contains("Call Trace:"), "{err}");
    assert!(err.contains("--- printk log ---"), "{err}");
}

#[test]
fn a_fault_in_a_device_interrupt_handler_is_a_panic() {
    check_fatal("device-irq", "Fatal exception in interrupt", "kernel NULL pointer dereference");
}

#[test]
fn a_formatted_panic_in_a_device_interrupt_handler_is_a_panic() {
    check_fatal("device-irq-formatted", "Fatal exception in interrupt", "memory allocation in interrupt context");
}

#[test]
fn a_panic_in_a_softirq_is_a_panic() {
    check_fatal("softirq", "Fatal exception in interrupt", "a softirq gives up");
}

#[test]
fn a_fault_with_irqs_off_is_a_panic() {
    check_fatal("irqs-off", "Fatal exception with IRQs disabled", "kernel NULL pointer dereference");
}

/// A system call that spins `ms` without a preemption point (the loop the report must name).
#[inline(never)]
fn spin_without_a_point(ms: u64) -> u64 {
    let end = kernel::time::now_ns() + ms * 1_000_000;
    let mut x = 0u64;
    while kernel::time::now_ns() < end {
        for i in 0..20_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
    }
    x
}

/// Does `report` name the loop of `spin_without_a_point`: the function, and a line of its body?
/// The report's RIP line names it when the tick landed in the loop's own code; when it landed
/// in the clock read the loop calls (`kernel::time::now_ns`), the loop is that frame's caller,
/// the next line of the report's Call Trace: so the whole report is searched.
fn names_the_loop(report: &str) -> bool {
    let src = include_str!("oops.rs");
    let start = src.lines().position(|l| l.starts_with("fn spin_without_a_point")).unwrap() + 1;
    report.contains("spin_without_a_point+")
        && (start + 1..start + 9).any(|n| {
            report.contains(&format!("crates/kernel/tests/oops.rs:{n}\n"))
                || report.ends_with(&format!("crates/kernel/tests/oops.rs:{n}"))
        })
}

/// Boots `cmdline` with a task whose system call spins 400 ms without a point, and an RT task.
fn boot_spinner(cmdline: &str) -> Result<kernel::RunReport, kernel::BootError> {
    kernel::run(Config::from_cmdline(cmdline).unwrap(), || {
        let spinner = spawn(TaskBuilder::new("spinner"), || syscall(|| spin_without_a_point(400)) as i64 & 1);
        let rt = spawn(TaskBuilder::new("rt").fifo(50), || {
            kernel::time::sleep_ns(1_000_000);
            9
        });
        assert!(spinner.join().is_ok());
        assert_eq!(rt.join(), Ok(9));
        0
    })
}

/// The soft-lockup report for a system call that loops without a point: once, naming the task
/// and the loop's `file:line`; the run then ends normally.
#[test]
fn a_syscall_looping_without_a_point_is_reported_as_a_soft_lockup() {
    for model in ["none", "voluntary"] {
        for cpus in [1, 2] {
            let r = boot_spinner(&format!("cpus={cpus} preempt={model} softlockup_thresh_ms=100")).unwrap();
            assert_eq!(r.init, Ok(0));
            let lockups: Vec<&String> = r.bugs.iter().filter(|b| b.contains("soft lockup")).collect();
            assert_eq!(lockups.len(), 1, "{model} cpus={cpus}: once per stretch: {:?}", r.bugs);
            let b = lockups[0];
            assert!(b.starts_with("BUG: soft lockup - CPU#") && b.contains("[spinner:"), "{b}");
            assert!(names_the_loop(&r.log), "{model}: the loop's function and line: {b}\n{}", r.log);
            assert!(r.log.contains("BUG: soft lockup") && r.log.contains("Call Trace:"), "{}", r.log);
        }
    }
}

/// A loop that passes preemption points under `voluntary` schedules at them when the
/// detector asks (as Linux's stopper thread does), so no CPU is stuck.
#[test]
fn a_loop_through_points_under_voluntary_is_no_soft_lockup() {
    let r = kernel::run(Config::from_cmdline("cpus=1 preempt=voluntary softlockup_thresh_ms=100").unwrap(), || {
        syscall(|| {
            let end = kernel::time::now_ns() + 400_000_000;
            while kernel::time::now_ns() < end {
                std::hint::black_box(spin_rounds(2_000));
                kernel::preempt_point!();
            }
        });
        0
    })
    .unwrap();
    assert!(r.bugs.iter().all(|b| !b.contains("soft lockup")), "{:?}", r.bugs);
}

fn spin_rounds(n: u64) -> u64 {
    (0..n).fold(0u64, |x, i| std::hint::black_box(x.wrapping_mul(31).wrapping_add(i)))
}

/// Under `full` the same loop is preemptible (count zero), so no CPU is stuck.
#[test]
fn a_preemptible_loop_is_no_soft_lockup() {
    let r = boot_spinner("cpus=1 preempt=full softlockup_thresh_ms=100").unwrap();
    assert!(r.bugs.iter().all(|b| !b.contains("soft lockup")), "{:?}", r.bugs);
}

fn lockup(model: &str) -> i32 {
    let cmdline = format!("cpus=2 preempt={model} softlockup_thresh_ms=100 softlockup_panic=1");
    let r = kernel::run(Config::from_cmdline(&cmdline).unwrap(), || {
        let spinner = spawn(TaskBuilder::new("spinner"), || {
            syscall(|| loop {
                spin_without_a_point(10);
            })
        });
        spinner.join().unwrap_or(0)
    });
    match r {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("run returned: {e}");
            1
        }
    }
}

/// A syscall that loops for ever under `none` ends `run` with an error naming the task, with
/// `softlockup_panic=1` (as the lab and the CLI boot).
#[test]
fn a_syscall_looping_for_ever_ends_the_run_with_softlockup_panic() {
    let (code, err) = child("lockup:none");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("Kernel panic - not syncing: softlockup: hung tasks: BUG: soft lockup - CPU#"), "{err}");
    assert!(err.contains("[spinner:") && names_the_loop(&err), "{err}");
}

/// A task blocked in a wait past the timeout is reported once, naming the wait's place; the run
/// ends normally once it is woken.
#[test]
fn a_task_blocked_past_the_timeout_is_reported_as_hung() {
    let r = kernel::run(Config::from_cmdline("cpus=2 hung_task_timeout_ms=100").unwrap(), || {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let wq = std::sync::Arc::new(kernel::WaitQueue::new());
        let (d, w) = (done.clone(), wq.clone());
        let waiter = spawn(TaskBuilder::new("waiter"), move || {
            w.wait_event(|| d.load(std::sync::atomic::Ordering::Acquire)); // WAIT-LINE
            1
        });
        kernel::time::sleep_ns(600_000_000);
        done.store(true, std::sync::atomic::Ordering::Release);
        wq.wake_up();
        waiter.join().unwrap()
    })
    .unwrap();
    assert_eq!(r.init, Ok(1));
    let src = include_str!("oops.rs");
    let n = src.lines().position(|l| l.contains("// WAIT-LINE") && !l.contains("contains")).unwrap() + 1;
    let reports: Vec<&str> = r.log.lines().filter(|l| l.contains("INFO: task waiter:")).collect();
    assert_eq!(reports.len(), 1, "once per wait: {}", r.log);
    assert!(
        reports[0].contains("blocked for more than") && reports[0].contains(&format!("oops.rs:{n}")),
        "{}",
        reports[0]
    );
    assert!(!r.log.contains("INFO: task init:"), "init sleeps in a timed sleep, not a wait: {}", r.log);
}

/// A task that dies of a hardware fault holding a sleeping lock (a flag others wait on)
/// leaves it held, as Linux does; its waiter is then reported by the hung-task detector, and
/// `hung_task_panic=1` ends the run with an error naming the waiter.
fn hung_panic() -> i32 {
    let r = kernel::run(Config::from_cmdline("cpus=2 hung_task_timeout_ms=200 hung_task_panic=1").unwrap(), || {
        let held = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let wq = std::sync::Arc::new(kernel::WaitQueue::new());
        let owner = spawn(TaskBuilder::new("owner"), move || {
            let _p = kernel::preempt::preempt_disable();
            faults::read_null() as i64 // dies holding `held` (and a raised preempt_count)
        });
        assert!(owner.join().unwrap_err().contains("oops: kernel NULL pointer dereference"));
        let (h, w) = (held.clone(), wq.clone());
        let waiter = spawn(TaskBuilder::new("waiter"), move || {
            w.wait_event(|| !h.load(std::sync::atomic::Ordering::Acquire));
            1
        });
        waiter.join().unwrap()
    });
    match r {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("run returned: {e}");
            1
        }
    }
}

#[test]
fn a_lock_left_held_by_an_oops_shows_up_as_a_hung_waiter() {
    let (code, err) = child("hung:panic");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("note: owner[") && err.contains("exited with preempt_count 0x1"), "{err}");
    assert!(err.contains("INFO: task waiter:") && err.contains("blocked for more than"), "{err}");
    assert!(err.contains("run returned: Kernel panic - not syncing: hung_task: blocked tasks: waiter:"), "{err}");
}
