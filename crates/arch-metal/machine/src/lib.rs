//! # atomkernel's bare-metal x86-64 machine: PVH boot under QEMU and the kernel core's `Arch`
//!
//! **Mechanism.** The image (crates/arch-metal, `src/main.rs`, built with `--features image`)
//! is a static ELF that QEMU's `-kernel` loads by its PVH note and enters in 32-bit mode
//! ([`boot`]). The 32-bit entry switches to long mode with SSE on and calls
//! [`metal_rust_entry`], which brings the machine up in this order, printing one line per step
//! on COM1 ([`serial`]): the per-CPU block and GS base ([`percpu`]), CPU features and vector
//! state ([`cpu`]: XSAVE, AVX, AVX-512 where offered), GDT and TSS with four IST stacks
//! ([`gdt`]), the IDT with every gate on an IST stack ([`idt`]), the final page tables with
//! W^X and the text's writable alias ([`paging`]), the heap ([`heap`]), the TSC calibrated
//! against the PIT ([`clock`]), the local APIC ([`apic`]), the device timer's HPET comparator
//! through the IOAPIC ([`hpet`], [`ioapic`], from the ACPI tables: [`acpi`]) and the APs ([`smp`]). Then, with `fault=` on the
//! command line, [`selftest`] checks `alloc`, patches the text through the alias and runs the
//! fault asked for; without it, the image's `metal_image_main` runs the kernel core on
//! [`Metal`] ([`metal`]: the `Arch` implementation, over [`irq`], [`switch`], [`stack`],
//! [`sync`], [`text`], [`unwind`], [`redirect`]) and exits through `isa-debug-exit` with a status of [`exit_codes`].
//!
//! **How it builds on stable with the host target only.** There is no `rust-src` and no
//! other target here, so no `-Zbuild-std` and no custom target: the image is built for
//! `x86_64-unknown-linux-gnu` against its precompiled `core` and `alloc`, as a `#![no_std]`
//! `#![no_main]` binary linked with `-nostartfiles -nostdlib -static -no-pie` and its own
//! linker script (`link.ld`). The flags only that binary may get are passed without touching
//! the rest of the workspace: the link arguments through `cargo:rustc-link-arg-bin` in
//! `build.rs` (they apply to the image binary alone), `-C panic=abort -C relocation-model=static`
//! through `cargo rustc` (they apply to the final crate alone), and the build runs in a
//! target directory of its own (`target/tmp/metal` from the tests), so it never invalidates
//! the workspace's artifacts and never waits on the lock of the `cargo test` that runs it.
//! The binary needs the `image` feature, so the workspace's own builds skip it.
//! Because the precompiled `core` uses SSE and assumes the 128-byte red zone, the entry
//! enables SSE before any Rust runs, and every IDT gate uses an IST stack, so an interrupt
//! never writes below a live `rsp`.
//!
//! **Invariant.** This crate has the image's `unsafe` and asm (but for the image's own
//! register torture, `crates/arch-metal/src/torture.rs`); every `unsafe` block says why it is
//! sound. The library is linked into the image only, never
//! into a host program (it defines the global allocator and the image's entry symbols).
#![no_std]

extern crate alloc;

pub mod account;
pub mod acpi;
pub mod apic;
pub mod boot;
pub mod clock;
pub mod cpu;
mod escape;
pub mod exit_codes;
pub mod fault;
pub mod gdt;
pub mod heap;
pub mod hpet;
pub mod idt;
pub mod ioapic;
pub mod irq;
mod mem;
pub mod metal;
pub mod paging;
pub mod percpu;
pub mod redirect;
pub mod selftest;
pub mod serial;
pub mod smp;
pub mod softirq_stack;
pub mod stack;
pub mod stats;
pub mod switch;
pub mod sync;
pub mod sync_core;
pub mod text;
pub mod unwind;

pub use arch_api::{Arm, PatchSync, PointInfo, PokeError};
pub use metal::Metal;

