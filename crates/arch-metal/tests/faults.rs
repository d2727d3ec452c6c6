//! Boots the image's fault scenarios (`src/faults.rs`) under QEMU TCG and checks that a
//! hardware fault in a task (`#PF`, `#UD`, `#DE`, `#GP`) kills only that task with the core's oops,
//! on one CPU and with the faulting tasks on CPU 1 of two, while the other tasks finish; and
//! that a fault in interrupt context, or in a task with IRQs disabled, is a kernel panic.
//!
//! **Mechanism.** The harness (`common/mod.rs`) builds the image once per test binary and
//! boots it with `-append "... image.run=fault..."`; each boot is killed after 60 s and the
//! test then fails with the serial output. The checks read the image's JSON lines: one per
//! task (`{"test":"fault",...}`: its join's result) and one per oops of the run
//! (`{"test":"oops",...}`, from `RunReport::oopses`), and the core's `Oops:` report text on
//! the console.
//!
//! **Invariant.** Every check names the boot's whole serial output when it fails.

mod common;

use common::{boot, boot_with, exit_codes, json, results, Boot};

/// The faulting tasks and what their oopses name.
const FAULTS: [(&str, &str, &str); 4] = [
    ("pf", "kernel NULL pointer dereference at 0x8", "vector 14 (#PF page fault)"),
    ("ud", "invalid opcode", "vector 6 (#UD invalid opcode)"),
    ("de", "divide error", "vector 0 (#DE divide error)"),
    ("gp", "general protection fault", "vector 13 (#GP general protection)"),
];

/// The checks of `image.run=fault` and `fault-smp`: each faulting task died of its own
/// oops on `fault_cpu`, reported on the console and as an oops line; the workers finished.
fn only_the_faulting_tasks_died(b: &Boot, fault_cpu: u64) {
    let s = &b.serial;
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::SUCCESS), "exit status; serial:\n{s}");
    let tasks = results(b, "fault");
    assert_eq!(tasks.len(), FAULTS.len() + 3, "one line per task:\n{s}");
    assert!(tasks.iter().all(|t| t["ok"] == true), "{s}");
    let oopses = results(b, "oops");
    assert_eq!(oopses.len(), FAULTS.len(), "one oops per faulting task, none else:\n{s}");
    for (task, what, vector) in FAULTS {
        let line = tasks.iter().find(|t| t["task"] == task).unwrap_or_else(|| panic!("no line of task {task}:\n{s}"));
        let joined = line["result"].as_str().unwrap_or_default();
        assert!(joined.starts_with("Err(\"oops: ") && joined.contains(what), "{task}'s joiner: {joined}\n{s}");
        let oops = oopses.iter().find(|o| o["task"] == task).unwrap_or_else(|| panic!("no oops of {task}:\n{s}"));
        let named = oops["what"].as_str().unwrap_or_default();
        assert!(named.starts_with(what) && named.contains(vector), "{task}'s oops: {named}\n{s}");
        assert_eq!(oops["cpu"], fault_cpu, "{task}'s CPU:\n{s}");
        assert!(s.contains(&format!("Oops: {what}")), "the core's report of {task} on the console:\n{s}");
    }
    for i in 0..3 {
        let w =
            tasks.iter().find(|t| t["task"] == format!("worker{i}")).unwrap_or_else(|| panic!("no worker{i}:\n{s}"));
        assert_eq!(w["result"], format!("Ok({i})"), "worker{i} (on CPU 0 when bound):\n{s}");
    }
    let run = results(b, "run");
    let (total, finished) = (run[0]["tasks"].as_u64().unwrap(), run[0]["finished"].as_u64().unwrap());
    assert_eq!(total - finished, FAULTS.len() as u64, "only the faulting tasks did not finish:\n{s}");
    assert!(!s.contains("EXCEPTION") && !s.contains("PANIC"), "{s}");
}

#[test]
fn a_page_fault_an_invalid_opcode_a_divide_error_and_a_general_protection_fault_each_kill_only_their_task() {
    let Some(b) = boot("preempt=full image.run=fault") else { return };
    only_the_faulting_tasks_died(&b, 0);
}

#[test]
fn on_two_cpus_the_faulting_tasks_on_cpu_1_die_and_cpu_0s_tasks_finish() {
    let Some(b) = boot_with(&["-smp", "2"], "preempt=full cpus=2 image.run=fault-smp") else { return };
    only_the_faulting_tasks_died(&b, 1);
    let cpus = results(&b, "cpu");
    assert_eq!(cpus.len(), 2, "{}", b.serial);
}

#[test]
fn a_fault_in_a_device_handler_is_a_kernel_panic() {
    let Some(b) = boot("preempt=full image.run=fault-irq") else { return };
    let s = &b.serial;
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::PANIC), "exit status; serial:\n{s}");
    assert!(s.contains("fault in interrupt context: vector 6 (#UD invalid opcode)"), "{s}");
    assert!(s.contains("PANIC: CPU 0 stopped"), "{s}");
    // CPU 0 went back to the supervisor, which printed the core's panic report
    assert!(s.contains("Kernel panic - not syncing: Fatal exception in interrupt: invalid opcode"), "{s}");
    assert!(s.contains("---[ end Kernel panic - not syncing: Fatal exception in interrupt ]---"), "{s}");
    let panic = results_with_key(&b, "panic");
    assert!(panic.len() == 1 && panic[0].starts_with("Fatal exception in interrupt"), "{s}");
    // no task was killed (the oops is the panic's cause, not a task's end)
    assert!(results(&b, "oops").is_empty(), "{s}");
    assert!(!s.contains("survived") && !s.contains("EXCEPTION"), "{s}");
}

#[test]
fn a_fault_in_a_task_with_irqs_disabled_is_a_kernel_panic() {
    let Some(b) = boot("preempt=full image.run=fault-irqs-off") else { return };
    let s = &b.serial;
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::PANIC), "exit status; serial:\n{s}");
    assert!(s.contains("PANIC: CPU 0 stopped"), "{s}");
    assert!(s.contains("Kernel panic - not syncing: Fatal exception with IRQs disabled: invalid opcode"), "{s}");
    assert!(s.contains("Comm: irqs-off") && s.contains("Call Trace:"), "the oops report of the task:\n{s}");
    assert!(!s.contains("survived") && !s.contains("EXCEPTION"), "{s}");
}

/// The string value of every JSON line's `key`.
fn results_with_key(b: &Boot, key: &str) -> Vec<String> {
    json(b).into_iter().filter_map(|v| v[key].as_str().map(String::from)).collect()
}
