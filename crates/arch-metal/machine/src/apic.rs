//! The local APIC: the timer behind every CPU-local timer, self-IPIs for raised lines, EOI.
//!
//! **Mechanism.** [`init`] enables the APIC (`IA32_APIC_BASE` bit 11, and bit 10 for x2APIC
//! where CPUID.1:ECX.21 offers it: its registers are then MSRs `0x800 + reg / 16`; else they are
//! the xAPIC's MMIO page at `0xFEE0_0000`, mapped uncached by `crate::paging`), sets the
//! spurious vector with the software-enable bit, and measures the timer's rate (divide by 16)
//! against the calibrated TSC. The hardware has one timer; the core wants several per CPU (the
//! tick, the high-resolution timer, the retry timer, the device), so `Slots` multiplexes
//! them: each slot has a deadline in [`crate::clock::now_ns`] time, an optional period and the
//! line it raises; the APIC timer, in one-shot mode on [`VECTOR_TIMER`], is always programmed
//! for the earliest armed deadline. A raised line is a bit in the target CPU's `PENDING` word plus a self-IPI on
//! [`VECTOR_RAISE`], so it is taken as a real interrupt as soon as IF allows.
//!
//! **Invariant.** The slots and the APIC timer are changed only with interrupts masked (every
//! entry point masks them), on the CPU that owns them (one CPU in this step); after any change
//! the timer is programmed for the earliest armed slot, so no deadline is missed.

use crate::smp::MAX_CPUS;
use crate::{clock, cpu, percpu};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The xAPIC's physical (and identity-mapped) register page.
pub const XAPIC_BASE: u64 = 0xFEE0_0000;
/// The timer's vector.
pub const VECTOR_TIMER: u8 = 0x40;
/// The vector of a self-IPI that delivers raised lines.
pub const VECTOR_RAISE: u8 = 0x41;
/// The spurious-interrupt vector.
pub const VECTOR_SPURIOUS: u8 = 0xFF;

const REG_EOI: u32 = 0xB0;
const REG_SVR: u32 = 0xF0;
const REG_ICR_LO: u32 = 0x300;
const REG_ICR_HI: u32 = 0x310;
const REG_ID: u32 = 0x20;
/// The x2APIC's 64-bit ICR (destination in the high half).
const MSR_X2APIC_ICR: u32 = 0x830;
const REG_LVT_TIMER: u32 = 0x320;
const REG_TIMER_INIT: u32 = 0x380;
const REG_TIMER_CUR: u32 = 0x390;
const REG_TIMER_DIV: u32 = 0x3E0;
const MSR_APIC_BASE: u32 = 0x1B;
const MSR_X2APIC_SELF_IPI: u32 = 0x83F;
const LVT_MASKED: u32 = 1 << 16;

static X2APIC: AtomicBool = AtomicBool::new(false);
/// APIC timer ticks (after the divide by 16) per second.
static TIMER_HZ: AtomicU64 = AtomicU64::new(0);
/// Each CPU's lines raised and not yet delivered (bit n = line n), by CPU number.
static PENDING: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Marks `line` pending on CPU `cpu` without an interrupt: for a handler on that CPU whose
/// own vector delivers it (`crate::hpet`'s device interrupt), before `crate::irq` takes the
/// pending lines.
pub fn set_pending(cpu: u32, line: u32) {
    PENDING[cpu as usize].fetch_or(1 << line, Ordering::SeqCst);
}

/// Takes this CPU's pending lines.
pub fn take_pending() -> u64 {
    PENDING[percpu::cpu_number() as usize].swap(0, Ordering::SeqCst)
}

fn read(reg: u32) -> u32 {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: x2APIC mode is on; every register used here has an MSR.
        unsafe { cpu::rdmsr(0x800 + (reg >> 4)) as u32 }
    } else {
        // SAFETY: the xAPIC page is mapped uncached at its physical address (`crate::paging`).
        unsafe { core::ptr::read_volatile((XAPIC_BASE + u64::from(reg)) as *const u32) }
    }
}

