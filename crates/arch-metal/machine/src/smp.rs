//! SMP bring-up: the application processors (APs) found in the ACPI MADT, started by
//! INIT-SIPI-SIPI through a real-mode trampoline, each with its own GDT, TSS, IST stacks,
//! per-CPU block (GS base) and local APIC.
//!
//! **Finding the CPUs.** The ACPI MADT (signature `"APIC"`, found by `crate::acpi` from the
//! RSDP the PVH start info names) lists them. The MADT's entries from byte 44 on name each processor: type 0
//! (processor local APIC: ACPI ID at 2, APIC ID at 3, flags at 4) and type 9 (processor
//! local x2APIC: x2APIC ID at 4, flags at 8), usable when flags bit 0 (enabled) or bit 1
//! (online capable) is set. The MADT is the source because it names every CPU's APIC ID,
//! which INIT and SIPI are addressed to; CPUID tells only the running CPU's own ID and the
//! PVH start info has no CPU list.
//!
//! **Mechanism.** [`start_aps`] copies the trampoline to [`TRAMPOLINE`] (0x8000: below 1 MiB
//! and 4 KiB aligned, as a SIPI's vector names a page there), fills its parameters (the boot
//! page tables, which map low memory executable for the switch, and the final CR3), then for
//! each AP in turn: allocates a 64 KiB stack, four IST stacks and its softirq stack
//! (`crate::softirq_stack`), each above an unmapped guard page (`crate::stack`), its GDT and TSS and its per-CPU block, sends INIT, waits
//! 10 ms, sends the STARTUP IPI twice 200 µs apart (the SDM's MP initialization protocol, vol.
//! 3 §9.4.4; a second SIPI to a CPU already running is ignored), and waits up to one second
//! for the AP to report. The AP runs 16-bit → 32-bit protected mode (the trampoline's own GDT)
//! → long mode (PAE, `EFER.LME|NXE`, paging with the boot tables) → 64-bit kernel text
//! (`metal_ap_long_entry`), which loads the final CR3 and its stack and calls
//! `metal_ap_rust_entry`: that sets its GS base, the boot CPU's CR0/CR4/XCR0, loads its
//! GDT, TSS and the shared IDT, enables its APIC (its timer one-shot, stopped), reports its APIC ID and
//! parks (`cli; hlt`).
//!
//! **Invariant.** One AP runs the trampoline at a time (its parameters are shared): the boot
//! CPU starts the next only after the previous reported. An AP runs no Rust before SSE is
//! on (the trampoline sets `CR4.OSFXSR`) and its stack is 16-byte aligned at the call.

use crate::{apic, clock, cpu, gdt, idt, percpu, stack::Stack};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

/// The trampoline's physical (and identity-mapped) address.
pub const TRAMPOLINE: u64 = 0x8000;
/// Each AP's stack for its Rust entry (then its idle context).
const AP_STACK: usize = 64 * 1024;

