//! Boots the bare-metal image under QEMU (TCG) and checks what it prints on its serial port
//! and the status it exits with.
//!
//! **Mechanism.** The harness (`common/mod.rs`) builds the image once per test binary and
//! boots it under QEMU TCG with a command line choosing the self-test's fault (`fault=`: the
//! machine's self-test instead of the kernel core); QEMU is killed after 60 s and the test
//! fails with the serial output so far.
//!
//! **Invariant.** Nothing hangs (every boot is bounded), and where `qemu-system-x86_64` is
//! missing each test says so through `hostlab::testing::skip` instead of passing silently.

mod common;

use common::{boot, boot_with, exit_codes, Boot, RUST_ENTRY, TIMEOUT};

/// The serial line starting with `prefix` (the image writes `\r\n`).
fn line<'a>(b: &'a Boot, prefix: &str) -> &'a str {
    let found = b.serial.lines().map(|l| l.trim_end_matches('\r')).find_map(|l| l.find(prefix).map(|i| &l[i..]));
    found.unwrap_or_else(|| panic!("no line `{prefix}...` on the serial port:\n{}", b.serial))
}

/// The hexadecimal number after `key ` in `line` (`key 0x1f`).
fn hex_after(line: &str, key: &str) -> u64 {
    let rest = line.split(key).nth(1).unwrap_or_else(|| panic!("no `{key}` in `{line}`")).trim_start();
    let digits: String = rest.trim_start_matches("0x").chars().take_while(char::is_ascii_hexdigit).collect();
    u64::from_str_radix(&digits, 16).unwrap_or_else(|e| panic!("`{key}` in `{line}`: {e}"))
}

/// The decimal number before `what` in `line` (`12 leaf entries`).
fn count_before(line: &str, what: &str) -> u64 {
    let before = line.split(what).next().unwrap_or("");
    let n = before.rsplit(|c: char| !c.is_ascii_digit()).find(|w| !w.is_empty()).unwrap_or("");
    n.parse().unwrap_or_else(|e| panic!("no count before `{what}` in `{line}`: {e}"))
}

#[test]
fn the_image_boots_through_every_step_and_exits_with_the_status_it_chose() {
    let Some(b) = boot("fault=none") else { return };
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::SUCCESS), "exit status; serial:\n{}", b.serial);
    assert!(b.to_rust.is_some(), "no Rust entry line:\n{}", b.serial);
    assert!(b.total < TIMEOUT);
    line(&b, RUST_ENTRY);
    assert!(line(&b, "pvh: ").contains("cmdline \"fault=none\""), "the command line reached the image");
    let cpu = line(&b, "cpu: ");
    let vendor = &cpu["cpu: ".len()..].split(' ').next().unwrap_or("");
    assert!(["GenuineIntel", "AuthenticAMD"].contains(vendor), "the CPU vendor: {cpu}");
    // `-cpu max` offers XSAVE and AVX under TCG: the image must have enabled them
    for feature in ["sse sse2 fxsr", " xsave", " avx"] {
        assert!(cpu.contains(feature), "`{feature}` not enabled: {cpu}");
    }
    assert!(hex_after(cpu, "xcr0") & 0b111 == 0b111, "XCR0 holds x87, SSE and AVX: {cpu}");
    assert!(line(&b, "idt: ").starts_with("idt: 256 gates, every one on an IST stack"));
    // the live tables (looked up from CR3) leave the boot stack's and the 4 IST stacks' guard pages out
    assert!(line(&b, "guards: ").starts_with("guards: 5 of 5 guard pages unmapped"), "{}", b.serial);
    let wx = line(&b, "W^X: ");
    assert!(count_before(wx, " leaf entries") > 512, "{wx}");
    assert!(count_before(wx, " executable") > 0, "{wx}");
    assert_eq!(count_before(wx, " both writable and executable"), 0, "{wx}");
    let heap = line(&b, "heap: ");
    assert!(count_before(heap, " MiB") >= 64, "a heap of most of the 128 MiB: {heap}");
    assert!(
        line(&b, "alloc: ").starts_with(
            "alloc: Vec sum 5050, Arc strong count 2, format! \"atomkernel on bare metal, 100 items\", 8 MiB Vec at"
        ),
        "{}",
        b.serial
    );
    assert!(line(&b, "patch: ").ends_with("returns 1, then 2, then 1: ok"), "{}", b.serial);
    // an int3 through the IDT and back: the IST stack kept the red zone, iretq and the saved
    // state gave back every general register and xmm0-15 (the handler cleared them)
    line(&b, "breakpoint: #BP number 1 at rip");
    assert_eq!(
        line(&b, "int3: "),
        "int3: #BP through the IDT on IST 4 and back by iretq: \
         the 128-byte red zone, the 15 general registers and xmm0-15 intact: ok"
    );
    let tsc = line(&b, "tsc: ");
    let at_pvh = count_before(tsc, " at the PVH entry");
    let to_rust: u64 =
        tsc.split('+').nth(1).and_then(|t| t.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(at_pvh > 0 && to_rust > 0, "the TSC was read at the PVH entry and later at the Rust entry: {tsc}");
    eprintln!("{tsc}");
    line(&b, "atomkernel-metal: boot complete");
    assert!(!b.serial.contains("EXCEPTION"), "{}", b.serial);
}

