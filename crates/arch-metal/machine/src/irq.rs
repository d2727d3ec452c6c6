//! The interrupt mask and the external vectors' way into the core.
//!
//! **Mechanism.** The mask is the real `RFLAGS.IF`: `cli`, `sti`, and `pushfq` to read it. The
//! external vectors (the APIC timer, the self-IPI of raised lines, the HPET's device
//! interrupt through the IOAPIC) arrive through the IDT's
//! common path (`crate::idt`) on IST 4, which calls [`external`] with the saved frame: it
//! acknowledges the APIC, moves expired timers' lines to the pending set, and calls the core's
//! `Hooks::irq` with an `IrqFrame` built from the CPU's interrupt frame (RIP, RSP, RBP). When
//! the core answers `IrqExit::Preempt`, [`external`] returns 1 and the common path copies the
//! frame off the IST stack onto the interrupted stack below its red zone, saves the vector
//! state there, and calls `metal_preempt_irq` (the core's `preempt_schedule_irq`) in task
//! context with IF still clear; on its return it restores the vector state and the registers
//! and `iretq`s from the task's stack.
//!
//! **Invariant.** The core's hooks run with IF clear, and the in-IRQ flag is set around
//! `Hooks::irq` and restored after it. Nothing is left on the shared IST stack across
//! `preempt_schedule_irq` (the next interrupt reuses it). While [`irq_exit_irqs_on`] runs
//! with IF set on IST 4, the TSS's IST 4 pointer is below its live frames.

use crate::idt::ExceptionFrame;
use crate::{apic, percpu};
use arch_api::{IrqExit, IrqFrame};
use core::arch::asm;

/// `cli`.
#[inline(always)]
pub fn local_irq_disable() {
    // SAFETY: clears IF; a compiler barrier (no `nomem`) so memory accesses stay inside.
    unsafe { asm!("cli", options(nostack)) }
}

/// `sti`: pending interrupts are taken after the next instruction.
#[inline(always)]
pub fn local_irq_enable() {
    // SAFETY: sets IF; a compiler barrier as above.
    unsafe { asm!("sti", options(nostack)) }
}

/// True while IF is clear.
#[inline(always)]
pub fn irqs_disabled() -> bool {
    let flags: u64;
    // SAFETY: reads RFLAGS through the stack (push, pop): touches nothing of the program.
    unsafe {
        asm!(
            "pushfq",  // RFLAGS onto the stack
            "pop {}",  // and into the output register
            out(reg) flags,
            options(nomem, preserves_flags),
        )
    };
    flags & (1 << 9) == 0
}

/// Masks; true if IF was clear already.
#[inline(always)]
pub fn local_irq_save() -> bool {
    let was = irqs_disabled();
    local_irq_disable();
    was
}

/// Puts IF back as [`local_irq_save`] found it.
#[inline(always)]
pub fn local_irq_restore(was_masked: bool) {
    if !was_masked {
        local_irq_enable();
    }
}

/// Runs `f` with IF set at an interrupt's exit (the core's softirqs at `irq_exit`), as
/// Linux's `irq_exit` does. On the ordinary vectors' IST stack, the IST pointer first moves
/// below this frame (and a red zone's worth more), so that a nested interrupt pushes its frame
/// there instead of over the live one; it moves back, with IF clear again, after `f`.
pub fn irq_exit_irqs_on(f: impl FnOnce()) {
    let sp: u64;
    // SAFETY: copies rsp.
    unsafe { asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    let (lo, hi) = crate::gdt::ist_stacks()[usize::from(crate::gdt::IST_OTHER) - 1];
    let was_masked = irqs_disabled();
    local_irq_disable();
    // SAFETY: IF is clear; the new top is below every live byte of this stack (rsp minus
    // 256, aligned), and stays set only while `f` runs above it.
    let old = ((lo..hi).contains(&sp)).then(|| unsafe { crate::gdt::set_ist_other_top((sp - 256) & !15) });
    if old.is_some() {
        crate::stats::irqs_on_window();
    }
    local_irq_enable();
    f();
    local_irq_disable();
    if let Some(old) = old {
        // SAFETY: IF is clear; `old` is the top this function found.
        unsafe { crate::gdt::set_ist_other_top(old) };
    }
    if !was_masked {
        local_irq_enable();
    }
}

/// An external vector from the IDT's common path; 1 asks it to preempt on the way out.
pub fn external(frame: &ExceptionFrame) -> u64 {
    let v = frame.vector as u8;
    if v == apic::VECTOR_SPURIOUS {
        return 0;
    }
    apic::eoi();
    if v == apic::VECTOR_TIMER {
        apic::expire();
    } else if v == crate::hpet::VECTOR_DEVICE {
        crate::hpet::expire(); // the HPET through the IOAPIC: this CPU's expired device lines
    }
    let lines = apic::take_pending();
    if lines == 0 {
        return 0;
    }
    let Some(hooks) = percpu::this().hooks.get() else {
        return 0;
    };
    let f = IrqFrame {
        ip: frame.rip as usize,
        sp: frame.rsp as usize,
        bp: frame.rbp as usize,
        replayed: false,
        exiting: false,
    };
    let t0 = crate::cpu::rdtsc();
    let was = percpu::replace_in_irq(true);
    let exit = (hooks.irq)(lines, &f);
    percpu::replace_in_irq(was);
    crate::stats::irq_hook(crate::cpu::rdtsc() - t0, was);
    u64::from(exit == IrqExit::Preempt)
}

/// Called by the IDT's common path on the task's stack when the core asked to preempt.
#[no_mangle]
extern "C" fn metal_preempt_irq() {
    if let Some(hooks) = percpu::this().hooks.get() {
        (hooks.preempt_schedule_irq)();
    }
}
