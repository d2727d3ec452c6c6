//! PVH entry: QEMU's `-kernel IMAGE` jumps to `metal_pvh_start` in 32-bit protected mode;
//! this code switches to long mode and calls the image's Rust entry, `metal_rust_entry`.
//!
//! **Mechanism.** The ELF note `XEN_ELFNOTE_PHYS32_ENTRY` (type 18, name `"Xen"`) names the
//! 32-bit entry's physical address; QEMU's PVH loader (its `pvh.bin` option ROM) loads the ELF
//! segments at their physical addresses and enters there with paging off, flat 4 GiB
//! segments, interrupts off and `ebx` = the physical address of an `hvm_start_info`
//! (Xen's `include/public/arch-x86/hvm/start_info.h`). The entry zeroes `.bss`, checks that
//! the CPU has long mode, identity-maps the first 1 GiB with 2 MiB pages (boot tables in
//! `.bss`), enables PAE, SSE (`CR4.OSFXSR`, `CR4.OSXMMEXCPT`, `CR0.EM` off, `CR0.MP` on),
//! `EFER.LME` and `EFER.NXE` (when CPUID offers NX), turns paging on, loads a boot GDT and
//! far-returns into a 64-bit code segment, which calls Rust on the 64 KiB boot stack with
//! the `start_info` address as its argument. [`crate::paging`] then replaces the boot tables.
//!
//! **Invariant.** No Rust code runs before SSE is enabled and the stack is 16-byte aligned at
//! the call (the host target's precompiled `core` uses SSE and the SysV ABI), and no
//! interrupt can arrive before the IDT is loaded (IF stays 0 throughout).

use crate::exit_codes;

