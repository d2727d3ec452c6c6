//! Bringing CPUs up and down: the boot CPU, the secondary CPUs, the idle loop, shutdown.
//!
//! **Mechanism.** CPU 0's thread turns itself into a CPU (interrupt stack, IRR, timers), arms
//! the preemption points the model claims, makes its own stack the idle task `swapper/0`,
//! queues `init` (pid 1) and starts `ksoftirqd/0`, then brings up CPUs 1..N, each on a host
//! thread of its own that does the same for itself (`swapper/N`, `ksoftirqd/N` bound to it)
//! and reports online. Only when every CPU is online does any CPU start its tick and enter
//! its idle loop. When the last task has exited, every idle loop returns; each CPU stops its
//! timers and detaches; CPU 0 waits for the others, then disarms the points.
//!
//! **Invariant.** No task runs on any CPU before every CPU is online (each CPU waits for the
//! others before its tick and idle loop start), and no CPU detaches while a task could still
//! run on it: an idle loop returns only when no task is left in the instance.

use crate::arch::{Arch, CpuRegistration, TaskContext, A};
use crate::instance::{set_this_cpu, BootError, Kernel};
use crate::sched::rq::Mode;
use crate::sched::SchedMode;
use crate::task::Policy;
use alloc::sync::Arc;
use alloc::{format, string::String, vec::Vec};
use core::sync::atomic::Ordering;

/// CPU 0: boots the instance, runs it, shuts it down.
pub(crate) fn boot_cpu_main(k: Arc<Kernel>, init: crate::task::TaskBody) -> Result<(), BootError> {
    let mut cpu = CpuUp::new(&k, 0)?;
    // Arm the preemption points before anything runs, so a refusal leaves nothing behind.
    crate::model::decide::switch_sites(&k, None, Some(k.config.preempt)).map_err(BootError::Config)?;
    crate::trace::boot(&k).map_err(BootError::Config)?;
    cpu.add_idle(&k);
    // pid 1, queued on this CPU: it cannot run before this thread enters its idle loop.
    crate::fork::spawn_on(&k, crate::task::TaskBuilder::new("init"), init);
    cpu.online(&k);
    crate::printk::printk_str(
        &k,
        &format!(
            "atomkernel: booting {} CPU{}, HZ={}, preempt={}, bh={}",
            k.config.cpus,
            if k.config.cpus == 1 { "" } else { "s" },
            k.config.hz,
            k.config.preempt,
            k.config.bh
        ),
    );
    let secondaries = bring_up_secondaries(&k)?;
    cpu.run(&k);
    for t in secondaries {
        A::join_cpu(t).map_err(|_| BootError::Host("a CPU thread panicked".into()))??;
    }
    crate::trace::shutdown(&k);
    crate::model::decide::switch_sites(&k, Some(k.model()), None).map_err(BootError::Config)?;
    crate::printk::printk_str(&k, "atomkernel: all tasks exited, CPU 0 halted");
    cpu.down();
    Ok(())
}

type CpuThread = <A as Arch>::CpuThread<Result<(), BootError>>;

/// Starts CPUs 1..N and waits until each is online.
fn bring_up_secondaries(k: &Arc<Kernel>) -> Result<Vec<CpuThread>, BootError> {
    let mut threads = Vec::new();
    for c in 1..k.config.cpus {
        let kc = k.clone();
        let t = A::start_cpu(format!("atomkernel-cpu{c}"), move || secondary_cpu_main(kc, c))
            .map_err(|e| BootError::Host(format!("cannot start the thread of CPU {c}: {e}")))?;
        threads.push(t);
    }
    let all = k.all_cpus();
    let mut spins = 0;
    while k.online.load(Ordering::Acquire) != all {
        if threads.iter().any(A::cpu_finished) {
            k.sched.abandon(); // let the others stop
            return Err(BootError::Host("a secondary CPU failed to come up".into()));
        }
        A::cpu_relax(&mut spins);
    }
    Ok(threads)
}

fn secondary_cpu_main(k: Arc<Kernel>, c: usize) -> Result<(), BootError> {
    let mut cpu = CpuUp::new(&k, c)?;
    cpu.add_idle(&k);
    cpu.online(&k);
    cpu.run(&k);
    crate::printk::printk_str(&k, &format!("atomkernel: CPU {c} halted"));
    cpu.down();
    Ok(())
}

/// A CPU thread's life as CPU `id` of an instance.
struct CpuUp {
    id: usize,
    registration: CpuRegistration,
    idle_ctx: Option<Arc<TaskContext>>,
}

