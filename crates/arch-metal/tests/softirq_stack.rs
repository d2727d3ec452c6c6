//! Boots `image.run=softirq-stack` (`src/softirq_stack.rs`) under QEMU TCG and checks that a
//! softirq's deep call chain at an interrupt's exit, with the tick's interrupts nesting in it,
//! keeps every word of its frames and returns through all of them.
//!
//! **Mechanism.** The harness (`common/mod.rs`) builds the image once and boots it (killed
//! after 60 s), on one CPU and with `-smp 2` (the tasklet on CPU 1, an AP). The check reads the image's `{"test":"softirq_stack",...}` line: at least one
//! interrupt nested while the chain was live, no corrupted word, the chain returned, and the
//! machine exited with `SUCCESS` (a clobbered return address is an `EXCEPTION` exit instead).
//!
//! **Invariant.** Every check names the boot's whole serial output when it fails.

mod common;

use common::{boot, boot_with, exit_codes, result};

fn nested_interrupts_leave_the_softirq_chain_intact(qemu_args: &[&str], cmdline: &str, cpu: u64) {
    let Some(b) = boot_with(qemu_args, cmdline) else { return };
    let s = &b.serial;
    assert!(!s.contains("EXCEPTION") && !s.contains("PANIC"), "{s}");
    let r = result(&b, "softirq_stack");
    assert_eq!(r["tasklet_runs"], 1, "{s}");
    assert_eq!(r["cpu"], cpu, "the tasklet's CPU:\n{s}");
    assert!(r["nested_irqs"].as_u64() >= Some(1), "no interrupt nested in the chain:\n{s}");
    assert_eq!(r["corrupted"], 0, "words of the softirq's frames overwritten:\n{s}");
    assert_eq!(r["returned"], true, "{s}");
    assert_eq!(r["ok"], true, "{s}");
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::SUCCESS), "exit status; serial:\n{s}");
}

#[test]
fn a_softirqs_deep_call_chain_survives_the_ticks_nesting_in_it() {
    nested_interrupts_leave_the_softirq_chain_intact(&[], "preempt=full bh=classic image.run=softirq-stack", 0);
}

#[test]
fn the_same_under_preempt_none() {
    nested_interrupts_leave_the_softirq_chain_intact(&[], "preempt=none bh=classic image.run=softirq-stack", 0);
}

#[test]
fn on_two_cpus_the_same_on_cpu_1() {
    nested_interrupts_leave_the_softirq_chain_intact(&["-smp", "2"], "preempt=full cpus=2 image.run=softirq-stack", 1);
}

#[test]
fn bh_threaded_is_refused_by_name() {
    let Some(b) = boot("bh=threaded image.run=softirq-stack") else { return };
    assert!(b.serial.contains("use bh=classic"), "{}", b.serial);
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::FAILED), "{}", b.serial);
}
