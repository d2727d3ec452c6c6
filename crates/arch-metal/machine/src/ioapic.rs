//! The I/O APIC: routes a device's interrupt pin to a vector on a chosen CPU.
//!
//! **Mechanism.** The MADT (`crate::acpi`) names each IOAPIC (type 1: ID at 2, register
//! base at 4, first GSI at 8). The HPET comparator used (`crate::hpet`) is routed to a GSI
//! of its own (its `Tn_INT_ROUTE_CAP`), not through the ISA IRQs, so the MADT's interrupt
//! source overrides (type 2: ISA IRQ 0 → GSI 2 on q35) are not needed. [`find`] takes the IOAPIC serving a GSI and
//! maps its register page uncached (`crate::paging::map_mmio`). The IOAPIC's registers are
//! indirect: the index goes to IOREGSEL (base + 0), the value through IOWIN (base + 0x10);
//! register 1 holds the last redirection entry's index (bits 16-23), and entry n is the
//! register pair 0x10 + 2n (low: vector, delivery mode, destination mode, polarity, trigger,
//! mask) and 0x11 + 2n (high: destination APIC ID in bits 24-31). [`IoApic::route`] writes a
//! pin's entry: masked first, then the destination, then the low word (fixed delivery,
//! physical destination, edge, active high, unmasked), so the pin never points half-way.
//!
//! **Invariant.** The index/data pair is used only under [`IoApic`]'s lock (interrupts
//! masked), so no other CPU's access comes between an index and its value.

use crate::acpi::{self, rd32};
use crate::sync::RawIrqSpinLock;

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const REG_VER: u32 = 0x01;
const REDTBL: u32 = 0x10;
/// An entry's mask bit (low word).
const MASKED: u32 = 1 << 16;

/// One IOAPIC, its registers mapped.
pub struct IoApic {
    /// Its register page (physical = virtual).
    pub base: u64,
    /// The GSI of its pin 0.
    pub gsi_base: u32,
    /// Its pins.
    pub pins: u32,
    /// Serializes the IOREGSEL/IOWIN pairs.
    lock: lock_api::Mutex<RawIrqSpinLock, ()>,
}

/// The IOAPICs and overrides the MADT lists: the IOAPIC whose pins hold `gsi`, its registers
/// mapped (once per IOAPIC page: callers call this once, at boot).
///
/// # Safety
/// As `crate::paging::map_mmio`: on the boot CPU, interrupts off, before the APs start.
pub unsafe fn find(rsdp_paddr: u64, gsi: u32) -> Result<IoApic, &'static str> {
    for e in acpi::madt_entries(rsdp_paddr)?.iter().filter(|e| e.kind == 1 && e.len >= 12) {
        let (base, gsi_base) = (u64::from(rd32(e.at + 4)), rd32(e.at + 8));
        // SAFETY: the MADT names this page as an IOAPIC's registers; the caller's conditions.
        unsafe { crate::paging::map_mmio(base)? };
        let io = IoApic { base, gsi_base, pins: 0, lock: lock_api::Mutex::new(()) };
        let pins = ((io.read(REG_VER) >> 16) & 0xFF) + 1;
        if (gsi_base..gsi_base + pins).contains(&gsi) {
            return Ok(IoApic { pins, ..io });
        }
    }
    Err("no IOAPIC in the MADT serves the HPET comparator's pin")
}

impl IoApic {
    fn read(&self, reg: u32) -> u32 {
        // SAFETY: the IOAPIC's register page is mapped uncached (`find`); IOREGSEL takes a
        // register index, IOWIN then reads that register.
        unsafe {
            core::ptr::write_volatile((self.base + IOREGSEL) as *mut u32, reg);
            core::ptr::read_volatile((self.base + IOWIN) as *const u32)
        }
    }

    fn write(&self, reg: u32, v: u32) {
        // SAFETY: as in `read`; the values written are valid for the registers named.
        unsafe {
            core::ptr::write_volatile((self.base + IOREGSEL) as *mut u32, reg);
            core::ptr::write_volatile((self.base + IOWIN) as *mut u32, v);
        }
    }

    /// Points `gsi` at `vector` on the CPU of APIC ID `apic_id`: fixed delivery, physical
    /// destination, edge-triggered, active high, unmasked.
    pub fn route(&self, gsi: u32, vector: u8, apic_id: u32) {
        let pin = gsi - self.gsi_base;
        let _g = self.lock.lock();
        self.write(REDTBL + 2 * pin, MASKED | u32::from(vector));
        self.write(REDTBL + 2 * pin + 1, apic_id << 24);
        self.write(REDTBL + 2 * pin, u32::from(vector));
    }

    /// Masks `gsi`.
    pub fn mask(&self, gsi: u32) {
        let pin = gsi - self.gsi_base;
        let _g = self.lock.lock();
        let low = self.read(REDTBL + 2 * pin);
        self.write(REDTBL + 2 * pin, low | MASKED);
    }
}
