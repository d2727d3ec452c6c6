//! The register torture: nothing is lost across a preemption.
//!
//! **Mechanism.** `tasks` SCHED_RR tasks with a one-tick slice at `HZ=10000` each run
//! [`hostlab::torture::check_round`] in a loop in user mode: load every general register, the
//! flags (including DF), MXCSR and every vector register (xmm/ymm/zmm and the AVX-512 opmask
//! registers, as the CPU has them) with a pattern, spin, dump and compare. The tick preempts
//! them round robin, and a host thread storms a device whose handler wakes a higher-priority
//! RT task, so most preemptions land in the middle of a spin and go through the full
//! trampoline: signal frame, context injection, XSAVE, context switch, XRSTOR, `ret 128`.
//!
//! With `cpus` above one the tasks spread over the CPUs, and with `migrate` a migrator task
//! moves each to the next CPU every 500 us, so that a round preempted on one CPU thread goes
//! on on another.
//!
//! **Invariant under test.** Every round compares equal; the report counts the preemptions
//! the torture tasks actually took (`irq_preemptions`), not the interrupts sent.
//!
//! **Bounded.** The controller checks the time limit every 10 ms and the torture tasks read
//! its stop after every round (inside a kernel-mode system call too), so a run ends at most
//! one round past `max_secs`; a round's spin is capped at [`MAX_SPINS`] and the limit at
//! [`MAX_SECS`] ([`TortureConfig::validate`]).

use kernel::device::Device;
use kernel::{spawn, BootError, Config, TaskBuilder, WaitQueue};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How hard and how long to torture.
#[derive(Clone, Debug)]
pub struct TortureConfig {
    /// Torture tasks (SCHED_RR, one-tick slices).
    pub tasks: usize,
    /// Stop once the torture tasks have been preempted this many times in all.
    pub preemptions: u64,
    /// ...or after this many seconds, whichever comes first.
    pub max_secs: u64,
    /// Spin iterations per round (how long the registers stay live).
    pub spins: u64,
    /// Run the rounds in kernel mode (inside system calls), so the preemptions land in kernel
    /// code; otherwise in user mode under `preempt=none`.
    pub kernel_mode: bool,
    /// The model for kernel mode: `full` (preempted anywhere the count allows) or a patch
    /// model (preempted at the points between rounds, reached through an armed `int3` or
    /// `call`, or at a redirected return).
    pub model: kernel::PreemptModel,
    /// CPUs of the kernel.
    pub cpus: usize,
    /// Force migrations: every 500 us a migrator task moves each torture task to the next CPU
    /// (`set_cpus_allowed`), so rounds are preempted on one CPU and resumed on another.
    pub migrate: bool,
}

/// The most spin iterations of a round (about 0.1 s of `loop` on the project's VM): a round
/// cannot be cut short, so this bounds how far a run can go past its time limit.
pub const MAX_SPINS: u64 = 100_000_000;
/// The longest run, in seconds (a day).
pub const MAX_SECS: u64 = 86_400;
/// The most torture tasks.
pub const MAX_TASKS: usize = 64;

impl TortureConfig {
    /// Rejects settings the torture cannot run, naming the field (`tasks=0`), the value and
    /// what to use.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_TASKS).contains(&self.tasks) {
            return Err(format!("tasks={}: use 1..={MAX_TASKS} torture tasks", self.tasks));
        }
        if self.preemptions == 0 {
            return Err("preemptions=0: use at least 1 preemption (the run also ends at max_secs=)".into());
        }
        if !(1..=MAX_SECS).contains(&self.max_secs) {
            return Err(format!("max_secs={}: use 1..={MAX_SECS} seconds", self.max_secs));
        }
        if !(1..=MAX_SPINS).contains(&self.spins) {
            return Err(format!(
                "spins={}: use 1..={MAX_SPINS} spin iterations per round (a round cannot stop midway, so it must stay short)",
                self.spins
            ));
        }
        if self.migrate && self.cpus < 2 {
            return Err("migrate=true needs cpus=2 or more (there is nowhere to migrate to)".into());
        }
        let m = self.model;
        if self.kernel_mode && !(m.preempts_kernel_code() || m.is_patch()) {
            return Err(format!(
                "model={m}: kernel code is never preempted by an interrupt there; use full, lazy, patch-int3 or patch-call"
            ));
        }
        Ok(())
    }
}

