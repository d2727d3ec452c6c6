//! A fuzzer of kernel programs: random programs against the kernel's public API, run under
//! every model on 1 to 4 CPUs, checked against invariants from the run's report and trace.
//!
//! **Mechanism.** [`program::program`] is a proptest strategy of [`Program`]s: tasks of random
//! policies, priorities and affinities doing system calls of atoms, sleeps, wait-queue waits
//! and wakes, `preempt_disable`, `local_irq_save` and `local_bh_disable` sections, spawns and
//! joins, softirq and tasklet raises, device interrupts now and at a time, affinity changes and
//! model switches, on a random boot model, `bh=` and `HZ`. `run_program` boots an instance
//! with the event trace on and runs it (`exec`); [`check_program`] checks:
//!
//! 1. every task and child finishes with the result its operations compute (a lost wakeup
//!    shows as a task that never finishes: the run is watched, a hang is a failure);
//! 2. no `BUG:` but the ones the program asked for (a sleep inside `preempt_disable`);
//! 3. every softirq raise, tasklet schedule and immediate device interrupt ran as often as the
//!    kernel promises (`exec`'s end checks);
//! 4. the trace's replay of every run queue (`check::replay`): at every switch the next task
//!    was runnable there, and no runnable task of a higher rank waited on that CPU;
//! 5. every preemption-point site is idle once the instance has stopped.
//!
//! [`campaign`] runs `cases` programs from a seed with proptest's runner and, on a failure,
//! shrinks it to a minimal failing program.
//!
//! **Invariant.** Every program the strategy makes must pass: a failure is a kernel bug (or a
//! checker bug), never an expected outcome; its seed reproduces the campaign that found it.

pub(crate) mod check;
pub(crate) mod exec;
pub mod program;

pub use program::{Program, TaskSpec};

use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Events per CPU the trace keeps: far above what a program records (a few thousand).
pub(crate) const TRACE_BUF: usize = 1 << 16;
/// How long one program may run before it is called hung.
pub(crate) const CASE_LIMIT: Duration = Duration::from_secs(20);

/// The boot configuration of `prog`: its CPUs, HZ, model, `bh=` and `patch_leaf=`, the event
/// trace on.
pub fn config(prog: &Program) -> kernel::Config {
    kernel::Config {
        cpus: prog.cpus,
        hz: prog.hz,
        preempt: prog.model,
        bh: prog.bh,
        patch_leaf: prog.patch_leaf,
        trace: kernel::trace::TraceOptions { events: true, buf_entries: TRACE_BUF, ..kernel::trace::TraceOptions::OFF },
        ..kernel::Config::default()
    }
}

/// What one run of a program gave.
pub struct Outcome {
    /// The report (`Err`: it did not boot, or hung).
    pub report: Result<kernel::RunReport, String>,
    /// Why tasks returned `exec::REFUSED`, by task index.
    pub task_errors: Vec<Option<String>>,
    /// What `init`'s end checks found.
    pub end_errors: Vec<String>,
}

/// Runs `prog` in a fresh instance, watched for [`CASE_LIMIT`].
pub(crate) fn run_program(prog: &Program) -> Outcome {
    let sh = exec::Shared::new(prog.clone());
    let s = sh.clone();
    let report = crate::watch::run_watched(config(prog), CASE_LIMIT, move || exec::init(s));
    Outcome {
        report,
        task_errors: sh.task_errors.iter().map(|e| e.get().cloned()).collect(),
        end_errors: sh.end_errors.get().cloned().unwrap_or_default(),
    }
}

/// Every invariant of the module docs, for one run of `prog`; empty when all hold.
pub(crate) fn check_outcome(prog: &Program, o: &Outcome) -> Vec<String> {
    let r = match &o.report {
        Ok(r) => r,
        Err(e) => return vec![format!("the run failed: {e}")],
    };
    let mut v = check::check_report(prog, r);
    v.extend(o.task_errors.iter().enumerate().filter_map(|(i, e)| e.as_ref().map(|e| format!("fz{i}: refused: {e}"))));
    v.extend(o.end_errors.iter().cloned());
    v.extend(check::replay(prog, r));
    let armed = kernel::model::patch::sites_not_idle();
    if armed != 0 {
        v.push(format!("{armed} preemption-point sites not idle after the run"));
    }
    v
}