core::arch::global_asm!(
    // ---- The trampoline: copied to TRAMPOLINE, never run where it is linked ----------------
    ".section .rodata.metal_ap_tramp, \"a\"",
    ".balign 16",                     // copied as a whole, from its start
    ".global metal_ap_tramp_start",
    "metal_ap_tramp_start:",
    ".code16",                        // a STARTUP IPI starts the AP in real mode at CS:0 = page
    "cli",                            // no interrupts: there is no IDT for them
    "cld",                            // string instructions count upwards
    "xor ax, ax",                     // segment 0
    "mov ds, ax",                     // ds:offset = the physical address below
    ".byte 0x0F, 0x01, 0x16",         // lgdt [disp16] (16-bit addressing): the trampoline's GDT
    ".word {tramp} + (metal_ap_tramp_gdt_ptr - metal_ap_tramp_start)", // ... its pointer, where copied
    "mov eax, cr0",                   // CR0:
    "or eax, 1",                      // PE (bit 0): protected mode
    "mov cr0, eax",                   // on; CS still holds the real-mode segment
    ".byte 0x66, 0xEA",               // jmp ptr16:32 (operand-size prefix): reload CS
    ".long {tramp} + (metal_ap_tramp_pm32 - metal_ap_tramp_start)", // the target offset
    ".word 0x08",                     // ... in the 32-bit code segment
    ".code32",                        // from here 32-bit protected mode
    "metal_ap_tramp_pm32:",
    "mov ax, 0x10",                   // the trampoline GDT's flat data segment
    "mov ds, ax",                     // data
    "mov es, ax",                     // string destination
    "mov ss, ax",                     // stack (none used before long mode)
    ".byte 0xBE",                     // mov esi, imm32: esi = the parameters, where copied
    ".long {tramp} + (metal_ap_tramp_params - metal_ap_tramp_start)", // ... that immediate
    "mov eax, cr4",                   // CR4:
    "or eax, 0x620",                  // PAE (bit 5) | OSFXSR (bit 9) | OSXMMEXCPT (bit 10)
    "mov cr4, eax",                   // PAE paging; SSE on (Rust uses it)
    "mov eax, dword ptr [esi]",       // the boot PML4 (below 4 GiB: its low half suffices)
    "mov cr3, eax",                   // the boot tables: low memory and the image, executable
    "mov ecx, 0xC0000080",            // the IA32_EFER MSR
    "rdmsr",                          // edx:eax = EFER
    "or eax, 0x900",                  // LME (bit 8) | NXE (bit 11; the boot CPU checked NX)
    "wrmsr",                          // EFER = edx:eax
    "mov eax, cr0",                   // CR0:
    "and eax, 0xFFFFFFFB",            // EM (bit 2) off: SSE instructions run
    "or eax, 0x80000002",             // PG (bit 31) | MP (bit 1): paging on, so long mode
    "mov cr0, eax",                   // IA-32e mode active (compatibility mode until the jump)
    ".byte 0xEA",                     // jmp ptr16:32: to 64-bit code
    ".long metal_ap_long_entry",      // the kernel text's 64-bit entry (below 4 GiB)
    ".word 0x18",                     // ... in the 64-bit code segment
    ".balign 8",                      // the GDT's descriptors, 8-byte aligned
    "metal_ap_tramp_gdt:",
    ".quad 0",                        // 0x00: the null descriptor
    ".quad 0x00CF9A000000FFFF",       // 0x08: ring-0 code, 32-bit, flat 4 GiB
    ".quad 0x00CF92000000FFFF",       // 0x10: ring-0 data, flat 4 GiB, writable
    ".quad 0x00AF9A000000FFFF",       // 0x18: ring-0 code, L=1 (64-bit)
    "metal_ap_tramp_gdt_ptr:",
    ".word 4 * 8 - 1",                // the GDT's limit: 4 descriptors
    ".long {tramp} + (metal_ap_tramp_gdt - metal_ap_tramp_start)", // its base, where copied
    ".balign 8",                      // the parameters (`Params`), 8-byte aligned
    ".global metal_ap_tramp_params",
    "metal_ap_tramp_params:",
    ".skip 32",                       // boot CR3, final CR3, stack top, argument
    ".global metal_ap_tramp_end",
    "metal_ap_tramp_end:",
    ".code64",                        // back to 64-bit for everything after
    // ---- The AP's 64-bit entry, in the kernel text ----------------------------------------
    ".section .text.metal_ap_long_entry, \"ax\"",
    ".global metal_ap_long_entry",
    "metal_ap_long_entry:",
    "mov ax, 0x10",                   // the trampoline GDT's data segment (= KERNEL_DS)
    "mov ds, ax",                     // data
    "mov es, ax",                     // string destination
    "mov ss, ax",                     // stack
    "xor eax, eax",                   // the null selector
    "mov fs, ax",                     // fs: unused
    "mov gs, ax",                     // gs: its base is set by the Rust entry (an MSR)
    "mov esi, esi",                   // the parameters' address, zero-extended to 64 bits
    "mov rax, qword ptr [rsi + 8]",   // the final page tables (the boot CPU's CR3)
    "mov cr3, rax",                   // loaded: W^X from here; this code is r-x there
    "mov rsp, qword ptr [rsi + 16]",  // this AP's stack (16-byte aligned top)
    "mov rdi, qword ptr [rsi + 24]",  // first argument: this AP's `ApStart`
    "xor ebp, ebp",                   // the outermost frame
    "call metal_ap_rust_entry",       // never returns
    "ud2",                            // (if it did: an invalid-opcode exception)
    tramp = const TRAMPOLINE,
);