/// What the bring-up found and set up.
pub struct Machine {
    /// The loader's start info.
    pub start: boot::StartInfo,
    /// The vector state enabled.
    pub vector: cpu::VectorState,
    /// The page tables built.
    pub mapped: paging::Mapped,
    /// The walk of the loaded tables.
    pub wx: paging::WxReport,
    /// The heap.
    pub heap: heap::Heap,
    /// The TSC at the Rust entry's first instruction of its own.
    pub tsc_at_rust: u64,
}

/// The image's Rust entry, called by `crate::boot`'s 64-bit code with the `hvm_start_info`
/// address: brings the machine up (see the crate's description) and runs the self-test.
#[no_mangle]
pub extern "C" fn metal_rust_entry(start_info: u64) -> ! {
    let tsc_at_rust = cpu::rdtsc();
    serial::init();
    percpu::init();
    kprintln!("atomkernel-metal: Rust entry (64-bit, SSE on), PVH start_info at {start_info:#x}");
    // SAFETY: `start_info` is the loader's `ebx` (boot.rs passes it unchanged) and the boot
    // tables identity-map the first 1 GiB.
    let start = match unsafe { boot::read_start_info(start_info) } {
        Ok(s) => s,
        Err(why) => fail(why),
    };
    kprintln!(
        "pvh: start_info version {}, cmdline \"{}\", memory map of {} entries",
        start.version,
        start.cmdline(),
        start.memmap().len()
    );
    let vendor = cpu::vendor();
    let leaf1 = cpu::cpuid(1, 0);
    // SAFETY: once, on the boot CPU, before any AVX code (the image has none).
    let vector = unsafe { cpu::enable_vector_state() };
    kprintln!(
        "cpu: {} family {:#x} model {:#x}; enabled: sse sse2 fxsr{}{}{}; xcr0 {:#x}, save area {} bytes",
        core::str::from_utf8(&vendor).unwrap_or("?"),
        (leaf1.eax >> 8) & 0xF,
        (leaf1.eax >> 4) & 0xF,
        if vector.xsave { " xsave" } else { "" },
        if vector.xcr0 & 4 != 0 { " avx" } else { "" },
        if vector.xcr0 & 0xE0 != 0 { " avx512" } else { "" },
        vector.xcr0,
        vector.xsave_size
    );
    if let Err(why) = idt::set_vector_state(&vector) {
        fail(why);
    }
    // SAFETY: once, on the boot CPU, interrupts off, before the IDT.
    unsafe { gdt::load() };
    // SAFETY: once, on the boot CPU, interrupts off, after the GDT and TSS.
    unsafe { idt::load() };
    kprintln!(
        "idt: 256 gates, every one on an IST stack (#DF {}, NMI {}, #MC {}, the rest {}; {} KiB each)",
        gdt::IST_DOUBLE_FAULT,
        gdt::IST_NMI,
        gdt::IST_MACHINE_CHECK,
        gdt::IST_OTHER,
        gdt::IST_STACK_SIZE / 1024
    );
    // SAFETY: once, on the boot CPU, interrupts off, on the boot stack, boot tables loaded.
    let mapped = match unsafe { paging::init() } {
        Ok(m) => m,
        Err(why) => fail(why),
    };
    let l = mapped.layout;
    kprintln!(
        "paging: text {:#x}-{:#x} r-x, rodata {:#x}-{:#x} r--, data {:#x}-{:#x} rw-, text alias {:#x} rw-, \
         identity to {:#x} (4 KiB pages to {:#x}), {} tables, CR0.WP on",
        l.text.0,
        l.text.1,
        l.rodata.0,
        l.rodata.1,
        l.data.0,
        l.data.1,
        paging::TEXT_ALIAS,
        mapped.identity_end,
        mapped.small_end,
        mapped.tables
    );
    let guards = l.guards();
    // each guard page unmapped, the stack above it mapped
    let unmapped = guards.iter().filter(|&&g| crate::stack::guard_holds(g + 4096)).count();
    kprintln!(
        "guards: {unmapped} of {} guard pages unmapped (the boot stack's at {:#x}, below IST stacks 1-4 at {:#x} {:#x} {:#x} {:#x})",
        guards.len(),
        guards[0],
        guards[1],
        guards[2],
        guards[3],
        guards[4]
    );
    if unmapped != guards.len() {
        fail("a guard page is mapped, or the stack above it is not");
    }
    let wx = paging::check_wx();
    kprintln!(
        "W^X: {} leaf entries, {} executable, {} writable, {} both writable and executable",
        wx.leaves,
        wx.executable,
        wx.writable,
        wx.both
    );
    if let Some(at) = wx.first_both {
        kprintln!("W^X broken: the page at {at:#x} is writable and executable");
        fail("W^X does not hold");
    }
    // SAFETY: once; from `small_end` on, the identity map is read-write and holds nothing
    // of the image or its tables (all below `small_end`).
    let heap = match unsafe { heap::init(start.memmap(), mapped.small_end, mapped.identity_end) } {
        Ok(h) => h,
        Err(why) => fail(why),
    };
    kprintln!(
        "heap: {:#x}-{:#x} ({} MiB, talc) from the PVH memory map",
        heap.start,
        heap.end,
        (heap.end - heap.start) >> 20
    );
    // The boot CPU's softirq stack (each AP's: `smp::start_aps`).
    if let Err(why) = softirq_stack::alloc(0) {
        fail(why)
    }
    let tsc_hz = clock::calibrate();
    let (x2apic, apic_hz) = apic::init();
    kprintln!(
        "time: TSC {} kHz (calibrated against the PIT), local APIC {} (timer {} kHz after /16), GS base per-CPU block",
        tsc_hz / 1000,
        if x2apic { "x2APIC" } else { "xAPIC (MMIO)" },
        apic_hz / 1000
    );
    // SAFETY: once, on the boot CPU, interrupts off, after the APIC, before the APs.
    match unsafe { hpet::init(start.rsdp_paddr) } {
        Ok(Ok(d)) => kprintln!(
            "device: HPET at {:#x}, period {} fs, comparator {} -> IOAPIC pin {} (GSI {}) -> vector {:#x}, {} device timers multiplexed on it",
            d.base,
            d.period_fs,
            d.comparator,
            d.pin,
            d.gsi,
            hpet::VECTOR_DEVICE,
            hpet::SLOTS
        ),
        Ok(Err(why)) => kprintln!("device: {why}; device timers are slots of the arming CPU's local APIC timer"),
        Err(why) => fail(why),
    }
    match smp::start_aps(start.rsdp_paddr) {
        Ok(ids) => kprintln!(
            "smp: {} CPU(s) in the ACPI MADT, APIC IDs {:?}; {} AP(s) online by INIT-SIPI-SIPI (trampoline at {:#x}), each with its GDT, TSS, 4 IST stacks, GS block and APIC, parked",
            ids.len(),
            ids,
            ids.len() - 1,
            smp::TRAMPOLINE
        ),
        Err(why) => fail(why),
    }
    let m = Machine { start, vector, mapped, wx, heap, tsc_at_rust };
    if boot::cmdline_value(m.start.cmdline(), "fault").is_none() {
        extern "Rust" {
            /// The image's main (crates/arch-metal/src/main.rs).
            fn metal_image_main(cmdline: &str) -> !;
        }
        // SAFETY: the image (crates/arch-metal/src/main.rs) defines `metal_image_main`: it
        // runs the kernel core on this machine and exits; a command line with `fault=` runs
        // the machine's self-test instead.
        unsafe { metal_image_main(m.start.cmdline()) }
    }
    selftest::run(&m)
}

/// Prints `BOOT FAILED: why` and exits with [`exit_codes::PANIC`].
fn fail(why: &str) -> ! {
    kprintln!("BOOT FAILED: {why}");
    serial::exit(exit_codes::PANIC)
}

/// The image's panic handler's body: prints `PANIC: ...` and exits with [`exit_codes::PANIC`].
pub fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    kprintln!("PANIC: {info}");
    metal::run_panic_hook(info);
    serial::exit(exit_codes::PANIC)
}