impl Default for TortureConfig {
    fn default() -> Self {
        TortureConfig {
            tasks: 3,
            preemptions: 1_000_000,
            max_secs: 600,
            spins: 2000,
            kernel_mode: false,
            model: kernel::PreemptModel::Full,
            cpus: 1,
            migrate: false,
        }
    }
}

/// What a torture run saw.
#[derive(Clone, Debug, Serialize)]
pub struct TortureReport {
    /// Preemptions the torture tasks took: through the trampoline (`irq_preemptions`), or,
    /// under the patch models, at armed points and redirected returns.
    pub preemptions: u64,
    /// Rounds checked (each: fill, spin, dump, compare).
    pub rounds: u64,
    /// Every mismatch found, as "task: register expected found".
    pub mismatches: Vec<String>,
    /// The vector register file checked: sse, avx or avx512.
    pub isa: String,
    /// Where the preempted code ran: `user` (preempt=none) or `kernel`.
    pub mode: String,
    /// The preemption model.
    pub model: String,
    /// CPUs of the kernel.
    pub cpus: usize,
    /// Tasks moved between CPUs (all tasks, the torture's and the kernel's).
    pub migrations: u64,
    /// Under the patch models: RT events armed, points fired, returns redirected, events
    /// that fell back to the retry timer.
    pub patch: Option<[u64; 4]>,
    /// Wall time of the run in milliseconds.
    pub elapsed_ms: u64,
}

struct Shared {
    stop: AtomicBool,
    rounds: AtomicU64,
    kicks: AtomicU64,
    mismatches: Mutex<Vec<String>>,
}

/// Runs the torture on a fresh kernel instance.
pub fn run(cfg: &TortureConfig) -> Result<TortureReport, BootError> {
    run_traced(cfg, kernel::trace::TraceOptions::OFF).map(|(r, _)| r)
}

/// [`run`] with the tracers `trace` on, also handing back the kernel's report (and its trace).
pub(crate) fn run_traced(
    cfg: &TortureConfig,
    trace: kernel::trace::TraceOptions,
) -> Result<(TortureReport, kernel::RunReport), BootError> {
    cfg.validate().map_err(|e| BootError::Config(kernel::ConfigError(e)))?;
    let preempt = if cfg.kernel_mode { cfg.model } else { kernel::PreemptModel::None };
    let config = Config { hz: 10_000, rr_timeslice_ticks: 1, preempt, trace, cpus: cfg.cpus, ..Config::default() }
        .with_watchdog_defaults();
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        rounds: AtomicU64::new(0),
        kicks: AtomicU64::new(0),
        mismatches: Mutex::new(Vec::new()),
    });
    let (sh, c) = (shared.clone(), cfg.clone());
    let t0 = std::time::Instant::now();
    // The controller runs above the RR torture tasks (RT always beats fair, so a fair init
    // would never run again once they start).
    let report = kernel::run(config, move || {
        spawn(TaskBuilder::new("controller").fifo(90), move || torture_init(&sh, &c) as i64).join().unwrap_or(0)
    })?;
    let p = report.patch;
    let torturers = report.tasks.iter().filter(|t| t.name.starts_with("torture"));
    let preemptions = if preempt.is_patch() { p.preemptions } else { torturers.map(|t| t.stats.irq_preemptions).sum() };
    let mismatches = std::mem::take(&mut *shared.mismatches.lock().unwrap_or_else(|e| e.into_inner()));
    let torture = TortureReport {
        preemptions,
        rounds: shared.rounds.load(Ordering::Relaxed),
        mismatches,
        isa: format!("{:?}", hostlab::torture::vector_isa()).to_lowercase(),
        mode: if cfg.kernel_mode { "kernel" } else { "user" }.into(),
        model: preempt.name().into(),
        cpus: cfg.cpus,
        migrations: report.cpus.iter().map(|c| c.migrations).sum(),
        patch: preempt.is_patch().then_some([p.events, p.fired, p.redirects, p.fallbacks]),
        elapsed_ms: t0.elapsed().as_millis() as u64,
    };
    Ok((torture, report))
}