#[test]
fn a_ud2_is_caught_by_the_idt_and_reported_with_its_vector_and_rip() {
    let Some(b) = boot("fault=ud2") else { return };
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::EXCEPTION), "exit status; serial:\n{}", b.serial);
    let at = hex_after(line(&b, "fault: executing ud2"), "at");
    let exc = line(&b, "EXCEPTION: ");
    assert!(exc.starts_with("EXCEPTION: vector 6 (#UD invalid opcode) error 0x0 "), "{exc}");
    assert_eq!(hex_after(exc, "rip"), at, "the reported RIP is the ud2's: {exc}");
    assert!(!b.serial.contains("boot complete"), "{}", b.serial);
}

#[test]
fn a_write_to_the_text_is_a_page_fault_because_the_text_is_read_only() {
    let Some(b) = boot("fault=write-text") else { return };
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::EXCEPTION), "exit status; serial:\n{}", b.serial);
    let intent = line(&b, "fault: writing the text");
    let (target, writer) = (hex_after(intent, "at"), hex_after(intent, "rip"));
    let exc = line(&b, "EXCEPTION: ");
    assert!(exc.starts_with("EXCEPTION: vector 14 (#PF page fault) "), "{exc}");
    // error code: present (bit 0: a protection violation, not a missing page) and write (bit 1)
    assert_eq!(hex_after(exc, "error") & 0b11, 0b11, "{exc}");
    assert_eq!(hex_after(exc, "rip"), writer, "the reported RIP is the writing instruction's: {exc}");
    assert_eq!(hex_after(exc, "cr2"), target, "CR2 is the text address written: {exc}");
    assert!(line(&b, "page fault: ").contains("protection violation on write"), "{}", b.serial);
    assert!(!b.serial.contains("W^X does not hold"), "{}", b.serial);
}

#[test]
fn a_stack_overflow_faults_on_the_guard_page_and_is_reported_from_an_ist_stack() {
    let Some(b) = boot("fault=stack-overflow") else { return };
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::EXCEPTION), "exit status; serial:\n{}", b.serial);
    let guard = hex_after(line(&b, "fault: overflowing the boot stack"), "page at");
    let exc = line(&b, "EXCEPTION: ");
    // a #PF, not a #DF: the CPU pushed the frame on IST 4, not on the overflowed stack
    assert!(exc.starts_with("EXCEPTION: vector 14 (#PF page fault) "), "{exc}");
    // error code: not present (bit 0 clear), write (bit 1)
    assert_eq!(hex_after(exc, "error") & 0b11, 0b10, "{exc}");
    let cr2 = hex_after(exc, "cr2");
    assert!((guard..guard + 4096).contains(&cr2), "CR2 {cr2:#x} is in the guard page at {guard:#x}: {exc}");
}

#[test]
fn under_smp_2_the_second_cpu_is_started_by_init_sipi_sipi_with_its_own_tables_and_gs_block() {
    let Some(b) = boot_with(&["-smp", "2"], "fault=none") else { return };
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::SUCCESS), "exit status; serial:\n{}", b.serial);
    // the MADT lists both CPUs; the AP reported through its own APIC the ID the MADT gave
    let all = line(&b, "smp: 2 CPU(s) in the ACPI MADT");
    assert!(all.contains("APIC IDs [0, 1]; 1 AP(s) online by INIT-SIPI-SIPI"), "{all}");
    // the AP printed this itself: its GS base reaches a block holding CPU number 1, its own TSS
    let ap = line(&b, "smp: CPU 1 up in long mode: APIC ID 1");
    let (gs, tss, rsp) = (hex_after(ap, "GS block"), hex_after(ap, "TSS"), hex_after(ap, "rsp"));
    assert!(gs != 0 && tss != 0 && rsp != 0, "{ap}");
    // its stack is a guarded one of the stack region (PML4 entry 2), not the boot CPU's
    assert_eq!(rsp >> 39, 2, "the AP runs on a stack of the stack region: {ap}");
    // the boot CPU's TSS is in the image's .bss (below 4 MiB), the AP's on the heap
    assert!(tss >= 0x40_0000, "the AP's TSS {tss:#x} is its own, not the boot CPU's: {ap}");
    // every stack of the AP's (its own, its four IST stacks, its softirq stack) above a guard
    // page read back unmapped from the live tables, each in the stack region
    let guards = line(&b, "smp: CPU 1's guards: ");
    assert!(guards.starts_with("smp: CPU 1's guards: 6 of 6 guard pages unmapped"), "{guards}");
    let listed: Vec<u64> = guards
        .rsplit(": ")
        .next()
        .unwrap_or("")
        .trim_end_matches(')')
        .split(' ')
        .filter_map(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
        .collect();
    assert_eq!(listed.len(), 6, "{guards}");
    assert!(listed.iter().all(|g| g >> 39 == 2 && g % 4096 == 0), "each in PML4 entry 2: {guards}");
    line(&b, "atomkernel-metal: boot complete");
}
