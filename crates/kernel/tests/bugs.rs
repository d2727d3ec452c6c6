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

/// A sleep whose time is already past does not block, and is reported all the same (Linux's
/// `might_sleep()`): the bug does not depend on how late the task got to it.
#[test]
fn a_sleep_that_does_not_block_in_atomic_context_is_reported_too() {
    let bugs = bugs_of("past-sleeper", || {
        syscall(|| {
            let _g = preempt_disable();
            kernel::time::sleep_until(kernel::time::now_ns().saturating_sub(1));
        })
    });
    assert_eq!(bugs.len(), 1, "{bugs:?}");
    let b = &bugs[0];
    assert!(b.starts_with("BUG: scheduling while atomic: task 'past-sleeper'"), "{b}");
    assert!(b.contains("preempt_count 0x1"), "{b}");
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

// A stack overflow is an oops of the overflowing task: tests/oops.rs
// (`a_stack_overflow_is_contained`, `a_stack_overflow_panics_with_panic_on_oops`).