fn torture_init(sh: &Arc<Shared>, cfg: &TortureConfig) -> u64 {
    let wq = Arc::new(WaitQueue::new());
    let w = wq.clone();
    let dev = Device::register("torture-storm", move || {
        w.wake_up();
    });
    let (s, w) = (sh.clone(), wq.clone());
    let kicker = spawn(TaskBuilder::new("kicker").fifo(60), move || {
        let mut seen = 0;
        while !s.stop.load(Ordering::Acquire) {
            w.wait_event(|| s.kicks.load(Ordering::Acquire) > seen || s.stop.load(Ordering::Acquire));
            seen = s.kicks.load(Ordering::Acquire);
        }
        0
    });
    let tasks: Vec<_> = (0..cfg.tasks).map(|i| spawn_torturer(sh, i, cfg.spins, cfg.kernel_mode)).collect();
    let migrator = cfg.migrate.then(|| spawn_migrator(sh, &tasks, cfg.cpus));
    let storm = start_storm(sh.clone(), dev.raiser());
    let deadline = kernel::time::now_ns().saturating_add(cfg.max_secs.saturating_mul(1_000_000_000));
    while kernel::time::now_ns() < deadline {
        kernel::time::sleep_ns(10_000_000);
        let taken: u64 = if kernel::preempt_model().is_patch() {
            kernel::model::patch::patch_stats().preemptions
        } else {
            tasks.iter().map(|t| t.stats().irq_preemptions).sum()
        };
        if taken >= cfg.preemptions {
            break;
        }
    }
    sh.stop.store(true, Ordering::Release);
    let _ = storm.join();
    wq.wake_up();
    for t in &tasks {
        let _ = t.join();
    }
    let _ = kicker.join();
    if let Some(m) = migrator {
        let _ = m.join();
    }
    drop(dev);
    sh.rounds.load(Ordering::Relaxed)
}

fn spawn_torturer(sh: &Arc<Shared>, i: usize, spins: u64, kernel_mode: bool) -> kernel::TaskHandle {
    let s = sh.clone();
    spawn(TaskBuilder::new(&format!("torture{i}")).rr(10), move || {
        let mut seed = 0x5eed_0000_0000 + ((i as u64) << 40);
        while !s.stop.load(Ordering::Acquire) {
            if kernel_mode {
                // A system call of 64 rounds: the preemptions land in kernel code.
                seed = kernel::syscall(|| rounds(&s, i, seed, spins, 64));
            } else {
                seed = rounds(&s, i, seed, spins, 1);
            }
        }
        0
    })
}

/// An RT task that moves every torture task to the next CPU every 500 us until told to stop: a
/// queued task moves at once, a running one at its next switch (a preemption, mostly).
fn spawn_migrator(sh: &Arc<Shared>, tasks: &[kernel::TaskHandle], cpus: usize) -> kernel::TaskHandle {
    let (s, ids) = (sh.clone(), tasks.iter().map(|t| t.id()).collect::<Vec<_>>());
    spawn(TaskBuilder::new("migrator").fifo(80), move || {
        let mut pass = 0;
        while !s.stop.load(Ordering::Acquire) {
            kernel::time::sleep_ns(500_000);
            pass += 1;
            for (i, &id) in ids.iter().enumerate() {
                let _ = kernel::set_cpus_allowed(id, 1 << ((i + pass) % cpus));
            }
        }
        0
    })
}

/// Checks up to `n` rounds, fewer once the controller says stop; returns the next seed.
/// Mismatches are kept for the report (the lock is taken only on a mismatch, and only by this
/// task).
fn rounds(s: &Shared, i: usize, mut seed: u64, spins: u64, n: u32) -> u64 {
    for _ in 0..n {
        if s.stop.load(Ordering::Acquire) {
            break;
        }
        seed += 1;
        if let Err(bad) = hostlab::torture::check_round(seed, spins) {
            let mut m = s.mismatches.lock().unwrap_or_else(|e| e.into_inner());
            m.extend(bad.iter().map(|b| format!("torture{i} round {seed:#x}: {b}")));
        }
        s.rounds.fetch_add(1, Ordering::Relaxed);
        kernel::preempt_point!(); // where the patch models preempt between rounds
    }
    seed
}

/// A host thread that raises the storm device every few microseconds until told to stop.
fn start_storm(sh: Arc<Shared>, raiser: kernel::device::DeviceRaiser) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !sh.stop.load(Ordering::Acquire) {
            sh.kicks.fetch_add(1, Ordering::AcqRel);
            raiser.raise();
            let until = kernel::time::now_ns() + 5_000;
            while kernel::time::now_ns() < until {
                std::hint::spin_loop();
            }
        }
    })
}
