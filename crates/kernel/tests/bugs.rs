//! Debug checks: each `BUG:` fires on a deliberately wrong task, naming task, count and place.

mod common;
use common::run_with_timeout;
use kernel::preempt::{local_irq_save, preempt_disable};
use kernel::{spawn, syscall, Config, TaskBuilder};

fn bugs_of(name: &'static str, body: fn()) -> Vec<String> {
    let r = run_with_timeout(Config::default(), 30, move || {
        spawn(TaskBuilder::new(name), move || {
            body();
            0
        })
        .join()
        .unwrap()
    });
    r.bugs
}

#[test]
fn scheduling_while_atomic() {
    let bugs = bugs_of("atomic-sleeper", || {
        syscall(|| {
            let _g = preempt_disable();
            kernel::time::sleep_ns(1_000_000);
        })
    });
    assert_eq!(bugs.len(), 1, "{bugs:?}");
    let b = &bugs[0];
    assert!(b.starts_with("BUG: scheduling while atomic: task 'atomic-sleeper'"), "{b}");
    assert!(b.contains("preempt_count 0x1"), "{b}");
    assert!(b.contains("tests/bugs.rs:"), "the place must be the caller's line: {b}");
}

#[test]
fn preempt_count_leaked_at_ret_from_syscall() {
    let bugs = bugs_of("leaky", || {
        syscall(|| std::mem::forget(preempt_disable()));
    });
    assert_eq!(bugs.len(), 1, "{bugs:?}");
    let b = &bugs[0];
    assert!(b.starts_with("BUG: preempt_count not zero at ret_from_syscall: task 'leaky'"), "{b}");
    assert!(b.contains("preempt_count 0x1") && b.contains("tests/bugs.rs:"), "{b}");
}

#[test]
fn sleeping_with_irqs_masked() {
    let bugs = bugs_of("irq-sleeper", || {
        syscall(|| {
            let _irq = local_irq_save();
            kernel::time::sleep_ns(1_000_000);
        })
    });
    assert_eq!(bugs.len(), 1, "{bugs:?}");
    let b = &bugs[0];
    assert!(b.starts_with("BUG: sleeping function called with IRQs disabled: task 'irq-sleeper'"), "{b}");
    assert!(b.contains("irqs off") && b.contains("tests/bugs.rs:"), "{b}");
}

#[test]
fn a_correct_task_reports_nothing() {
    let bugs = bugs_of("good", || {
        syscall(|| {
            {
                let _g = preempt_disable();
            }
            kernel::time::sleep_ns(1_000_000);
        })
    });
    assert!(bugs.is_empty(), "{bugs:?}");
}

/// The stack-overflow check kills the process, so it runs in a child: this test re-runs the
/// test binary on the `overflow_child` test with an environment variable set.
#[test]
fn stack_overflow_is_reported() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "overflow_child", "--nocapture", "--test-threads=1"])
        .env("ATOMKERNEL_OVERFLOW_CHILD", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the child survived an overflow");
    assert!(
        stderr.contains("BUG: kernel stack overflow in task 'deep'") && stderr.contains("hit the guard page"),
        "stderr: {stderr}"
    );
}

#[test]
fn overflow_child() {
    if std::env::var_os("ATOMKERNEL_OVERFLOW_CHILD").is_none() {
        return; // only meaningful inside stack_overflow_is_reported
    }
    fn recurse(n: u64) -> u64 {
        if n == u64::MAX {
            return 0; // never reached: the guard page is
        }
        let buf = std::hint::black_box([n; 64]);
        recurse(n + 1) + buf[3]
    }
    let _ = run_with_timeout(Config::default(), 30, || {
        spawn(TaskBuilder::new("deep").stack_size(64 * 1024), || recurse(0) as i64).join().unwrap()
    });
}
