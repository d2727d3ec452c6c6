//! Running a kernel instance: boot it from a configuration, supervise it, hand back what it did.
//!
//! **Mechanism.** [`run`] validates the configuration, builds the instance (`instance::Kernel`,
//! with `cpus=N` CPUs), installs the panic hook, starts CPU 0 through the arch (which boots the
//! rest, `boot.rs`) and supervises it from the calling context (`oops::report::supervise`: reports,
//! the hung-task scan, the panic). When every task has exited and every CPU stopped, it
//! builds the [`RunReport`]: each task's result and counters, each CPU's figures, every
//! `BUG:` report, the printk log, what the patch models and the tracers did.
//!
//! **Invariant.** Nothing in the kernel imports this module: it composes the subsystems from
//! above, so the instance and the subsystems never depend on how a run is driven.

use crate::arch::{Arch, IrqSpinLock, A};
use crate::config::Config;
use crate::cpu::Cpu;
use crate::fork::TaskHandle;
use crate::instance::{BootError, Kernel};
use crate::printk::Printk;
use crate::task::{Policy, TaskId, TaskResult, TaskStatsSnapshot};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

/// Everything a finished kernel instance hands back.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The result of `init`, the body given to [`run`].
    pub init: TaskResult,
    /// Every task but idle, in spawn order.
    pub tasks: Vec<TaskReport>,
    /// Every `BUG:` report (the first 64).
    pub bugs: Vec<String>,
    /// The printk log.
    pub log: String,
    /// Ticks taken.
    pub jiffies: u64,
    /// Interrupts taken (signals and replays).
    pub irqs: u64,
    /// Context switches.
    pub switches: u64,
    /// What the patch models did (all zero under the other models).
    pub patch: crate::model::PatchStatsSnapshot,
    /// What the tracers found (`None` when tracing was off).
    pub trace: Option<crate::trace::TraceReport>,
    /// Each CPU's figures, by CPU number.
    pub cpus: Vec<CpuReport>,
    /// Every oops: a task killed by a fault, with its report.
    pub oopses: Vec<crate::oops::OopsReport>,
}

/// One CPU's figures over a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuReport {
    /// Context switches made on it.
    pub switches: u64,
    /// Tasks that arrived on it from another CPU.
    pub migrations: u64,
    /// IPIs it sent (reschedule and function call).
    pub ipis_sent: u64,
    /// IPIs it received.
    pub ipis_received: u64,
    /// Nanoseconds its idle task spent halted.
    pub idle_ns: u64,
    /// Interrupts it took (signals and replays).
    pub irqs: u64,
    /// Armed `int3`s it met with no patch event of its own (another CPU's): stepped over.
    pub collateral_int3: u64,
    /// Armed `call`s of `rt_reschedule` it went through with no patch event of its own.
    pub collateral_calls: u64,
    /// Time measured inside the hooks of those collateral hits, in ns.
    pub collateral_ns: u64,
}

/// One task's end.
#[derive(Clone, Debug)]
pub struct TaskReport {
    /// Its pid.
    pub id: TaskId,
    /// Its name.
    pub name: String,
    /// Its scheduling policy.
    pub policy: Policy,
    /// What its body returned (`None` if it never finished).
    pub result: Option<TaskResult>,
    /// Its counters.
    pub stats: TaskStatsSnapshot,
}

/// Boots a kernel instance with `config`, runs `init` as its first task (SCHED_NORMAL, user
/// mode), and returns when every task has exited.
pub fn run(config: Config, init: impl FnOnce() -> i64 + Send + 'static) -> Result<RunReport, BootError> {
    config.validate()?;
    let n = config.cpus;
    let k = Arc::new(Kernel {
        sched: crate::sched::state::Sched::new(n),
        irq: crate::irq_desc::IrqDescs::new(),
        cpus: (0..n)
            .map(|c| {
                Cpu::new(c, config.rr_timeslice_ticks, crate::softirq::new_cpu_state(crate::tasklet::tasklet_action))
            })
            .collect(),
        online: AtomicU64::new(0),
        smp: IrqSpinLock::new(Vec::new()),
        printk: Printk::new(1 << 20, config.console),
        bugs: crate::printk::BugLog::new(),
        time: crate::time::state::Clock::new(),
        helper_cpus: helper_cpus(&config.pin),
        model: crate::model::state::ModelState::new(config.preempt),
        trace: crate::trace::state::Tracer::new(config.trace),
        oops: crate::oops::state::OopsState::new(),
        watchdog: crate::watchdog::state::Watchdog::new(n),
        config,
    });
    crate::oops::install();
    // Backtraces in oops reports walk the CFI tables, which must exist before any fault.
    A::unwind_prepare().map_err(BootError::Host)?;
    let kc = k.clone();
    let cpu0 = A::start_cpu("atomkernel-cpu0".into(), move || {
        let r = crate::boot::boot_cpu_main(kc.clone(), Box::new(init));
        kc.oops.cpu0_finished();
        r
    })
    .map_err(|e| BootError::Host(format!("cannot start the CPU thread: {e}")))?;
    crate::oops::report::supervise(&k, cpu0)?;
    Ok(report(&k))
}

fn helper_cpus(pinned: &[usize]) -> Vec<usize> {
    let all = A::allowed_host_cpus();
    let others: Vec<usize> = all.iter().copied().filter(|c| !pinned.contains(c)).collect();
    if others.is_empty() {
        all
    } else {
        others
    }
}

fn report(k: &Kernel) -> RunReport {
    let tasks = k.sched.tasks();
    let cpus: Vec<CpuReport> = k.cpus.iter().map(cpu_report).collect();
    let patch = crate::model::decide::stats(k.cpus.iter().map(|c| &c.model));
    RunReport {
        init: tasks.get(1).and_then(|t| t.result.lock().clone()).unwrap_or_else(|| Err("init never ran".into())),
        tasks: tasks
            .iter()
            .filter(|t| t.policy != Policy::Idle)
            .map(|t| TaskReport {
                id: t.id,
                name: t.name.clone(),
                policy: t.policy,
                result: t.result.lock().clone(),
                stats: TaskHandle { task: t.clone() }.stats(),
            })
            .collect(),
        bugs: k.bugs.reports().into_iter().chain(k.cpus.iter().filter_map(|c| c.model.refused_report())).collect(),
        log: k.printk.drain(),
        jiffies: k.time.jiffies(),
        irqs: cpus.iter().map(|c| c.irqs).sum(),
        switches: cpus.iter().map(|c| c.switches).sum(),
        patch,
        trace: crate::trace::report(k, tasks.iter().map(|t| t.name.clone()).collect()),
        cpus,
        oopses: k.oops.reports.lock().clone(),
    }
}

fn cpu_report(c: &Cpu) -> CpuReport {
    let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let collateral = crate::model::decide::stats([&c.model]);
    CpuReport {
        switches: c.rq.lock().nr_switches,
        migrations: r(&c.stats.migrations_in),
        ipis_sent: r(&c.stats.ipis_sent),
        ipis_received: r(&c.stats.ipis_received),
        idle_ns: r(&c.stats.idle_ns),
        irqs: r(&c.irqs),
        collateral_int3: collateral.collateral_int3,
        collateral_calls: collateral.collateral_calls,
        collateral_ns: collateral.collateral_ns,
    }
}