fn write(reg: u32, v: u32) {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: as in `read`; the values written are valid for the registers named.
        unsafe { cpu::wrmsr(0x800 + (reg >> 4), u64::from(v)) }
    } else {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile((XAPIC_BASE + u64::from(reg)) as *mut u32, v) }
    }
}

/// Enables the APIC and measures its timer (see the module's description); once, at boot,
/// interrupts off, after [`clock::calibrate`]. Returns whether x2APIC is used and the timer's
/// rate.
pub fn init() -> (bool, u64) {
    disable_pic();
    let x2 = cpu::cpuid(1, 0).ecx & (1 << 21) != 0;
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC (CPUID.1:EDX.9, every x86-64);
    // setting EN (and EXTD where offered) keeps its base address.
    unsafe {
        let base = cpu::rdmsr(MSR_APIC_BASE);
        cpu::wrmsr(MSR_APIC_BASE, base | (1 << 11) | if x2 { 1 << 10 } else { 0 });
    }
    X2APIC.store(x2, Ordering::Relaxed);
    write(REG_SVR, 0x100 | u32::from(VECTOR_SPURIOUS));
    write(REG_TIMER_DIV, 0x3); // divide by 16
    write(REG_LVT_TIMER, LVT_MASKED | u32::from(VECTOR_TIMER));
    write(REG_TIMER_INIT, u32::MAX);
    let t0 = cpu::rdtsc();
    let window = clock::tsc_hz() / 100; // 10 ms
    while cpu::rdtsc() - t0 < window {}
    let ticks = u32::MAX - read(REG_TIMER_CUR);
    write(REG_TIMER_INIT, 0);
    let hz = u64::from(ticks) * 100;
    TIMER_HZ.store(hz, Ordering::Relaxed);
    write(REG_LVT_TIMER, u32::from(VECTOR_TIMER)); // one-shot, unmasked
    (x2, hz)
}

/// Enables this application processor's APIC in the boot CPU's mode (x2APIC or xAPIC), with
/// the spurious vector, and its timer one-shot, stopped and unmasked (its rate is the boot
/// CPU's, measured by [`init`]).
/// Once per AP, interrupts off.
pub fn init_ap() {
    let x2 = X2APIC.load(Ordering::Relaxed);
    // SAFETY: as in `init`: EN (and EXTD in x2APIC mode) keep the base address.
    unsafe {
        let base = cpu::rdmsr(MSR_APIC_BASE);
        cpu::wrmsr(MSR_APIC_BASE, base | (1 << 11) | if x2 { 1 << 10 } else { 0 });
    }
    write(REG_SVR, 0x100 | u32::from(VECTOR_SPURIOUS));
    write(REG_TIMER_DIV, 0x3); // divide by 16, as on the boot CPU
    write(REG_TIMER_INIT, 0); // stopped until a slot is armed
    write(REG_LVT_TIMER, u32::from(VECTOR_TIMER)); // one-shot, unmasked
}

/// This CPU's APIC ID (the x2APIC ID, or the xAPIC ID register's bits 24-31).
pub fn id() -> u32 {
    if X2APIC.load(Ordering::Relaxed) {
        read(REG_ID)
    } else {
        read(REG_ID) >> 24
    }
}

/// Sends an IPI: `low` is the ICR's low word (vector, delivery mode, level), to APIC ID `dest`
/// (no shorthand); returns once the xAPIC reports it sent (x2APIC writes need no wait).
pub fn send_ipi(dest: u32, low: u32) {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: `mfence; lfence` only order memory; the x2APIC ICR takes the destination in
        // bits 32-63 and the command in 0-31, and one 64-bit write sends it. The fences first,
        // as Linux's `weak_wrmsr_fence`: a WRMSR to an x2APIC register is not ordered after
        // earlier stores, so without them the IPI could arrive before what it announces (a
        // wake-up's state, a SYNC_CORE round's generation and written text) is visible.
        unsafe {
            core::arch::asm!("mfence", "lfence", options(nostack, preserves_flags)); // stores out, then go on
            cpu::wrmsr(MSR_X2APIC_ICR, (u64::from(dest) << 32) | u64::from(low))
        };
    } else {
        // IF clear: an interrupt sending its own IPI between the two writes would change the
        // destination under this one
        let was = crate::irq::local_irq_save();
        write(REG_ICR_HI, dest << 24);
        write(REG_ICR_LO, low);
        while read(REG_ICR_LO) & (1 << 12) != 0 {
            core::hint::spin_loop(); // delivery status: send pending
        }
        crate::irq::local_irq_restore(was);
    }
}

