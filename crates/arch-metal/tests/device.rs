//! Boots the bare-metal image under QEMU TCG and checks the device timer: an HPET comparator
//! routed through the IOAPIC (`machine/src/hpet.rs`, `machine/src/ioapic.rs`). The boot line
//! names the HPET and its route; the device's interrupts arrive on the device vector (counted
//! per CPU by the machine); on QEMU's `-smp 2` they arrive on the CPU the device names, not
//! on the CPU that armed them; a deadline already past fires at once (before one 10 ms ahead
//! armed earlier); two `-icount` boots print the same lines; and without an HPET
//! (`-machine hpet=off`) the device falls back to the local APIC's timer and the `rt`
//! scenario's interrupt still lands inside the atom.
//!
//! **Mechanism.** The harness (`common/mod.rs`) builds the image once per test binary and
//! boots it (`image.run=device` runs the scenario of `src/device.rs`), every boot under
//! `-icount` so that its guest time does not depend on the host's load; each boot is
//! killed after 60 s and the test then fails with the serial output.
//!
//! **Invariant.** Every check names the boot's whole serial output when it fails.

mod common;

use common::{boot_with, exit_codes, result, Boot};

/// QEMU's instruction-counting clock: the scenarios' guest time does not depend on the host's
/// load.
const ICOUNT: [&str; 2] = ["-icount", "shift=0,sleep=off"];

/// The boot line of the device source.
fn device_line(b: &Boot) -> &str {
    b.serial
        .lines()
        .find(|l| l.starts_with("device: "))
        .unwrap_or_else(|| panic!("no `device:` boot line:\n{}", b.serial))
}

/// Boots the device scenario on `cpus` CPUs (QEMU's `-smp` and the core's `cpus=`) under
/// `-icount`: a host stall of the target CPU's thread cannot delay its interrupt past the
/// later deadline's, which would merge both into one interrupt (handled in line order).
fn device_boot(cpus: u32) -> Option<Boot> {
    let smp = cpus.to_string();
    let args = ["-smp", &smp, ICOUNT[0], ICOUNT[1]];
    let b = boot_with(&args, &format!("preempt=full cpus={cpus} image.run=device"))?;
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::SUCCESS), "exit status; serial:\n{}", b.serial);
    Some(b)
}

#[test]
fn the_boot_line_names_the_hpet_its_ioapic_pin_and_the_device_vector() {
    let Some(b) = device_boot(1) else { return };
    let line = device_line(&b);
    assert!(line.starts_with("device: HPET at 0x"), "{line}");
    assert!(line.contains(" -> IOAPIC pin ") && line.contains(" -> vector 0x42"), "{line}");
    let counts = result(&b, "device_irqs");
    assert_eq!(counts["source"], "hpet", "{}", b.serial);
    assert_eq!(counts["vector"], 0x42, "{}", b.serial);
}

#[test]
fn the_rt_scenarios_interrupt_arrives_through_the_ioapic_on_the_device_vector() {
    let Some(b) = boot_with(&ICOUNT, "preempt=full") else { return };
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::SUCCESS), "exit status; serial:\n{}", b.serial);
    let rt = result(&b, "rt");
    assert_eq!(rt["place"], "mid_atom", "{}", b.serial);
    let counts = result(&b, "device_irqs");
    assert_eq!(counts["source"], "hpet", "{}", b.serial);
    let delivered = counts["delivered"][0].as_u64().unwrap_or(0);
    let armed = counts["armed"][0].as_u64().unwrap_or(0);
    assert!(armed >= 1 && delivered >= armed, "every armed device timer came on the device vector: {}", b.serial);
}

#[test]
fn on_two_cpus_the_interrupt_arrives_on_the_cpu_the_device_names_not_on_the_arming_cpu() {
    let Some(b) = device_boot(2) else { return };
    let d = result(&b, "device");
    assert_eq!(d["armed_cpu"], 0, "{}", b.serial);
    assert_eq!(d["target_cpu"], 1, "{}", b.serial);
    assert_eq!(d["past_cpu"], 1, "{}", b.serial);
    assert_eq!(d["future_cpu"], 1, "{}", b.serial);
    assert_eq!(d["device_vector_irqs"][0], 0, "no device interrupt on the arming CPU: {}", b.serial);
    assert!(d["device_vector_irqs"][1].as_u64() >= Some(2), "{}", b.serial);
    assert_eq!(d["ok"], true, "{}", b.serial);
}

#[test]
fn a_deadline_in_the_past_fires_at_once_before_one_armed_earlier_for_10_ms_ahead() {
    let Some(b) = device_boot(1) else { return };
    let d = result(&b, "device");
    assert_eq!(d["past_order"], 1, "the past deadline's interrupt came first: {}", b.serial);
    assert_eq!(d["future_order"], 2, "{}", b.serial);
    assert_eq!(d["source"], "hpet", "{}", b.serial);
    assert!(result(&b, "device_irqs")["past_deadlines"].as_u64() >= Some(1), "{}", b.serial);
}

#[test]
fn under_the_instruction_counting_clock_two_device_boots_on_two_cpus_print_identical_lines() {
    let Some(a) = device_boot(2) else { return };
    let Some(b) = device_boot(2) else { return };
    let lines = |b: &Boot| -> Vec<String> {
        b.serial.lines().filter(|l| l.starts_with('{') || l.starts_with("device: ")).map(String::from).collect()
    };
    assert_eq!(lines(&a), lines(&b), "two -icount device boots differ");
}

#[test]
fn without_an_hpet_the_device_is_the_apic_timer_and_the_rt_interrupt_still_lands_in_the_atom() {
    let Some(b) = boot_with(&["-machine", "hpet=off", ICOUNT[0], ICOUNT[1]], "preempt=full") else { return };
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::SUCCESS), "exit status; serial:\n{}", b.serial);
    assert!(device_line(&b).starts_with("device: no HPET"), "{}", b.serial);
    assert_eq!(result(&b, "device_irqs")["source"], "apic", "{}", b.serial);
    assert_eq!(result(&b, "device_irqs")["delivered"][0], 0, "{}", b.serial);
    assert_eq!(result(&b, "rt")["place"], "mid_atom", "{}", b.serial);
}