impl CpuUp {
    fn new(k: &Arc<Kernel>, id: usize) -> Result<CpuUp, BootError> {
        let host = |e: String| BootError::Host(format!("CPU {id}: {e}"));
        if let Some(&h) = k.config.pin.get(id) {
            A::pin_current_cpu(h).map_err(host)?;
        }
        let registration = A::cpu_register(&crate::irq::HOOKS, id as u32).map_err(host)?;
        set_this_cpu(Some(k.clone()));
        crate::preempt::count::preempt_count_set(0);
        crate::preempt::count::clear_need_resched();
        let c = &k.cpus[id];
        let _ = c.raiser.set(A::cpu_raiser(&registration));
        crate::smp::ipi::ipi_online(k, id);
        crate::model::decide::note_model_on_cpu(k);
        let _ = c.tick_timer.set(A::timer_new(crate::irq_desc::LINE_TICK).map_err(host)?);
        let _ = c.hrtimer.set(A::timer_new(crate::irq_desc::LINE_HRTIMER).map_err(host)?);
        let _ = c.retry_timer.set(A::timer_new(crate::irq_desc::LINE_RETRY).map_err(host)?);
        Ok(CpuUp { id, registration, idle_ctx: None })
    }

    /// The CPU's idle task: its thread's own stack.
    fn add_idle(&mut self, k: &Arc<Kernel>) {
        let name = format!("swapper/{}", self.id);
        let idle_ctx = A::task_context_for_current(&name);
        let idle =
            crate::fork::add_task(k, &name, Policy::Idle, Some(idle_ctx.clone()), None, Mode::Kernel, 1 << self.id);
        idle.cpu.store(self.id, Ordering::Release);
        idle.on_cpu.store(self.id, Ordering::Release);
        {
            let mut rq = crate::sched::rq_lock::rq_lock(k, self.id);
            rq.idle = idle.id;
            rq.curr = idle.id;
        }
        k.cpus[self.id].curr.store(idle.id, Ordering::Relaxed);
        k.sched.cpu_up(self.id);
        self.idle_ctx = Some(idle_ctx);
    }

    /// Starts the CPU's `ksoftirqd` (bound to it); then the CPU is online.
    fn online(&self, k: &Arc<Kernel>) {
        crate::softirq::spawn_ksoftirqd(k, self.id);
        k.online.fetch_or(1 << self.id, Ordering::AcqRel);
    }

    fn run(&self, k: &Kernel) {
        // No task runs before every CPU is up (a CPU that came up first could otherwise pull
        // `init`, which may at once use a CPU still coming up); a failed bring-up ends the wait.
        let mut spins = 0;
        while k.online.load(Ordering::Acquire) != k.all_cpus() && k.sched.nr_live() != 0 {
            A::cpu_relax(&mut spins);
        }
        if let Some(t) = k.cpus[self.id].tick_timer.get() {
            A::timer_set_periodic(t, k.config.tick_ns());
        }
        idle_loop(k);
    }

    fn down(self) {
        A::local_irq_disable();
        set_this_cpu(None);
        drop(self.registration);
        drop(self.idle_ctx);
    }
}

/// The idle task: run whatever becomes runnable, halt when nothing is, stop when every task of
/// the instance has exited.
fn idle_loop(k: &Kernel) {
    let cpu = k.raw_this_cpu();
    let mut hung = crate::hung::HungCheck::new(k);
    loop {
        A::local_irq_disable();
        if crate::preempt::count::need_resched() || cpu.rq.lock().has_runnable() {
            crate::sched::schedule_irqs_off(k, SchedMode::Idle);
            A::local_irq_enable();
            hung.ran();
            continue;
        }
        if crate::sched::balance::newidle_balance(k) {
            A::local_irq_enable();
            continue;
        }
        let live = k.sched.nr_live();
        if live == 0 {
            A::local_irq_enable();
            break;
        }
        if crate::softirq::stop_if_alone(k, live) {
            A::local_irq_enable(); // only the ksoftirqds are left: they were told to stop
            continue;
        }
        if k.oops.panicking() {
            crate::oops::stop_this_cpu(k);
        }
        A::touch_softlockup();
        let t0 = A::now_ns();
        A::safe_halt();
        cpu.stats.idle_ns.fetch_add(A::now_ns() - t0, Ordering::Relaxed);
        hung.check(k);
    }
    for t in [cpu.tick_timer.get(), cpu.hrtimer.get(), cpu.retry_timer.get()].into_iter().flatten() {
        A::timer_disarm(t);
    }
}
