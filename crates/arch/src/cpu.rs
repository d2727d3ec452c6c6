//! CPU bring-up: a host thread becomes a CPU, and the few host services a CPU needs.
//!
//! **Mechanism.** [`CpuRegistration::new`] gives the calling thread an interrupt stack
//! (`sigaltstack`), an interrupt request register, the core's hooks, and makes sure the signal
//! handlers are installed. [`safe_halt`] is `sti; hlt`: it waits for the next interrupt with no
//! window in which one could arrive unnoticed between "nothing to do" and "wait".
//!
//! **Invariant.** A thread's per-CPU words are live exactly while its registration is; dropping
//! the registration detaches the thread, after which interrupts aimed at it are ignored.

use crate::irq::{self, IrqRaiser};
use crate::{entry, percpu, Hooks};
pub use arch_api::FixedBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Size of each CPU's interrupt stack.
const IRQ_STACK_BYTES: usize = 256 * 1024;

/// The host thread id of the caller.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Pins the calling thread to host CPU `cpu`. Fails if the host does not allow it.
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it; the call only reads
    // the set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Lets the calling thread run on any of `cpus` (ignored if empty or refused).
pub fn set_affinity(cpus: &[usize]) {
    if cpus.is_empty() {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it; the call only reads
    // the set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The host CPUs the calling thread may run on.
pub fn allowed_host_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills the set we own; CPU_ISSET reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

/// Starts loading the cache line holding `addr` into every cache level (`prefetcht0`). A
/// hint: it never faults, whatever `addr` is, and changes nothing but timing.
#[inline(always)]
pub fn prefetch(addr: usize) {
    // SAFETY: `prefetcht0` reads no architectural state and never faults, even for an address
    // that is not mapped; the pointer is never dereferenced.
    unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8) }
}

/// One step of a spin-wait for another CPU (`cpu_relax`): a `pause`, and every 64th call a
/// host `sched_yield`, because the CPU waited for is a host thread that an oversubscribed host
/// may have descheduled, and spinning would only keep it off the core.
pub fn cpu_relax(spins: &mut u32) {
    *spins = spins.wrapping_add(1);
    if spins.is_multiple_of(64) {
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    } else {
        std::hint::spin_loop();
    }
}

/// Writes `bytes` to file descriptor `fd` with `write(2)`: async-signal-safe, no locks.
pub fn console_write(fd: i32, bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: the pointer and length describe the live slice `rest`.
        let n = unsafe { libc::write(fd, rest.as_ptr() as *const libc::c_void, rest.len()) };
        if n <= 0 {
            return;
        }
        rest = &rest[n as usize..];
    }
}

/// Prints `msg` on stderr without locks or allocation and aborts the process.
pub fn die(msg: &str) -> ! {
    console_write(2, msg.as_bytes());
    console_write(2, b"\n");
    std::process::abort()
}

/// Stops this CPU thread for good (a kernel panic's "every CPU stops"): blocks every signal
/// and sleeps, never to return. Signal-safe; callable from a handler.
pub fn park_forever() -> ! {
    // SAFETY: a full sigset we own; pthread_sigmask only changes this thread's mask, and
    // pause with every signal blocked sleeps until the process ends.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
        loop {
            libc::pause();
        }
    }
}

/// A thread's life as a CPU. Created on the CPU thread, dropped on it.
pub struct CpuRegistration {
    irr: Arc<AtomicU64>,
    raiser: IrqRaiser,
    irq_stack: crate::stack::Stack,
    old_altstack: libc::stack_t,
}

impl CpuRegistration {
    /// Makes the calling thread a CPU whose interrupts are served by `hooks`.
    pub fn new(hooks: &'static Hooks) -> std::io::Result<CpuRegistration> {
        assert!(!percpu::is_cpu_thread(), "this thread is already a CPU");
        entry::install();
        let irq_stack = crate::stack::Stack::new(IRQ_STACK_BYTES)?;
        // SAFETY: a zeroed stack_t is a valid out-parameter.
        let mut old_altstack: libc::stack_t = unsafe { std::mem::zeroed() };
        let ss = libc::stack_t {
            ss_sp: irq_stack.range().lo() as *mut libc::c_void,
            ss_flags: 0,
            ss_size: irq_stack.range().hi() - irq_stack.range().lo(),
        };
        // SAFETY: `ss` describes memory owned by the registration, which outlives its use as
        // the altstack (Drop restores the previous one first).
        if unsafe { libc::sigaltstack(&ss, &mut old_altstack) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let irr = Arc::new(AtomicU64::new(0));
        // SAFETY: getpid has no preconditions.
        let raiser = IrqRaiser { pid: unsafe { libc::getpid() }, tid: gettid(), irr: irr.clone() };
        percpu::with(|l| l.irr.set(Arc::as_ptr(&irr)));
        percpu::preempt_count_set_raw(0);
        percpu::clear_pending();
        percpu::set_irqs_masked(true);
        percpu::set_hooks(Some(hooks));
        Ok(CpuRegistration { irr, raiser, irq_stack, old_altstack })
    }

    /// Gives this CPU the core's number for it ([`crate::percpu::cpu_number`]). Call on the
    /// CPU thread.
    pub fn set_cpu_number(&self, n: u32) {
        percpu::set_cpu_number(n);
    }

    /// A handle other threads use to raise this CPU's interrupt lines.
    pub fn raiser(&self) -> IrqRaiser {
        self.raiser.clone()
    }
}

impl Drop for CpuRegistration {
    fn drop(&mut self) {
        irq::local_irq_disable();
        percpu::set_hooks(None);
        percpu::set_cpu_number(0);
        percpu::set_core_flags(0);
        let _ = percpu::take_syscall_count();
        percpu::with(|l| l.irr.set(std::ptr::null()));
        percpu::clear_pending();
        let _ = (&self.irr, &self.irq_stack);
        // SAFETY: restores the altstack that was in place before `new`; ours is no longer used
        // because no handler can be running while this code runs on the thread's own stack.
        unsafe { libc::sigaltstack(&self.old_altstack, std::ptr::null_mut()) };
        percpu::set_irqs_masked(false);
    }
}

/// `sti; hlt`: clears the soft mask (replaying what is pending) and, if no interrupt was
/// pending, sleeps in `sigsuspend` until one arrives. The host signal is blocked from before
/// the pending check until `sigsuspend` atomically unblocks it, so an interrupt cannot slip in
/// between. Returns with IRQs enabled, after at least one interrupt (or replay) was handled.
pub fn safe_halt() {
    // SAFETY: sigset_t values we own; pthread_sigmask/sigsuspend only change this thread's
    // signal mask and always restore it before returning.
    unsafe {
        let mut block: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut block);
        libc::sigaddset(&mut block, irq::sig_irq());
        libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old);
        let had_pending = irq::pending_lines() != 0;
        irq::local_irq_enable();
        if !had_pending {
            let mut wait = old;
            libc::sigdelset(&mut wait, irq::sig_irq());
            libc::sigsuspend(&wait);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
}

/// The address of the instruction this call is inlined into: a code address in the caller's
/// function, which debug information maps back to its function and `file:line` (tracers use it
/// to say where something happened). Always inlined, so it costs one `lea`.
#[inline(always)]
pub fn current_ip() -> usize {
    let ip: usize;
    // SAFETY: `lea` of the instruction pointer reads no memory and changes no flags.
    unsafe { std::arch::asm!("lea {}, [rip]", out(reg) ip, options(nomem, nostack, preserves_flags)) };
    ip
}
