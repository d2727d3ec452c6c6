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
    {
        // Masked, so that the task cannot move between finding its CPU and marking it.
        let _irq = crate::preempt::raw_local_irq_save();
        let cpu = k.this_cpu();
        cpu.syscalls.fetch_add(1, std::sync::atomic::Ordering::Relaxed); // credited at switch-out
        cpu.set_mode(Mode::Kernel);
    }
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
    let k = this_kernel();
    if mode_of_current(&k) == Mode::User {
        syscall_in(&k, Location::caller(), f)
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
        k.this_cpu().set_mode(Mode::User);
        arch::irq::local_irq_enable();
        return;
    }
}

/// True while the current task runs kernel code (inside a [`syscall`], or a kernel thread).
pub fn in_kernel_mode() -> bool {
    current_mode() == Mode::Kernel
}

/// The running task's mode (read with IRQs masked: see [`crate::instance::Kernel::current_id`]).
fn current_mode() -> Mode {
    mode_of_current(&this_kernel())
}

fn mode_of_current(k: &Kernel) -> Mode {
    let _irq = crate::preempt::raw_local_irq_save();
    k.this_cpu().mode()
}