extern "C" {
    static metal_ap_tramp_start: u8;
    static metal_ap_tramp_params: u8;
    static metal_ap_tramp_end: u8;
    static metal_boot_pml4: u8;
}

/// The trampoline's parameters (at `metal_ap_tramp_params` in the copy).
#[repr(C)]
struct Params {
    boot_cr3: u64,
    final_cr3: u64,
    stack_top: u64,
    arg: u64,
}

/// What an AP needs to set itself up, prepared by the boot CPU (leaked).
struct ApStart {
    block: &'static percpu::PerCpu,
    tables: *mut gdt::CpuTables,
    ist_tops: [u64; gdt::IST_COUNT],
    cr0: u64,
    cr4: u64,
    xcr0: u64,
}

/// How many APs reported; the APIC IDs they read from their own APICs, by CPU number.
static ONLINE: AtomicU32 = AtomicU32::new(0);
static REPORTED_ID: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(u32::MAX) }; MAX_CPUS];
/// The most CPUs kept.
pub const MAX_CPUS: usize = 16;
/// The APIC IDs of the CPUs, by CPU number (0: the boot CPU), once [`start_aps`] ran.
static APIC_IDS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(u32::MAX) }; MAX_CPUS];
static CPUS: AtomicU32 = AtomicU32::new(1);

/// The number of CPUs running (the boot CPU and the APs that reported).
pub fn cpus() -> u32 {
    CPUS.load(Ordering::Acquire)
}

/// CPU `cpu`'s APIC ID, if it runs.
pub fn apic_id(cpu: u32) -> Option<u32> {
    let id = APIC_IDS.get(cpu as usize)?.load(Ordering::Acquire);
    (id != u32::MAX).then_some(id)
}

/// The APIC IDs of the usable processors the MADT lists, the boot CPU's among them.
pub fn madt_apic_ids(rsdp_paddr: u64) -> Result<Vec<u32>, &'static str> {
    let rd32 = crate::acpi::rd32;
    Ok(crate::acpi::madt_entries(rsdp_paddr)?
        .iter()
        .filter_map(|e| match e.kind {
            0 if e.len >= 8 && rd32(e.at + 4) & 3 != 0 => Some(rd32(e.at) >> 24),
            9 if e.len >= 16 && rd32(e.at + 8) & 3 != 0 => Some(rd32(e.at + 4)),
            _ => None,
        })
        .collect())
}

/// Waits `ns` nanoseconds on the TSC.
fn wait_ns(ns: u64) {
    let t0 = cpu::rdtsc();
    let cycles = clock::ns_cycles(ns);
    while cpu::rdtsc() - t0 < cycles {
        core::hint::spin_loop();
    }
}

