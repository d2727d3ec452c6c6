//! The device timer: one HPET comparator in one-shot mode, routed through the IOAPIC to the
//! CPU the device's interrupt is for, independent of the CPUs under test.
//!
//! **Mechanism.** [`init`] finds the HPET in the ACPI table `"HPET"` (its register block's
//! address in the generic address at byte 44), maps its page uncached
//! (`crate::paging::map_mmio`) and reads the capabilities (the counter's period in fs in bits
//! 32-63, the comparators in bits 8-12, a 64-bit counter in bit 13). It takes the highest
//! comparator with a 64-bit comparator whose `Tn_INT_ROUTE_CAP` (bits 32-63 of its
//! configuration) names a GSI of 16 or more of an IOAPIC (`crate::ioapic`; GSIs 0-15 belong
//! to the ISA devices: GSI 2 is the PIT's IRQ 0, the only route `-machine pc`'s HPET offers),
//! sets it edge-triggered, one-shot, 64-bit and routed to
//! that GSI (no legacy replacement route), and starts the main counter. Every device timer
//! is a slot of `Slots` (at most [`SLOTS`]: the core can have several devices), multiplexed
//! in software on that one comparator: after any change the comparator holds the earliest
//! armed deadline, converted from the core's ns ([`crate::clock::now_ns`], TSC-calibrated) to
//! the counter with its period, and the IOAPIC pin's entry names that slot's CPU (its APIC
//! ID) on [`VECTOR_DEVICE`]. The interrupt there ([`expire`], from `crate::irq`) moves each
//! expired slot of that CPU's line into the CPU's pending lines (`crate::apic`), the path a
//! raised line takes, and reprograms. A deadline already past is programmed
//! [`MIN_TICKS`] ahead, i.e. at once; if the counter passed the comparator while it was
//! written (an edge the HPET would never give), the distance is doubled and written again.
//! Without such an HPET the device timer is a slot of the arming CPU's local APIC timer
//! ([`crate::apic`]) raising the line on the device's CPU by IPI, as [`DeviceTimer::Apic`].
//!
//! **Invariant.** The slots, the comparator and the pin's entry change only under the one
//! lock of `Slots` (a `RawIrqSpinLock`: interrupts masked), and after any change the
//! comparator is enabled exactly when a slot is armed, for the earliest armed deadline, with
//! the pin pointing at that slot's CPU: no deadline is missed, and each device interrupt
//! arrives through the IOAPIC on the CPU its device names.

use crate::ioapic::IoApic;
use crate::smp::MAX_CPUS;
use crate::sync::RawIrqSpinLock;
use crate::{acpi, apic, clock, percpu};
use core::sync::atomic::{AtomicU64, Ordering};

/// The device comparator's vector.
pub const VECTOR_DEVICE: u8 = 0x42;
/// How many device timers the comparator carries.
pub const SLOTS: usize = 16;
/// The least distance (counter ticks) a comparator is written ahead of the counter.
pub const MIN_TICKS: u64 = 16;

const REG_CAP: u64 = 0x00;
const REG_CONFIG: u64 = 0x10;
const REG_COUNTER: u64 = 0xF0;
const CONFIG_ENABLE: u64 = 1 << 0;
const CONFIG_LEGACY: u64 = 1 << 1;
const CAP_COUNT_64: u64 = 1 << 13;
const TN_INT_ENB: u64 = 1 << 2;
const TN_PERIODIC: u64 = 1 << 3;
const TN_SIZE_64: u64 = 1 << 5;
const TN_32MODE: u64 = 1 << 8;
const TN_FSB: u64 = 1 << 14;
/// The longest period the HPET specification allows (100 ns, in fs).
const MAX_PERIOD_FS: u64 = 100_000_000;

