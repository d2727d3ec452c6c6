//! System calls: the border between user mode and kernel mode.
//!
//! **Mechanism.** [`syscall`] is the `syscall` instruction and `entry_SYSCALL_64`: the task's
//! mode becomes kernel, the service runs, then [`ret_from_syscall`] (Linux's
//! `syscall_exit_to_user_mode`) checks the count, reschedules while `need_resched` is set, and
//! only then returns to user mode, with IRQs masked over the last check so that a wakeup
//! cannot slip in between the check and the return.
//!
//! **Invariant.** A task returns to user mode with `preempt_count == 0`, IRQs on, and no
//! reschedule pending; a service that breaks the first two gets a `BUG:` report naming it.

use crate::instance::{this_kernel, Kernel};
use crate::preempt;
use crate::sched::Mode;
use std::panic::Location;

/// Enters the kernel, runs the service `f` in kernel mode, and returns through
/// `ret_from_syscall`.
#[track_caller]
pub fn syscall<R>(f: impl FnOnce() -> R) -> R {
    syscall_in(&this_kernel(), Location::caller(), f)
}

/// [`syscall`] on kernel `k`, naming `place`.
fn syscall_in<R>(k: &Kernel, place: &'static Location<'static>, f: impl FnOnce() -> R) -> R {
    // Each one instruction on the CPU's hot words, so no IRQ mask: a task that moves between
    // them counts on one CPU and marks the other, and both travel with it (the count is
    // credited to the running task at switch-out, the mode is the running task's).
    arch::percpu::count_syscall();
    crate::cpu::set_mode(Mode::Kernel);
    crate::trace::syscall_entry(k, place);
    let r = f();
    ret_from_syscall(k, place);
    r
}

/// Runs `f` in kernel mode: through [`syscall`] when called from user mode (the kernel's own
/// API functions such as `spawn` or `sleep` are system calls there), directly when already in
/// kernel mode.
#[track_caller]
pub(crate) fn kernel_call<R>(f: impl FnOnce() -> R) -> R {
    if crate::cpu::mode() == Mode::User {
        syscall_in(&this_kernel(), Location::caller(), f)
    } else {
        f()
    }
}

/// [`kernel_call`] on kernel `k` (the caller has it already), naming `place`.
pub(crate) fn kernel_call_in<R>(k: &Kernel, place: &'static Location<'static>, f: impl FnOnce() -> R) -> R {
    if crate::cpu::mode() == Mode::User {
        syscall_in(k, place, f)
    } else {
        f()
    }
}

/// `ret_from_syscall`: debug checks, reschedule while needed, back to user mode.
pub fn ret_from_syscall(k: &Kernel, place: &'static Location<'static>) {
    crate::trace::syscall_exit(k, place);
    if preempt::preempt_count() != 0 {
        k.bug("preempt_count not zero at ret_from_syscall", place);
        preempt::preempt_count_set(0);
    }
    if arch::irq::irqs_disabled() {
        k.bug("IRQs disabled at ret_from_syscall", place);
    }
    loop {
        arch::irq::local_irq_disable();
        if crate::model::resched_due_for_user(k) {
            arch::irq::local_irq_enable();
            crate::sched::schedule();
            continue;
        }
        crate::cpu::set_mode(Mode::User);
        arch::irq::local_irq_enable();
        return;
    }
}

/// True while the current task runs kernel code (inside a [`syscall`], or a kernel thread).
pub fn in_kernel_mode() -> bool {
    current_mode() == Mode::Kernel
}

/// The running task's mode.
fn current_mode() -> Mode {
    crate::cpu::mode()
}