/// Starts every AP the MADT lists (see the module's description); returns the APIC IDs by
/// CPU number. Once, on the boot CPU, interrupts off, after the heap, the clock and the APIC.
pub fn start_aps(rsdp_paddr: u64) -> Result<Vec<u32>, &'static str> {
    let me = apic::id();
    let mut ids = madt_apic_ids(rsdp_paddr)?;
    ids.retain(|&id| id != me);
    ids.insert(0, me);
    ids.truncate(MAX_CPUS);
    APIC_IDS[0].store(me, Ordering::Release);
    // linker symbols: the trampoline's bounds in the image, its parameters' place, the boot PML4
    let (start, params, end, boot_pml4) = (
        (&raw const metal_ap_tramp_start) as u64,
        (&raw const metal_ap_tramp_params) as u64,
        (&raw const metal_ap_tramp_end) as u64,
        (&raw const metal_boot_pml4) as u64,
    );
    let size = (end - start) as usize;
    if size > 4096 {
        return Err("the AP trampoline exceeds its page");
    }
    // SAFETY: TRAMPOLINE..+4 KiB is low RAM nothing else uses after boot (the loader's start
    // info was copied out), identity-mapped read-write; the source is the image's rodata.
    unsafe { core::ptr::copy_nonoverlapping(start as *const u8, TRAMPOLINE as *mut u8, size) };
    let p = (TRAMPOLINE + (params - start)) as *mut Params;
    let xcr0 = cpu::xcr0();
    for (n, &id) in ids.iter().enumerate().skip(1) {
        let stack = Stack::new(AP_STACK)?;
        let ists: Vec<Stack> =
            (0..gdt::IST_COUNT).map(|_| Stack::new(gdt::IST_STACK_SIZE)).collect::<Result<_, _>>()?;
        crate::softirq_stack::alloc(n)?;
        check_guards(n, &stack, &ists)?;
        let ap = alloc::boxed::Box::leak(alloc::boxed::Box::new(ApStart {
            block: percpu::new_ap_block(n as u32),
            tables: alloc::boxed::Box::leak(alloc::boxed::Box::new(gdt::CpuTables::new())),
            ist_tops: core::array::from_fn(|i| ists[i].hi),
            cr0: cpu::cr0(),
            cr4: cpu::cr4(),
            xcr0,
        }));
        let top = stack.hi;
        // The AP uses these stacks for as long as it runs.
        core::mem::forget(stack);
        core::mem::forget(ists);
        // SAFETY: the copy's parameter block; no AP runs the trampoline now (one at a time).
        unsafe {
            p.write_volatile(Params {
                boot_cr3: boot_pml4,
                final_cr3: cpu::cr3(),
                stack_top: top,
                arg: ap as *mut ApStart as u64,
            })
        };
        let before = ONLINE.load(Ordering::Acquire);
        apic::send_ipi(id, 0x4500); // INIT: delivery mode 101, level assert
        wait_ns(10_000_000);
        for _ in 0..2 {
            apic::send_ipi(id, 0x4600 | (TRAMPOLINE >> 12) as u32); // STARTUP, vector = the page
            wait_ns(200_000);
        }
        let t0 = clock::now_ns();
        while ONLINE.load(Ordering::Acquire) == before {
            if clock::now_ns() - t0 > 1_000_000_000 {
                return Err("an AP did not come up within 1 s of its STARTUP IPIs");
            }
            core::hint::spin_loop();
        }
        if REPORTED_ID[n].load(Ordering::Acquire) != id {
            return Err("an AP reported an APIC ID other than the MADT's");
        }
        APIC_IDS[n].store(id, Ordering::Release);
        CPUS.store(n as u32 + 1, Ordering::Release);
    }
    Ok(ids)
}

/// Reads back from the live tables the guard page below each of AP `n`'s stacks (its own, its
/// IST stacks, its softirq stack) and prints one line, as the boot does for CPU 0's.
fn check_guards(n: usize, stack: &Stack, ists: &[Stack]) -> Result<(), &'static str> {
    let softirq = crate::softirq_stack::of(n).ok_or("an AP has no softirq stack")?.0;
    let lows: Vec<u64> = core::iter::once(stack.lo).chain(ists.iter().map(|s| s.lo)).chain([softirq]).collect();
    let held = lows.iter().filter(|&&lo| crate::stack::guard_holds(lo)).count();
    let guards: Vec<alloc::string::String> =
        lows.iter().map(|lo| alloc::format!("{:#x}", crate::stack::guard_page(*lo))).collect();
    crate::kprintln!(
        "smp: CPU {n}'s guards: {held} of {} guard pages unmapped (below its stack, IST stacks 1-4, softirq stack: {})",
        lows.len(),
        guards.join(" ")
    );
    if held == lows.len() {
        Ok(())
    } else {
        Err("a guard page below an AP's stack is mapped, or the stack above it is not")
    }
}