core::arch::global_asm!(
    // ---- The PVH note: QEMU reads the 32-bit entry's physical address from it ----------
    ".section .note.pvh, \"a\", @note",
    ".balign 4",                      // notes are 4-byte aligned
    ".long 4",                        // n_namesz: "Xen" and its NUL
    ".long 8",                        // n_descsz: QEMU reads a 64-bit address from an ELF64 note
    ".long 18",                       // n_type: XEN_ELFNOTE_PHYS32_ENTRY
    ".asciz \"Xen\"",                 // the name, 4 bytes
    ".balign 4",                      // the descriptor starts on a 4-byte boundary
    ".quad metal_pvh_start",          // the descriptor: the entry's physical address
    // ---- The boot GDT: null, 64-bit code (0x08), flat data (0x10) ------------------------
    ".section .rodata.metal_boot_gdt, \"a\"",
    ".balign 16",                     // aligned for lgdt's sake (not required, faster)
    "metal_boot_gdt:",
    ".quad 0",                        // selector 0x00: the null descriptor
    ".quad 0x00AF9A000000FFFF",       // selector 0x08: ring-0 code, L=1 (64-bit), present
    ".quad 0x00CF92000000FFFF",       // selector 0x10: ring-0 data, flat 4 GiB, writable
    "metal_boot_gdt_ptr:",
    ".word 3 * 8 - 1",                // the GDT's limit: 3 descriptors
    ".quad metal_boot_gdt",           // its base (32-bit mode reads the low 4 bytes)
    // ---- Boot page tables and the boot stack, in .bss (zeroed below) ---------------------
    ".section .bss.metal_boot, \"aw\", @nobits",
    ".balign 4096",                   // page tables are page-aligned
    ".global metal_boot_pml4",
    "metal_boot_pml4: .skip 4096",    // the boot PML4: entry 0 -> the PDPT
    "metal_boot_pdpt: .skip 4096",    // the boot PDPT: entry 0 -> the PD
    "metal_boot_pd: .skip 4096",      // the boot PD: 512 2-MiB pages, 0..1 GiB identity
    ".global metal_boot_stack_bottom",
    "metal_boot_stack_bottom: .skip 65536", // the boot stack (the Rust entry runs on it)
    ".global metal_boot_stack_top",
    "metal_boot_stack_top:",          // its top: 16-byte aligned (4096-aligned base + 64 KiB)
    ".global metal_tsc_at_pvh_entry",
    "metal_tsc_at_pvh_entry: .skip 8", // the TSC when the PVH entry ran (for the boot's timing)
    // ---- The 32-bit entry ----------------------------------------------------------------
    ".section .metal.boot32, \"ax\"",
    ".code32",                        // PVH enters in 32-bit protected mode
    ".global metal_pvh_start",
    "metal_pvh_start:",
    "cli",                            // interrupts stay off until Rust has an IDT
    "cld",                            // string instructions count upwards
    "mov esi, ebx",                   // esi = start_info's address (cpuid clobbers ebx)
    "mov edi, offset __bss_start",    // edi = the first byte of .bss
    "mov ecx, offset __bss_end",      // ecx = the end of .bss
    "sub ecx, edi",                   // ecx = the size of .bss
    "xor eax, eax",                   // the fill byte: zero
    "rep stosb",                      // zero .bss: boot tables, stacks, Rust statics
    "rdtsc",                          // edx:eax = the TSC now (CR4.TSD is 0: allowed)
    "mov dword ptr [metal_tsc_at_pvh_entry], eax", // its low half
    "mov dword ptr [metal_tsc_at_pvh_entry + 4], edx", // its high half
    "mov esp, offset metal_boot_stack_top", // a stack, in case anything below pushes
    "mov eax, 0x80000000",            // CPUID: the highest extended leaf
    "cpuid",                          // eax = that leaf
    "cmp eax, 0x80000001",            // is leaf 0x80000001 there?
    "jb 3f",                          // no: no long mode either
    "mov eax, 0x80000001",            // CPUID: extended features
    "cpuid",                          // edx bit 29 = long mode, bit 20 = NX
    "bt edx, 29",                     // long mode?
    "jnc 3f",                         // no: exit with NO_LONG_MODE
    "mov ebp, edx",                   // keep the extended features for the NX test below
    "mov eax, offset metal_boot_pdpt", // eax = the PDPT's physical address
    "or eax, 3",                      // present | writable
    "mov dword ptr [metal_boot_pml4], eax", // PML4[0] -> the PDPT (high half stays 0)
    "mov eax, offset metal_boot_pd",  // eax = the PD's physical address
    "or eax, 3",                      // present | writable
    "mov dword ptr [metal_boot_pdpt], eax", // PDPT[0] -> the PD
    "mov edi, offset metal_boot_pd",  // edi walks the PD's entries
    "mov eax, 0x83",                  // present | writable | 2 MiB page, at physical 0
    "mov ecx, 512",                   // 512 entries: 1 GiB
    "2:",
    "mov dword ptr [edi], eax",       // PD[i] = i * 2 MiB | flags (the high half stays 0)
    "add eax, 0x200000",              // the next 2 MiB
    "add edi, 8",                     // the next entry
    "dec ecx",                        // one entry fewer to go
    "jnz 2b",                         // until all 512 are written
    "mov eax, cr4",                   // CR4:
    "or eax, 0x620",                  // PAE (bit 5) | OSFXSR (bit 9) | OSXMMEXCPT (bit 10)
    "mov cr4, eax",                   // PAE paging; SSE instructions and SSE exceptions on
    "mov eax, offset metal_boot_pml4", // eax = the boot PML4
    "mov cr3, eax",                   // the boot tables (used once paging is on)
    "mov ecx, 0xC0000080",            // the IA32_EFER MSR
    "rdmsr",                          // edx:eax = EFER
    "or eax, 0x100",                  // LME (bit 8): long mode once paging is on
    "bt ebp, 20",                     // does the CPU offer NX?
    "jnc 4f",                         // no: leave NXE off (paging.rs refuses to go on)
    "or eax, 0x800",                  // NXE (bit 11): the NX bit of page entries is honoured
    "4:",
    "wrmsr",                          // EFER = edx:eax
    "mov eax, cr0",                   // CR0:
    "and eax, 0xFFFFFFFB",            // EM (bit 2) off: x87/SSE instructions run, not trap
    "or eax, 0x80000002",             // PG (bit 31) | MP (bit 1): paging on, so long mode
    "mov cr0, eax",                   // IA-32e mode is active (compatibility mode for now)
    "lgdt [metal_boot_gdt_ptr]",      // the boot GDT, with its 64-bit code segment
    "mov eax, 0x08",                  // the far return's CS: 64-bit code
    "push eax",                       // pushed first (32 bits), popped second
    "mov eax, offset metal_long_entry", // the far return's EIP
    "push eax",                       // pushed second, popped first
    "retf",                           // pop EIP and CS: 64-bit mode from here
    "3:",
    "mov dx, 0xf4",                   // the isa-debug-exit port
    "mov eax, {no_long_mode}",        // the status: no long mode
    "out dx, eax",                    // QEMU exits here (with the device present)
    "5:",
    "hlt",                            // without the device: stop here
    "jmp 5b",                         // (hlt returns after an NMI)
    // ---- 64-bit: segments, stack, and the call into Rust ----------------------------------
    ".code64",                        // the far return above lands here in 64-bit mode
    "metal_long_entry:",
    "mov ax, 0x10",                   // the boot GDT's data segment
    "mov ds, ax",                     // data
    "mov es, ax",                     // string destination
    "mov ss, ax",                     // stack
    "xor eax, eax",                   // the null selector
    "mov fs, ax",                     // fs: unused (its base is an MSR in long mode)
    "mov gs, ax",                     // gs: the same (per-CPU data comes later)
    "lea rsp, [rip + metal_boot_stack_top]", // the boot stack, 16-byte aligned
    "mov edi, esi",                   // first argument: start_info's physical address
    "xor ebp, ebp",                   // the outermost frame
    "call metal_rust_entry",          // the image's Rust entry; it never returns
    "ud2",                            // (if it did: an invalid-opcode exception)
    no_long_mode = const exit_codes::NO_LONG_MODE,
);

/// The magic value in `hvm_start_info.magic`: `"xEn3"` with the 0x80 bit of the `E` set.
pub const HVM_START_MAGIC: u32 = 0x336e_c578;