/// Moves the legacy 8259 PICs' vectors to 0x20-0x2F and masks every line: SeaBIOS leaves
/// them at 0x08-0x0F (the PIT's IRQ 0 would arrive as vector 8, the double fault's, without
/// its error code), and the APIC is the only interrupt source used.
fn disable_pic() {
    // SAFETY: the 8259 ports exist on q35 (its ICH9 LPC bridge); the initialization sequence
    // (ICW1-ICW4) then a mask of every line is the documented way to quiet them.
    unsafe {
        cpu::outb(0x20, 0x11); // ICW1 to the master: edge, cascade, ICW4 follows
        cpu::outb(0xA0, 0x11); // ... and to the slave
        cpu::outb(0x21, 0x20); // ICW2: the master's vectors from 0x20
        cpu::outb(0xA1, 0x28); // the slave's from 0x28
        cpu::outb(0x21, 0x04); // ICW3: the slave on the master's line 2
        cpu::outb(0xA1, 0x02); // the slave's cascade identity
        cpu::outb(0x21, 0x01); // ICW4: 8086 mode
        cpu::outb(0xA1, 0x01); // ... for both
        cpu::outb(0x21, 0xFF); // mask every line of the master
        cpu::outb(0xA1, 0xFF); // and of the slave
    }
}

/// Acknowledges the interrupt being served.
pub fn eoi() {
    write(REG_EOI, 0);
}

/// Raises `line` on CPU `cpu`: a pending bit, then a self-IPI, or a fixed IPI on
/// [`VECTOR_RAISE`] to that CPU's APIC ID.
pub fn raise_on(cpu: u32, line: u32) {
    PENDING[cpu as usize].fetch_or(1 << line, Ordering::SeqCst);
    kick(cpu, VECTOR_RAISE);
}

/// Wakes CPU `cpu` from `hlt`: an IPI on [`VECTOR_RAISE`] without a pending line.
pub fn wake(cpu: u32) {
    kick(cpu, VECTOR_RAISE)
}

/// Sends `vector` to CPU `cpu`: a self-IPI if it is this CPU, else a fixed IPI (level assert).
fn kick(cpu: u32, vector: u8) {
    if cpu != percpu::cpu_number() {
        match crate::smp::apic_id(cpu) {
            Some(id) => send_ipi(id, (1 << 14) | u32::from(vector)),
            None => {
                crate::kprintln!("BUG: an IPI to CPU {cpu}, which is not running");
                crate::serial::exit(crate::exit_codes::PANIC)
            }
        }
        return;
    }
    self_ipi(vector)
}

/// A self-IPI on `vector`.
fn self_ipi(vector: u8) {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: the x2APIC's SELF IPI register takes a vector.
        unsafe { cpu::wrmsr(MSR_X2APIC_SELF_IPI, u64::from(vector)) };
    } else {
        write(REG_ICR_LO, (1 << 18) | u32::from(vector)); // shorthand "self", fixed
    }
}

/// One multiplexed timer.
#[derive(Clone, Copy)]
struct Slot {
    used: bool,
    armed: bool,
    /// The CPU whose line it raises.
    target: u32,
    line: u32,
    deadline: u64,
    period: u64,
    overrun: u32,
}

const SLOTS: usize = 16;
const EMPTY: Slot = Slot { used: false, armed: false, target: 0, line: 0, deadline: 0, period: 0, overrun: 0 };

