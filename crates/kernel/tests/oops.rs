//! Oops containment and the panic: each fault kind kills only its task (a bystander and an RT
//! task finish, the process exits 0), and under `panic_on_oops=1`, or in interrupt context,
//! ends in a clean kernel panic (`run` returns an error, the process exits non-zero). Each case
//! runs in a child process (this test binary, re-executed with the case in the environment),
//! because the process's fate is what is tested; each boots with `cpus=1` and `cpus=2`.

use arch::testing::faults;
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
