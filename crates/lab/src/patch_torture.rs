//! The cross-modifying-code torture: CPUs execute a preemption-point site in kernel code in a
//! tight loop while another CPU arms and disarms that same site, as `int3` and as `call`, as
//! fast as it can.
//!
//! **Mechanism.** The instance runs `preempt=patch-int3`, so that every armed site one of the
//! executors meets is collateral (no executor ever has an RT event of its own) and is counted by
//! kind in its CPU's figures: an `int3` is served by the SIGTRAP handler and stepped over, a
//! `call` reaches `rt_reschedule` and returns. The first CPUs run the patchers (one on 2 or 3
//! CPUs, half the CPUs from 4 on, so that several CPUs patch the same site at once, each
//! with its own counted claim); the others run one executor each, bound there, and the
//! patchers start once every executor has passed the site (so a loaded host cannot let a
//! patcher finish before an executor ran). An executor's loop mixes a running value through
//! the site on every iteration, inside a system call, and compares it with the same computation done without the
//! site: a mis-executed site (a torn instruction, a call to the wrong place, a register changed
//! across the trap or the call) shows as a mismatch, a `BUG:`, or a crash.
//!
//! **Invariant checked.** 0 mismatches, no `BUG:`, the site idle when the run ends (read back
//! from the code bytes), and the collateral hits no more than the executions.

use kernel::{spawn, syscall, Config, PatchSync, PreemptModel, TaskBuilder};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Iterations per executor system call.
const CHUNK: u64 = 20_000;

/// What a patching torture run saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PatchTortureReport {
    /// CPUs of the instance.
    pub cpus: usize,
    /// CPUs patching (the first ones); the others execute the site.
    pub patchers: usize,
    /// Single-byte patches of the site written (each arming and each disarming is one).
    pub patches: u64,
    /// Executions of the site by the executors.
    pub executions: u64,
    /// Executions whose running value differed from the computation without the site.
    pub mismatches: u64,
    /// How each patch synchronised the other CPUs (the `patch_sync=` boot option).
    pub patch_sync: &'static str,
    /// `SYNC_CORE` rounds the patches made (none under `patch_sync=none`).
    pub sync_rounds: u64,
    /// Collateral `int3`s the executors' CPUs served (armed breakpoints met and stepped over).
    pub int3_hits: u64,
    /// Collateral `call`s of `rt_reschedule` the executors' CPUs went through.
    pub call_hits: u64,
    /// Sites not idle when the run ended (read from the code bytes).
    pub sites_left_armed: usize,
    /// `BUG:` reports of the run.
    pub bugs: Vec<String>,
    /// Wall time of the run, in ms.
    pub elapsed_ms: u64,
}

impl PatchTortureReport {
    /// True when every execution was right and nothing was left behind.
    pub fn ok(&self) -> bool {
        self.mismatches == 0 && self.bugs.is_empty() && self.sites_left_armed == 0
    }
}