/// Each CPU's timer slots (see the module's description), by CPU number.
static SLOTS_: [lock_api::Mutex<crate::sync::RawIrqSpinLock, [Slot; SLOTS]>; MAX_CPUS] =
    [const { lock_api::Mutex::new([EMPTY; SLOTS]) }; MAX_CPUS];

/// A timer slot: its CPU and its index there.
#[derive(Clone, Copy, Debug)]
pub struct SlotId {
    cpu: u32,
    i: usize,
}

/// Runs `f` on CPU `cpu`'s slots under their lock (interrupts masked), then has the timer
/// reprogrammed: at once on this CPU's, by an IPI on [`VECTOR_TIMER`] on another's.
fn with_slots<R>(cpu: u32, f: impl FnOnce(&mut [Slot; SLOTS]) -> R) -> R {
    let mut slots = SLOTS_[cpu as usize].lock();
    let r = f(&mut slots);
    if cpu == percpu::cpu_number() {
        program(&slots);
        r
    } else {
        drop(slots);
        kick(cpu, VECTOR_TIMER);
        r
    }
}

fn program(slots: &[Slot; SLOTS]) {
    let Some(next) = slots.iter().filter(|s| s.armed).map(|s| s.deadline).min() else {
        write(REG_TIMER_INIT, 0);
        return;
    };
    let now = clock::now_ns();
    let ns = next.saturating_sub(now).max(1);
    let ticks = (ns as u128 * TIMER_HZ.load(Ordering::Relaxed) as u128 / 1_000_000_000).clamp(1, u32::MAX as u128);
    write(REG_TIMER_INIT, ticks as u32);
}

/// A new disarmed timer slot of this CPU's timer raising `line` on CPU `target`.
pub fn slot_new(target: u32, line: u32) -> Result<SlotId, &'static str> {
    let cpu = percpu::cpu_number();
    with_slots(cpu, |s| {
        let i = s.iter().position(|s| !s.used).ok_or("all 16 timer slots are in use")?;
        s[i] = Slot { used: true, target, line, ..EMPTY };
        Ok(SlotId { cpu, i })
    })
}

/// Frees a slot.
pub fn slot_free(id: SlotId) {
    with_slots(id.cpu, |s| s[id.i] = EMPTY)
}

/// Arms slot `i` for `deadline` (ns), repeating every `period` (0: once).
pub fn slot_arm(id: SlotId, deadline: u64, period: u64) {
    let i = id.i;
    with_slots(id.cpu, |s| {
        s[i].armed = true;
        s[i].deadline = deadline;
        s[i].period = period;
        s[i].overrun = 0;
    })
}

/// Disarms a slot.
pub fn slot_disarm(id: SlotId) {
    with_slots(id.cpu, |s| s[id.i].armed = false)
}

/// Periods a slot missed before its last expiry.
pub fn slot_overrun(id: SlotId) -> u32 {
    with_slots(id.cpu, |s| s[id.i].overrun)
}

/// The timer interrupt: moves every expired slot's line to its CPU's `PENDING` word and reprograms.
pub fn expire() {
    let me = percpu::cpu_number();
    let remote = with_slots(me, |s| {
        let now = clock::now_ns();
        let mut remote = 0u64;
        for slot in s.iter_mut().filter(|s| s.armed && s.deadline <= now) {
            PENDING[slot.target as usize].fetch_or(1 << slot.line, Ordering::SeqCst);
            if slot.target != me {
                remote |= 1 << slot.target;
            }
            if slot.period == 0 {
                slot.armed = false;
            } else {
                slot.deadline += slot.period;
                slot.overrun = 0;
                while slot.deadline <= now {
                    slot.deadline += slot.period;
                    slot.overrun += 1;
                }
            }
        }
        remote
    });
    for cpu in (0..MAX_CPUS as u32).filter(|c| remote & (1 << c) != 0) {
        kick(cpu, VECTOR_RAISE);
    }
}
