//! The final GDT and the TSS, whose IST stacks every interrupt gate uses.
//!
//! **Mechanism.** The GDT holds the null descriptor, ring-0 64-bit code (0x08), ring-0 data
//! (0x10) and the 16-byte TSS descriptor (0x18). The TSS's `ist[0..4]` point at the tops of
//! four 16 KiB stacks in `.bss`, each above an unmapped guard page ([`ist_guards`]): [`IST_DOUBLE_FAULT`], [`IST_NMI`], [`IST_MACHINE_CHECK`]
//! and [`IST_OTHER`] (every other vector). [`load`] loads the GDT, reloads CS by a far return
//! and the data segments, and loads the task register.
//!
//! **Invariant.** An interrupt or exception never pushes its frame on the interrupted stack:
//! every IDT gate names an IST stack, so the 128-byte red zone below the interrupted `rsp`
//! (which the host target's code assumes, it is not built with `-mno-red-zone`) is never
//! overwritten. The GDT and TSS are written once, on the boot CPU, before `load`, and never
//! again. Each application processor has its own GDT and TSS ([`CpuTables`], [`load_ap`]) and
//! IST stacks (`crate::smp`); each CPU's per-CPU block records its TSS.

use core::arch::asm;

/// The IST index (1-based, as in a gate) of the double fault's stack.
pub const IST_DOUBLE_FAULT: u8 = 1;
/// The IST index of the NMI's stack.
pub const IST_NMI: u8 = 2;
/// The IST index of the machine check's stack.
pub const IST_MACHINE_CHECK: u8 = 3;
/// The IST index of every other vector's stack.
pub const IST_OTHER: u8 = 4;
/// The number of IST stacks in use.
const IST_STACKS: usize = 4;
/// The size of each IST stack.
pub const IST_STACK_SIZE: usize = 32 * 1024;

/// The kernel code selector.
pub const KERNEL_CS: u16 = 0x08;
/// The kernel data selector.
pub const KERNEL_DS: u16 = 0x10;
/// The TSS selector.
const TSS_SEL: u16 = 0x18;

/// The 64-bit TSS (Intel SDM vol. 3, 8.7).
#[repr(C, packed(4))]
struct Tss {
    _reserved0: u32,
    rsp: [u64; 3],
    _reserved1: u64,
    ist: [u64; 7],
    _reserved2: u64,
    _reserved3: u16,
    iomap_base: u16,
}

const _: () = assert!(core::mem::size_of::<Tss>() == 104);

impl Tss {
    /// A TSS with no stacks set yet and no I/O permission bitmap (its base past the limit).
    const EMPTY: Tss =
        Tss { _reserved0: 0, rsp: [0; 3], _reserved1: 0, ist: [0; 7], _reserved2: 0, _reserved3: 0, iomap_base: 104 };
}

/// Each IST stack's slot: an unmapped guard page (`crate::paging` leaves it out), then the
/// stack, so that an overflowing stack faults instead of writing its neighbour.
const IST_SLOT: usize = IST_GUARD + IST_STACK_SIZE;
/// The guard page below each IST stack.
const IST_GUARD: usize = 4096;

#[repr(C, align(4096))]
struct IstStacks([[u8; IST_SLOT]; IST_STACKS]);

static mut IST: IstStacks = IstStacks([[0; IST_SLOT]; IST_STACKS]);

static mut TSS: Tss = Tss::EMPTY;

static mut GDT: [u64; 5] = [0; 5];

/// The IST stacks' ranges `[bottom, top)`, by IST index - 1.
pub fn ist_stacks() -> [(u64, u64); IST_STACKS] {
    core::array::from_fn(|i| {
        let bottom = ist_guards()[i] + IST_GUARD as u64;
        (bottom, bottom + IST_STACK_SIZE as u64)
    })
}

/// The guard pages below the IST stacks, by IST index - 1 (page-aligned: the slots are).
pub fn ist_guards() -> [u64; IST_STACKS] {
    let base = (&raw const IST) as u64;
    core::array::from_fn(|i| base + (i * IST_SLOT) as u64)
}

/// This CPU's IST 4 top as its TSS holds it now (see [`set_ist_other_top`]).
pub fn ist_other_top() -> u64 {
    let tss = crate::percpu::this().tss.get() as *const Tss;
    // SAFETY: `tss` is this CPU's TSS (recorded by `install`), written only on this CPU
    // (`install`, `set_ist_other_top`); the field is unaligned (the TSS is packed).
    unsafe { (&raw const (*tss).ist).cast::<u64>().add(usize::from(IST_OTHER) - 1).read_unaligned() }
}

/// Points the IST stack of every ordinary vector ([`IST_OTHER`]) at `top`; returns the old
/// top. `crate::softirq_stack::run_on_softirq_stack` moves it below the live frames of the
/// interrupt being served before the softirqs set IF, so that a nested interrupt does not
/// overwrite them.
///
/// # Safety
/// IF must be clear, and `top` must be a 16-byte aligned address with free stack below it
/// for as long as it stays set.
pub unsafe fn set_ist_other_top(top: u64) -> u64 {
    let tss = crate::percpu::this().tss.get() as *mut Tss;
    // SAFETY: `tss` is this CPU's TSS (recorded by `install`), only written here and by
    // `install`, with IF clear on its CPU; the CPU reads it only on an interrupt's entry, which
    // IF clear excludes. The field is unaligned (the TSS is packed), hence the unaligned
    // accesses.
    unsafe {
        let slot = (&raw mut (*tss).ist).cast::<u64>().add(usize::from(IST_OTHER) - 1);
        let old = slot.read_unaligned();
        slot.write_unaligned(top);
        old
    }
}

