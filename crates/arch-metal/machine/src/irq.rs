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
//! **Softirqs at an interrupt's exit.** The core's `irq_exit` runs softirqs with IF set
//! through [`irq_exit_irqs_on`]. Every gate is on an IST stack, so a nested interrupt starts
//! at IST 4's top whatever `rsp` is: code running with IF set must not be on IST 4 below that
//! top. So on IST 4 (the range below this CPU's TSS top, each CPU's own), the softirqs run on
//! the CPU's softirq stack with IST 4's top moved just below the call's frame
//! (`crate::softirq_stack`), as Linux runs them on its IRQ stack (`do_softirq_own_stack`).
//! Running them on IST 4 itself with the top moved a fixed 256 bytes below `rsp` is not
//! enough: a nested frame (22 quadwords, then the vector state and the handler's frames)
//! lands inside the softirq's own frames, which grow down from that same `rsp`
//! (`image.run=softirq-stack` checks it: that way 20 of its 256 pattern words are
//! overwritten); a shallow softirq hides it (the `softirq` scenario's tasklet spins 240 bytes
//! below `rsp`, and `now_ns`, a tail jump to a leaf, adds only its return address). The IST 4
//! range is read from this CPU's TSS: a fixed range (the boot CPU's) never matches on an AP,
//! where a nested interrupt would then overwrite the outer one's frame at IST 4's top.
//!
//! **Invariant.** The core's hooks run with IF clear, and the in-IRQ flag is set around
//! `Hooks::irq` and restored after it. Nothing is left on the shared IST stack across
//! `preempt_schedule_irq` (the next interrupt reuses it). While [`irq_exit_irqs_on`] runs
//! softirqs with IF set at an interrupt's exit, they run on the CPU's softirq stack and the
//! TSS's IST 4 pointer is below IST 4's live frames.

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
/// Linux's `irq_exit` does, and returns with IF as it found it. On this CPU's IST 4 (an
/// interrupt's exit), `f` runs on the CPU's softirq stack, IST 4's top moved below the live
/// frames meanwhile (`crate::softirq_stack`), so a nested interrupt lands on neither; on any
/// other stack (a task's `local_bh_enable`, `ksoftirqd`) it runs where it is.
pub fn irq_exit_irqs_on(f: impl FnOnce()) {
    let was_masked = local_irq_save();
    let sp: u64;
    // SAFETY: copies rsp.
    unsafe { asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    let ist_top = crate::gdt::ist_other_top();
    let body = || {
        local_irq_enable();
        f();
        local_irq_disable();
    };
    if (ist_top - crate::gdt::IST_STACK_SIZE as u64..ist_top).contains(&sp) {
        let Some((_, top)) = crate::softirq_stack::this() else {
            panic!("irq_exit_irqs_on: CPU {} has no softirq stack", percpu::cpu_number())
        };
        crate::stats::irqs_on_window();
        // SAFETY: IF clear; this CPU's softirq stack is free: only the outermost interrupt's
        // exit runs softirqs, and this one runs on IST 4, not on it.
        unsafe { crate::softirq_stack::run_on_softirq_stack(top, body) };
    } else {
        body();
    }
    local_irq_restore(was_masked);
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