/// One step of the running value (the same with and without the site).
#[inline(always)]
fn mix(acc: u64, i: u64) -> u64 {
    acc.rotate_left(7) ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// `n` steps from `acc` with the torture's site executed on each.
#[inline(never)]
fn through_site(mut acc: u64, from: u64, n: u64) -> u64 {
    for i in from..from + n {
        acc = mix(std::hint::black_box(acc), i);
        kernel::preempt_point!();
    }
    acc
}

/// `n` steps from `acc` with no site.
#[inline(never)]
fn reference(mut acc: u64, from: u64, n: u64) -> u64 {
    for i in from..from + n {
        acc = mix(std::hint::black_box(acc), i);
    }
    acc
}

/// The address of the site in [`through_site`].
fn torture_site() -> Result<usize, String> {
    let mine: Vec<_> =
        kernel::text::sites().into_iter().filter(|s| s.info.file.ends_with("patch_torture.rs")).collect();
    match mine.as_slice() {
        [s] => Ok(s.addr),
        other => Err(format!("the patch torture: expected one site in patch_torture.rs, found {}", other.len())),
    }
}

/// Runs the torture on `cpus` CPUs (at least 2) until `patches` patches are written or
/// `max_seconds` have passed, each patch synchronised as `sync` says.
pub fn run(cpus: usize, patches: u64, max_seconds: u64, sync: PatchSync) -> Result<PatchTortureReport, String> {
    check(cpus, patches, max_seconds)?;
    let site = torture_site()?;
    let t0 = std::time::Instant::now();
    let config = Config { preempt: PreemptModel::PatchInt3, cpus, patch_sync: sync, ..Config::default() };
    let out = Arc::new(Counts::default());
    let o = out.clone();
    let report =
        kernel::run(config, move || torture_init(site, cpus, patches, max_seconds, &o)).map_err(|e| e.to_string())?;
    if let Err(e) = &report.init {
        return Err(format!("the patch torture: the run failed inside the kernel: {e}"));
    }
    let executors = &report.cpus[patchers(cpus)..];
    Ok(PatchTortureReport {
        cpus,
        patchers: patchers(cpus),
        patches: out.patches.load(Ordering::Relaxed),
        executions: out.executions.load(Ordering::Relaxed),
        mismatches: out.mismatches.load(Ordering::Relaxed),
        patch_sync: sync.name(),
        sync_rounds: out.sync_rounds.load(Ordering::Relaxed),
        int3_hits: executors.iter().map(|c| c.collateral_int3).sum(),
        call_hits: executors.iter().map(|c| c.collateral_calls).sum(),
        sites_left_armed: report.init.clone().unwrap_or(0) as usize,
        bugs: report.bugs.clone(),
        elapsed_ms: t0.elapsed().as_millis() as u64,
    })
}

/// Checks the torture's settings (before any work), naming the parameter (`cpus=1`) and what
/// to use.
pub fn check(cpus: usize, patches: u64, max_seconds: u64) -> Result<(), String> {
    if !(2..=kernel::config::MAX_CPUS).contains(&cpus) {
        return Err(format!(
            "cpus={cpus}: the patch torture needs 2 to {} CPUs (one patcher, the others executing the site)",
            kernel::config::MAX_CPUS
        ));
    }
    if patches == 0 {
        return Err("patches=0: give at least 1 (e.g. patches=10000000)".into());
    }
    if !(1..=86_400).contains(&max_seconds) {
        return Err(format!("max_seconds={max_seconds}: use 1..=86400 seconds"));
    }
    Ok(())
}

#[derive(Default)]
struct Counts {
    patches: AtomicU64,
    sync_rounds: AtomicU64,
    executions: AtomicU64,
    mismatches: AtomicU64,
    /// Executors that have passed the site at least once: the patchers start after all have
    /// (a patcher that ran its whole count before an executor was scheduled tested nothing).
    executing: AtomicU64,
}

/// How many of `cpus` CPUs patch: one on 2 or 3, half from 4 on.
fn patchers(cpus: usize) -> usize {
    if cpus >= 4 {
        cpus / 2
    } else {
        1
    }
}

fn torture_init(site: usize, cpus: usize, patches: u64, max_seconds: u64, out: &Arc<Counts>) -> i64 {
    let stop = Arc::new(AtomicBool::new(false));
    let executors: Vec<_> = (patchers(cpus)..cpus)
        .map(|c| {
            let (stop, out) = (stop.clone(), out.clone());
            spawn(TaskBuilder::new(&format!("xmodify{c}")).cpus(1 << c), move || {
                let first = c as u64 * (1 << 40);
                let mut from = first;
                while !stop.load(Ordering::Acquire) {
                    let (got, want) = syscall(|| (through_site(from, from, CHUNK), reference(from, from, CHUNK)));
                    out.executions.fetch_add(CHUNK, Ordering::Relaxed);
                    if from == first {
                        out.executing.fetch_add(1, Ordering::Release);
                    }
                    out.mismatches.fetch_add(u64::from(got != want), Ordering::Relaxed);
                    from += CHUNK;
                }
                0
            })
        })
        .collect();
    let deadline = kernel::time::now_ns() + max_seconds.saturating_mul(1_000_000_000);
    let executing = (cpus - patchers(cpus)) as u64;
    while out.executing.load(Ordering::Acquire) < executing && kernel::time::now_ns() < deadline {
        kernel::time::sleep_ns(100_000);
    }
    let patchers: Vec<_> = (0..patchers(cpus))
        .map(|p| {
            let o = out.clone();
            spawn(TaskBuilder::new(&format!("patcher{p}")).cpus(1 << p), move || {
                patch_until(site, p, patches, deadline, &o);
                0
            })
        })
        .collect();
    patchers.into_iter().for_each(|p| drop(p.join()));
    stop.store(true, Ordering::Release);
    executors.into_iter().for_each(|e| drop(e.join()));
    kernel::model::patch::sites_not_idle() as i64
}

/// One patcher: arms and disarms `site` (as `int3` twice, then `call` twice, shifted by the
/// patcher's number) until `patches` patches are written by all patchers or `deadline`.
fn patch_until(site: usize, p: usize, patches: u64, deadline: u64, out: &Counts) {
    let mut n = p as u64 * 2;
    while out.patches.load(Ordering::Relaxed) < patches && kernel::time::now_ns() < deadline {
        let int3 = n % 4 < 2;
        let armed = syscall(|| {
            let rounds = kernel::model::patch::torture_arm(site, int3)?;
            for _ in 0..64 {
                std::hint::spin_loop(); // armed long enough to be met
            }
            Ok::<_, String>(rounds + kernel::model::patch::torture_disarm(site, int3)?)
        });
        match armed {
            Ok(rounds) => out.sync_rounds.fetch_add(rounds as u64, Ordering::Relaxed),
            Err(e) => {
                eprintln!("the patch torture: {e}");
                return;
            }
        };
        out.patches.fetch_add(2, Ordering::Relaxed);
        n += 2;
    }
}