/// Fills and loads the boot CPU's GDT and TSS (its IST stacks in `.bss`), reloads the segment
/// registers and the task register.
///
/// # Safety
/// Called once, on the boot CPU, with interrupts off, before the IDT is loaded.
pub unsafe fn load() {
    // SAFETY: the boot CPU alone runs, with interrupts off, and nothing has loaded the GDT or
    // TSS yet (the caller's contract): these are the only accesses to both statics.
    unsafe { install(&raw mut GDT, &raw mut TSS, ist_stacks().map(|(_, top)| top)) }
}

/// An application processor's own GDT and TSS (`crate::smp`), leaked: the CPU uses them for
/// as long as it runs.
#[repr(C, align(16))]
pub struct CpuTables {
    gdt: [u64; 5],
    tss: Tss,
}

impl CpuTables {
    /// Empty tables, filled by [`load_ap`].
    pub const fn new() -> CpuTables {
        CpuTables { gdt: [0; 5], tss: Tss::EMPTY }
    }
}

impl Default for CpuTables {
    fn default() -> Self {
        Self::new()
    }
}

/// Fills and loads an application processor's GDT and TSS, with `ist_tops` (by IST index - 1)
/// as its IST stacks.
///
/// # Safety
/// Called once on the AP that owns `tables`, with interrupts off, before it loads the IDT;
/// each top must be the 16-byte aligned top of a stack of [`IST_STACK_SIZE`] bytes that stays.
pub unsafe fn load_ap(tables: &'static mut CpuTables, ist_tops: [u64; IST_STACKS]) {
    // SAFETY: the tables are this CPU's alone (the caller's contract).
    unsafe { install(&raw mut tables.gdt, &raw mut tables.tss, ist_tops) }
}

/// The number of IST stacks each CPU has.
pub const IST_COUNT: usize = IST_STACKS;

/// Fills `gdt` and `tss`, loads them on this CPU and records the TSS in its per-CPU block
/// (for [`set_ist_other_top`]).
///
/// # Safety
/// `gdt` and `tss` are this CPU's, live forever, and nothing else touches them now; IF clear.
unsafe fn install(gdt: *mut [u64; 5], tss: *mut Tss, ist_tops: [u64; IST_STACKS]) {
    let tss_addr = tss as u64;
    // SAFETY: the caller's contract: this CPU's tables, not loaded yet, IF clear.
    unsafe {
        for (i, top) in ist_tops.iter().enumerate() {
            (*tss).ist[i] = *top;
        }
        (*gdt)[0] = 0;
        (*gdt)[1] = 0x00AF_9A00_0000_FFFF; // code: present, ring 0, executable, L=1
        (*gdt)[2] = 0x00CF_9200_0000_FFFF; // data: present, ring 0, writable
        let limit = (core::mem::size_of::<Tss>() - 1) as u64;
        // the TSS descriptor's low quadword: limit 0..15, base 0..23, type 9 (available
        // 64-bit TSS), present; base 24..31, limit 16..19
        (*gdt)[3] = (limit & 0xFFFF)
            | ((tss_addr & 0xFF_FFFF) << 16)
            | (0x89 << 40)
            | (((limit >> 16) & 0xF) << 48)
            | (((tss_addr >> 24) & 0xFF) << 56);
        (*gdt)[4] = tss_addr >> 32; // its high quadword: base 32..63
    }
    crate::percpu::this().tss.set(tss_addr as usize);
    let ptr = DescriptorPointer { limit: (5 * 8 - 1) as u16, base: gdt as u64 };
    // SAFETY: the GDT above has the code and data descriptors at the selectors loaded here,
    // and the TSS's; the far return reloads CS from the new table (same flat code segment).
    unsafe {
        asm!(
            "lgdt [{ptr}]",             // the final GDT
            "push {cs}",                // the far return's CS
            "lea {tmp}, [rip + 2f]",    // the far return's RIP: the label below
            "push {tmp}",               // pushed after CS, popped first
            "retfq",                    // reload CS from the new GDT
            "2:",
            "mov ds, {ds:x}",           // data segments: the new data descriptor
            "mov es, {ds:x}",           // string destination
            "mov ss, {ds:x}",           // stack
            "ltr {tss:x}",              // the task register: IST stacks from here on
            ptr = in(reg) &ptr,
            cs = in(reg) u64::from(KERNEL_CS),
            ds = in(reg) KERNEL_DS,
            tss = in(reg) TSS_SEL,
            tmp = out(reg) _,
        )
    }
}

/// The operand of `lgdt` and `lidt`.
#[repr(C, packed(2))]
pub struct DescriptorPointer {
    /// The table's size in bytes, minus one.
    pub limit: u16,
    /// The table's linear address.
    pub base: u64,
}