/// Runs and checks `prog`: `Err` lists every violation.
pub fn check_program(prog: &Program) -> Result<(), String> {
    let before = kernel::model::patch::sites_not_idle();
    if before != 0 {
        return Err(format!(
            "{before} preemption-point sites were not idle before this program ran: an earlier program (or another instance in this process) left them armed"
        ));
    }
    let v = check_outcome(prog, &run_program(prog));
    if v.is_empty() {
        Ok(())
    } else {
        Err(v.join("\n"))
    }
}

/// A campaign's settings.
#[derive(Clone, Copy, Debug)]
pub struct CampaignConfig {
    /// Programs to run.
    pub cases: u32,
    /// The seed of the generator.
    pub seed: u64,
    /// CPUs of every program (`None`: each program draws 1..=4).
    pub cpus: Option<usize>,
    /// Shrinking steps at most after a failure.
    pub max_shrink_iters: u32,
}

/// Most programs of one campaign.
pub const MAX_CASES: u32 = 10_000_000;
/// Most shrinking steps after a failure.
pub const MAX_SHRINK: u32 = 100_000;

impl CampaignConfig {
    /// Rejects settings naming the field (`cases=0`) and what to use.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_CASES).contains(&self.cases) {
            return Err(format!("cases={}: use 1..={MAX_CASES} programs", self.cases));
        }
        if let Some(c) = self.cpus.filter(|c| !(1..=4).contains(c)) {
            return Err(format!("cpus={c}: the fuzzer's programs run on 1..=4 CPUs"));
        }
        if self.max_shrink_iters > MAX_SHRINK {
            return Err(format!("max_shrink_iters={}: use 0..={MAX_SHRINK} shrinking steps", self.max_shrink_iters));
        }
        Ok(())
    }
}

/// A failing program, shrunk.
#[derive(Debug)]
pub struct Failure {
    /// The minimal failing program proptest found.
    pub program: Program,
    /// What it violated.
    pub reason: String,
    /// Programs run before the first failure (the failing one included).
    pub case: u64,
    /// The first failing program, before shrinking, and what it violated (a failure that
    /// leaves state behind, such as armed sites, makes every shrunk program fail too).
    pub first: (Program, String),
}

/// What a campaign did.
#[derive(Debug)]
pub struct CampaignReport {
    /// Programs run (shrinking steps included).
    pub runs: u64,
    /// The first failure, shrunk, if any.
    pub failure: Option<Failure>,
}

/// Runs a campaign; `progress` is called after every program with the number run so far.
pub fn campaign(cfg: &CampaignConfig, progress: &(dyn Fn(u64) + Sync)) -> Result<CampaignReport, String> {
    cfg.validate()?;
    let runner_cfg = RunnerConfig {
        cases: cfg.cases,
        failure_persistence: None,
        max_shrink_iters: cfg.max_shrink_iters,
        max_global_rejects: 0,
        ..RunnerConfig::default()
    };
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&cfg.seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(runner_cfg, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let (runs, first_fail) = (AtomicU64::new(0), AtomicU64::new(0));
    let first = std::sync::Mutex::new(None);
    let result = runner.run(&program::program(cfg.cpus), |prog| {
        let n = runs.fetch_add(1, Ordering::AcqRel) + 1;
        progress(n);
        check_program(&prog).map_err(|e| {
            if first_fail.compare_exchange(0, n, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                *first.lock().unwrap_or_else(|p| p.into_inner()) = Some((prog.clone(), e.clone()));
            }
            TestCaseError::fail(e)
        })
    });
    let first = first.into_inner().unwrap_or_else(|p| p.into_inner());
    let failure = match result {
        Ok(()) => None,
        Err(TestError::Fail(reason, program)) => {
            let first = first.unwrap_or_else(|| (program.clone(), reason.message().to_string()));
            Some(Failure {
                program,
                reason: reason.message().to_string(),
                case: first_fail.load(Ordering::Acquire),
                first,
            })
        }
        Err(TestError::Abort(why)) => return Err(format!("the fuzzer stopped: {why}")),
    };
    Ok(CampaignReport { runs: runs.load(Ordering::Acquire), failure })
}