/// The HPET comparator in use and its route.
pub struct Hpet {
    /// The register block (physical = virtual).
    pub base: u64,
    /// The counter's period in femtoseconds.
    pub period_fs: u64,
    /// The comparator used.
    pub comparator: u32,
    /// The GSI it is routed to.
    pub gsi: u32,
    /// The IOAPIC serving that GSI.
    pub ioapic: IoApic,
}

impl Hpet {
    fn read(&self, reg: u64) -> u64 {
        // SAFETY: the HPET's register page is mapped uncached (`init`); its registers are
        // 64-bit, read whole.
        unsafe { core::ptr::read_volatile((self.base + reg) as *const u64) }
    }

    fn write(&self, reg: u64, v: u64) {
        // SAFETY: as in `read`; the values written are valid for the registers named.
        unsafe { core::ptr::write_volatile((self.base + reg) as *mut u64, v) }
    }

    fn tn(&self, n: u32) -> u64 {
        0x100 + 0x20 * u64::from(n)
    }

    /// The comparator's configuration for `enabled`: edge, one-shot, 64-bit, routed to `gsi`.
    fn arm_config(&self, enabled: bool) -> u64 {
        let keep =
            self.read(self.tn(self.comparator)) & !(TN_INT_ENB | TN_PERIODIC | TN_32MODE | TN_FSB | (0x1F << 9) | 2);
        keep | u64::from(self.gsi) << 9 | if enabled { TN_INT_ENB } else { 0 }
    }

    fn ns_ticks(&self, ns: u64) -> u64 {
        (u128::from(ns) * 1_000_000 / u128::from(self.period_fs)).min(u128::from(u64::MAX / 2)) as u64
    }
}

/// One device timer on the comparator.
#[derive(Clone, Copy)]
struct Slot {
    used: bool,
    armed: bool,
    /// The CPU whose line it raises.
    target: u32,
    line: u32,
    deadline: u64,
}

const EMPTY: Slot = Slot { used: false, armed: false, target: 0, line: 0, deadline: 0 };

/// The comparator's state: the HPET (if [`init`] found one), its slots and the CPU the pin
/// points at.
struct Slots {
    hpet: Option<Hpet>,
    slots: [Slot; SLOTS],
    routed_to: u32,
}

static STATE: lock_api::Mutex<RawIrqSpinLock, Slots> =
    lock_api::Mutex::new(Slots { hpet: None, slots: [EMPTY; SLOTS], routed_to: 0 });

/// Device interrupts taken on [`VECTOR_DEVICE`], device timers armed, by CPU number; and the
/// deadlines already past when armed.
static DELIVERED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static ARMED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static PAST: AtomicU64 = AtomicU64::new(0);

/// What [`init`] set up, for the boot line.
pub struct Found {
    /// The register block.
    pub base: u64,
    /// The period in fs.
    pub period_fs: u64,
    /// The comparator, its GSI, and the IOAPIC pin (GSI minus the IOAPIC's base).
    pub comparator: u32,
    /// The GSI.
    pub gsi: u32,
    /// The IOAPIC's pin.
    pub pin: u32,
}