/// An AP's Rust entry, called by `metal_ap_long_entry` on its own stack with the final page
/// tables loaded (see the module's description).
#[no_mangle]
extern "C" fn metal_ap_rust_entry(start: *mut ApStart) -> ! {
    // SAFETY: the boot CPU leaked this `ApStart` for this AP alone.
    let s = unsafe { &mut *start };
    percpu::init_ap(s.block);
    // SAFETY: the boot CPU's CR0 and CR4 (protected mode, paging, PAE, SSE, OSXSAVE, WP: what
    // this same CPU model runs with), then its XCR0 (valid here: the same CPUID).
    unsafe {
        cpu::write_cr0(s.cr0);
        cpu::write_cr4(s.cr4);
        if s.xcr0 != 0 {
            core::arch::asm!(
                "xsetbv", // XCR[ecx = 0] = edx:eax
                in("ecx") 0u32, in("eax") s.xcr0 as u32, in("edx") (s.xcr0 >> 32) as u32,
                options(nomem, nostack, preserves_flags)
            )
        }
    }
    // SAFETY: once on this AP, IF clear, its own tables and stacks (leaked by the boot CPU).
    unsafe { gdt::load_ap(&mut *s.tables, s.ist_tops) };
    // SAFETY: the boot CPU filled the IDT before starting APs; this AP's GDT and TSS are loaded.
    unsafe { idt::load_ap() };
    apic::init_ap();
    let n = percpu::cpu_number() as usize;
    let id = apic::id();
    let rsp: u64;
    // SAFETY: reads the stack pointer.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags)) };
    crate::kprintln!(
        "smp: CPU {n} up in long mode: APIC ID {id}, GS block {:#x}, TSS {:#x}, rsp {rsp:#x}, IST tops {:x?}",
        percpu::this() as *const percpu::PerCpu as usize,
        percpu::this().tss.get(),
        s.ist_tops
    );
    REPORTED_ID[n].store(id, Ordering::Release);
    ONLINE.fetch_add(1, Ordering::AcqRel);
    loop {
        crate::irq::local_irq_disable();
        if let Some(body) = MAILBOX[n].lock().take() {
            body(); // with IF clear, as CPU 0's body starts
            continue;
        }
        // SAFETY: `sti; hlt` (the `sti` shadow covers the `hlt`: a wake IPI pending now ends
        // the halt instead of being taken before it); the wake IPI's handler finds no lines.
        unsafe {
            core::arch::asm!(
                "sti", // IF on; the next instruction runs before any interrupt is taken
                "hlt", // wait for the wake IPI (`run_on`)
                options(nomem, nostack),
            )
        }
    }
}

/// A body for an AP to run.
type Body = alloc::boxed::Box<dyn FnOnce() + Send>;

/// Each AP's next body (`run_on`), by CPU number.
static MAILBOX: [lock_api::Mutex<crate::sync::RawIrqSpinLock, Option<Body>>; MAX_CPUS] =
    [const { lock_api::Mutex::new(None) }; MAX_CPUS];

/// Has parked CPU `cpu` run `body` on its own stack (its idle context from then on): posts it
/// and wakes the CPU with an IPI on the raise vector with no line pending (harmless whenever
/// it is taken).
pub fn run_on(cpu: u32, body: Body) -> core::result::Result<(), alloc::string::String> {
    if cpu >= cpus() {
        return Err(alloc::format!(
            "CPU {cpu} is not running: {} CPU(s) came up (boot QEMU with -smp {} or more)",
            cpus(),
            cpu + 1
        ));
    }
    let mut slot = MAILBOX[cpu as usize].lock();
    if slot.is_some() {
        return Err(alloc::format!("CPU {cpu} already has a body to run"));
    }
    *slot = Some(body);
    drop(slot);
    apic::wake(cpu);
    Ok(())
}

/// An AP's body's result, once it finished.
pub struct CpuResult<R> {
    done: core::sync::atomic::AtomicBool,
    value: lock_api::Mutex<crate::sync::RawIrqSpinLock, Option<R>>,
}

impl<R> CpuResult<R> {
    /// Not finished.
    pub fn new() -> Self {
        CpuResult { done: core::sync::atomic::AtomicBool::new(false), value: lock_api::Mutex::new(None) }
    }
    /// Stores the result (the AP, at its body's end).
    pub fn put(&self, v: R) {
        *self.value.lock() = Some(v);
        self.done.store(true, Ordering::Release);
    }
    /// Whether the body finished.
    pub fn done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }
    /// The result, if the body finished and it was not taken yet.
    pub fn take(&self) -> Option<R> {
        if self.done() {
            self.value.lock().take()
        } else {
            None
        }
    }
}

impl<R> Default for CpuResult<R> {
    fn default() -> Self {
        Self::new()
    }
}