/// The first fields of Xen's `hvm_start_info` (version 1 adds the memory map).
#[repr(C)]
#[derive(Clone, Copy)]
struct HvmStartInfo {
    magic: u32,
    version: u32,
    _flags: u32,
    _nr_modules: u32,
    _modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    _reserved: u32,
}

/// One entry of the PVH memory map (`hvm_memmap_table_entry`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MemmapEntry {
    /// The region's physical base.
    pub addr: u64,
    /// Its size in bytes.
    pub size: u64,
    /// 1 = RAM, 2 = reserved, 3 = ACPI, 4 = NVS, 5 = unusable, 6 = disabled, 7 = PMEM.
    pub kind: u32,
    _reserved: u32,
}

/// The memory map's type for usable RAM.
pub const MEMMAP_RAM: u32 = 1;

/// The most memory-map entries kept.
pub const MEMMAP_MAX: usize = 32;
/// The longest command line kept.
pub const CMDLINE_MAX: usize = 256;

/// What the loader told the image, copied out of `hvm_start_info` (which QEMU's loader puts
/// in low memory, the map even in page 0, which the final page tables leave unmapped).
#[derive(Clone, Copy)]
pub struct StartInfo {
    /// The `hvm_start_info`'s physical address.
    pub paddr: u64,
    /// Its version (1: with the memory map).
    pub version: u32,
    /// The ACPI RSDP's physical address (0: the loader gave none).
    pub rsdp_paddr: u64,
    cmdline: [u8; CMDLINE_MAX],
    cmdline_len: usize,
    memmap: [MemmapEntry; MEMMAP_MAX],
    memmap_len: usize,
}

impl StartInfo {
    /// The kernel command line (`-append`), empty if none, cut at [`CMDLINE_MAX`] bytes.
    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }

    /// The memory map (empty before version 1), its first [`MEMMAP_MAX`] entries.
    pub fn memmap(&self) -> &[MemmapEntry] {
        &self.memmap[..self.memmap_len]
    }
}

/// Copies the loader's `hvm_start_info` at `paddr`, or says why it cannot.
///
/// # Safety
/// `paddr` must be the `ebx` the PVH loader entered with, and the first 1 GiB must still be
/// identity-mapped (the start info, its command line and its memory map lie below it), page
/// 0 included (the boot tables map it).
pub unsafe fn read_start_info(paddr: u64) -> Result<StartInfo, &'static str> {
    if paddr == 0 || paddr >= 1 << 30 {
        return Err("the start_info address is 0 or above 1 GiB");
    }
    // SAFETY: the loader put an `hvm_start_info` at `paddr` (the caller's contract), readable
    // through the identity map; read unaligned, as the ABI promises only 8-byte fields.
    let info = unsafe { core::ptr::read_unaligned(paddr as *const HvmStartInfo) };
    if info.magic != HVM_START_MAGIC {
        return Err("the start_info magic is not XEN_HVM_START_MAGIC_VALUE");
    }
    let empty = MemmapEntry { addr: 0, size: 0, kind: 0, _reserved: 0 };
    let mut out = StartInfo {
        paddr,
        version: info.version,
        rsdp_paddr: info.rsdp_paddr,
        cmdline: [0; CMDLINE_MAX],
        cmdline_len: 0,
        memmap: [empty; MEMMAP_MAX],
        memmap_len: 0,
    };
    if info.cmdline_paddr != 0 && info.cmdline_paddr < 1 << 30 {
        while out.cmdline_len < CMDLINE_MAX {
            // SAFETY: the loader's command line is a NUL-terminated string at that address,
            // below 1 GiB (checked); the loop stops at its NUL.
            let b = unsafe { core::ptr::read((info.cmdline_paddr + out.cmdline_len as u64) as *const u8) };
            if b == 0 {
                break;
            }
            out.cmdline[out.cmdline_len] = b;
            out.cmdline_len += 1;
        }
    }
    if info.version >= 1 && info.memmap_paddr != 0 && info.memmap_paddr < 1 << 30 {
        out.memmap_len = (info.memmap_entries as usize).min(MEMMAP_MAX);
        for i in 0..out.memmap_len {
            let at = info.memmap_paddr + (i * core::mem::size_of::<MemmapEntry>()) as u64;
            // SAFETY: version 1 puts `memmap_entries` entries of this layout at
            // `memmap_paddr`, below 1 GiB (checked); read unaligned.
            out.memmap[i] = unsafe { core::ptr::read_unaligned(at as *const MemmapEntry) };
        }
    }
    Ok(out)
}

/// The value of `key=` in the command line, if given.
pub fn cmdline_value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline.split_ascii_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// The TSC when the 32-bit PVH entry ran (just after it zeroed `.bss`).
pub fn tsc_at_pvh_entry() -> u64 {
    extern "C" {
        static metal_tsc_at_pvh_entry: u64;
    }
    // SAFETY: written once by the 32-bit entry before any Rust runs, never again; 8-byte
    // aligned (it follows the page-aligned tables and stack).
    unsafe { core::ptr::read_volatile(&raw const metal_tsc_at_pvh_entry) }
}