/// Finds and sets up the HPET (see the module's description); `Ok(Err(why))` when there is
/// none the device can use (the device timers then use the local APIC).
///
/// # Safety
/// Once, on the boot CPU, interrupts off, after `crate::apic::init` and before the APs start.
pub unsafe fn init(rsdp_paddr: u64) -> Result<Result<Found, &'static str>, &'static str> {
    let Some(table) = acpi::find_table(rsdp_paddr, b"HPET")? else { return Ok(Err("no HPET in the ACPI tables")) };
    if acpi::rd8(table + 40) != 0 {
        return Err("the HPET's registers are not in memory space (ACPI HPET table)");
    }
    let base = acpi::rd64(table + 44);
    // SAFETY: the ACPI HPET table names this page as the HPET's registers; the caller's
    // conditions are map_mmio's.
    unsafe { crate::paging::map_mmio(base)? };
    // SAFETY: as in `Hpet::read`: the page was just mapped.
    let cap = unsafe { core::ptr::read_volatile((base + REG_CAP) as *const u64) };
    let period_fs = cap >> 32;
    if period_fs == 0 || period_fs > MAX_PERIOD_FS || cap & CAP_COUNT_64 == 0 {
        return Err("the HPET has no valid period or no 64-bit counter");
    }
    let comparators = ((cap >> 8) & 0x1F) as u32 + 1;
    // SAFETY: the caller's conditions, which are `choose`'s.
    let Some(hpet) = (unsafe { choose(rsdp_paddr, base, period_fs, comparators) }) else {
        return Ok(Err("the HPET has no 64-bit comparator routable to an IOAPIC pin of GSI 16 or more"));
    };
    hpet.write(REG_CONFIG, hpet.read(REG_CONFIG) & !(CONFIG_LEGACY | CONFIG_ENABLE));
    hpet.write(hpet.tn(hpet.comparator), hpet.arm_config(false));
    hpet.ioapic.route(hpet.gsi, VECTOR_DEVICE, apic::id());
    hpet.write(REG_CONFIG, hpet.read(REG_CONFIG) | CONFIG_ENABLE);
    let found =
        Found { base, period_fs, comparator: hpet.comparator, gsi: hpet.gsi, pin: hpet.gsi - hpet.ioapic.gsi_base };
    *STATE.lock() = Slots { hpet: Some(hpet), slots: [EMPTY; SLOTS], routed_to: 0 };
    Ok(Ok(found))
}

/// The highest comparator with a 64-bit comparator and a GSI of 16 or more an IOAPIC serves.
///
/// # Safety
/// As [`init`].
unsafe fn choose(rsdp_paddr: u64, base: u64, period_fs: u64, comparators: u32) -> Option<Hpet> {
    for n in (0..comparators).rev() {
        // SAFETY: comparator n's configuration register lies in the mapped page (n < 32).
        let config = unsafe { core::ptr::read_volatile((base + 0x100 + 0x20 * u64::from(n)) as *const u64) };
        let caps = config >> 32;
        if config & TN_SIZE_64 == 0 || caps == 0 {
            continue;
        }
        for gsi in (16..32).filter(|g| caps & (1 << g) != 0) {
            // SAFETY: as `init`'s.
            if let Ok(ioapic) = unsafe { crate::ioapic::find(rsdp_paddr, gsi) } {
                return Some(Hpet { base, period_fs, comparator: n, gsi, ioapic });
            }
        }
    }
    None
}

/// Whether the device timers use the HPET.
pub fn present() -> bool {
    STATE.lock().hpet.is_some()
}

/// A device timer: a slot of the HPET comparator, or (without an HPET) of the arming CPU's
/// local APIC timer.
#[derive(Debug)]
pub enum DeviceTimer {
    /// Slot n of the HPET comparator.
    Hpet(usize),
    /// A local APIC timer slot.
    Apic(apic::SlotId),
}

impl Drop for DeviceTimer {
    fn drop(&mut self) {
        match *self {
            DeviceTimer::Hpet(i) => with_state(|s| s.slots[i] = EMPTY),
            DeviceTimer::Apic(id) => apic::slot_free(id),
        }
    }
}

/// A new disarmed device timer raising `line` on CPU `target`.
pub fn device_timer_new(target: u32, line: u32) -> Result<DeviceTimer, &'static str> {
    if !present() {
        return apic::slot_new(target, line).map(DeviceTimer::Apic);
    }
    with_state(|s| {
        let i = s.slots.iter().position(|s| !s.used).ok_or("all 16 HPET device timers are in use")?;
        s.slots[i] = Slot { used: true, target, line, ..EMPTY };
        Ok(DeviceTimer::Hpet(i))
    })
}

/// Arms `t` for `deadline` (core ns); a later call replaces an earlier one not yet fired.
pub fn device_timer_fire_at(t: &DeviceTimer, deadline: u64) {
    ARMED[percpu::cpu_number() as usize].fetch_add(1, Ordering::Relaxed);
    match *t {
        DeviceTimer::Hpet(i) => with_state(|s| {
            if deadline <= clock::now_ns() {
                PAST.fetch_add(1, Ordering::Relaxed);
            }
            s.slots[i].armed = true;
            s.slots[i].deadline = deadline;
        }),
        DeviceTimer::Apic(id) => apic::slot_arm(id, deadline, 0),
    }
}

/// Runs `f` on the slots under their lock, then reprograms the comparator and the pin.
fn with_state<R>(f: impl FnOnce(&mut Slots) -> R) -> R {
    let mut s = STATE.lock();
    let r = f(&mut s);
    program(&mut s);
    r
}

/// Points the comparator at the earliest armed slot and the pin at its CPU (or disables it).
fn program(s: &mut Slots) {
    let Some(hpet) = &s.hpet else { return };
    let Some(next) = s.slots.iter().filter(|s| s.armed).min_by_key(|s| s.deadline).copied() else {
        hpet.write(hpet.tn(hpet.comparator), hpet.arm_config(false));
        return;
    };
    if next.target != s.routed_to {
        let Some(id) = crate::smp::apic_id(next.target) else {
            crate::kprintln!("BUG: a device interrupt for CPU {}, which is not running", next.target);
            crate::serial::exit(crate::exit_codes::PANIC)
        };
        hpet.ioapic.route(hpet.gsi, VECTOR_DEVICE, id);
        s.routed_to = next.target;
    }
    let cmp = hpet.tn(hpet.comparator) + 8;
    let (now, counter) = (clock::now_ns(), hpet.read(REG_COUNTER));
    let mut ticks = hpet.ns_ticks(next.deadline.saturating_sub(now)).max(MIN_TICKS);
    // the comparator before the enable: an enable over a stale comparator would fire early
    hpet.write(cmp, counter + ticks);
    hpet.write(hpet.tn(hpet.comparator), hpet.arm_config(true));
    while hpet.read(REG_COUNTER) >= counter + ticks {
        ticks *= 2; // the counter passed the comparator while it was written: no edge
        hpet.write(cmp, counter + ticks);
    }
}

/// The device vector's interrupt on this CPU: moves each expired slot of this CPU's line to
/// its pending lines and reprograms (an expired slot of another CPU is then at once due there).
pub fn expire() {
    let me = percpu::cpu_number();
    DELIVERED[me as usize].fetch_add(1, Ordering::Relaxed);
    with_state(|s| {
        let now = clock::now_ns();
        for slot in s.slots.iter_mut().filter(|s| s.armed && s.target == me && s.deadline <= now) {
            apic::set_pending(me, slot.line);
            slot.armed = false;
        }
    })
}

/// The device vector's interrupts taken on CPU `cpu` so far.
pub fn delivered(cpu: u32) -> u64 {
    DELIVERED.get(cpu as usize).map_or(0, |c| c.load(Ordering::Relaxed))
}

/// The device's figures as one JSON line's fields: its source, vector, the interrupts taken
/// on the device vector and the timers armed per CPU (the first `cpus`), and the deadlines
/// already past when armed.
pub fn report(cpus: u32) -> alloc::string::String {
    let per = |a: &[AtomicU64; MAX_CPUS]| {
        let v: alloc::vec::Vec<u64> = a.iter().take(cpus as usize).map(|c| c.load(Ordering::Relaxed)).collect();
        alloc::format!("{v:?}")
    };
    alloc::format!(
        "\"source\":\"{}\",\"vector\":{},\"delivered\":{},\"armed\":{},\"past_deadlines\":{}",
        if present() { "hpet" } else { "apic" },
        VECTOR_DEVICE,
        per(&DELIVERED),
        per(&ARMED),
        PAST.load(Ordering::Relaxed)
    )
}
