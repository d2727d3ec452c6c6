//! `atomkernel torture`: the register-integrity torture (see `lab::torture`) and the
//! cross-modifying-code torture (`lab::patch_torture`).

use crate::cpus_arg::CpusArg;
use crate::output::outln;
use crate::values;
use kernel::{PatchSync, PreemptModel};
use lab::torture::{self, TortureConfig};

#[derive(clap::Args)]
pub(crate) struct TortureArgs {
    /// Stop after the torture tasks have been preempted this many times in all.
    #[arg(long, default_value_t = TortureConfig::default().preemptions)]
    preemptions: u64,
    /// Number of torture tasks.
    #[arg(long, default_value_t = TortureConfig::default().tasks)]
    tasks: usize,
    /// Stop after this many seconds at the latest (1..=86400; checked every 10 ms, and by the
    /// tasks after every round).
    #[arg(long, default_value_t = TortureConfig::default().max_secs)]
    max_seconds: u64,
    /// Spin iterations per round (how long the registers stay live), 1..=100000000.
    #[arg(long, default_value_t = TortureConfig::default().spins)]
    spins: u64,
    /// Preempt kernel code: run the rounds inside system calls (under --preempt).
    #[arg(long)]
    kernel: bool,
    /// The model for --kernel: full, lazy, patch-int3 or patch-call.
    #[arg(long, default_value_t = TortureConfig::default().model, requires = "kernel", value_parser = values::one::<PreemptModel>())]
    preempt: PreemptModel,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cpus: CpusArg,
    /// Force migrations between CPUs (every 500 us each torture task is moved to the next
    /// CPU); needs --cpus 2 or more.
    #[arg(long)]
    migrate: bool,
    /// The cross-modifying-code torture instead: some CPUs execute a preemption-point site in
    /// kernel code in tight loops while the others (one on 2 or 3 CPUs, half from 4 on) arm
    /// and disarm it as int3 and call (needs --cpus 2 or more; ends at --patches or
    /// --max-seconds; exit 2 on a mis-execution).
    #[arg(long, conflicts_with_all = ["kernel", "migrate", "tasks", "spins", "preemptions"])]
    patching: bool,
    /// Single-byte patches to write under --patching.
    #[arg(long, default_value_t = 10_000_000, requires = "patching")]
    patches: u64,
    /// How each patch synchronises the other CPUs under --patching: none (one byte alone) or
    /// ipi (Linux's text_poke_bp: int3 first, a serializing round on every CPU, the final
    /// byte, another round).
    #[arg(long, default_value = "none", requires = "patching", value_parser = values::one::<PatchSync>())]
    patch_sync: PatchSync,
}

/// The fields of [`TortureConfig`] (and of the kernel's `Config` it boots), the parameters of
/// the patch torture, and the option that sets each.
const FLAGS: [(&str, &str); 9] = [
    ("cpus", "--cpus"),
    ("tasks", "--tasks"),
    ("preemptions", "--preemptions"),
    ("max_secs", "--max-seconds"),
    ("max_seconds", "--max-seconds"),
    ("spins", "--spins"),
    ("migrate", "--migrate"),
    ("model", "--preempt"),
    ("patches", "--patches"),
];

/// The torture to run, checked: every option in range (see `TortureConfig::validate`).
pub(crate) fn plan(a: &TortureArgs) -> Result<TortureConfig, String> {
    let named = |e: String| values::flags(e, &FLAGS);
    if a.patching {
        let check = lab::patch_torture::check(a.cpus.get(), a.patches, a.max_seconds);
        check.map_err(|e| format!("--patching: {}", named(e)))?;
    }
    let cfg = TortureConfig {
        tasks: a.tasks,
        preemptions: a.preemptions,
        max_secs: a.max_seconds,
        spins: a.spins,
        kernel_mode: a.kernel,
        model: a.preempt,
        cpus: a.cpus.get(),
        migrate: a.migrate,
    };
    cfg.validate().map_err(named)?;
    values::boot(&kernel::Config { cpus: cfg.cpus, ..kernel::Config::default() })?;
    Ok(cfg)
}

pub(crate) fn run(a: &TortureArgs) -> Result<(), String> {
    if a.patching {
        return run_patching(a);
    }
    let cfg = plan(a)?;
    let r = torture::run(&cfg).map_err(|e| e.to_string())?;
    if a.json {
        outln!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
    } else {
        outln!(
            "torture ({} mode, preempt={}, {} CPU{}): {} preemptions, {} migrations, {} rounds, {} mismatches, vector registers: {}, {:.1} s",
            r.mode,
            r.model,
            r.cpus,
            if r.cpus == 1 { "" } else { "s" },
            r.preemptions,
            r.migrations,
            r.rounds,
            r.mismatches.len(),
            r.isa,
            r.elapsed_ms as f64 / 1000.0
        );
        if let Some([events, fired, redirects, fallbacks]) = r.patch {
            outln!("  patch: {events} RT events armed, {fired} armed points reached, {redirects} returns redirected, {fallbacks} retried");
        }
        for m in r.mismatches.iter().take(20) {
            outln!("  {m}");
        }
    }
    if r.mismatches.is_empty() {
        Ok(())
    } else {
        Err(format!("{} register mismatches across preemption", r.mismatches.len()))
    }
}

fn run_patching(a: &TortureArgs) -> Result<(), String> {
    let sync = a.patch_sync;
    plan(a)?;
    let r = lab::patch_torture::run(a.cpus.get(), a.patches, a.max_seconds, sync)?;
    if a.json {
        outln!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
    } else {
        outln!(
            "torture --patching ({} CPUs, {} patching, patch_sync={}): {} patches ({} SYNC_CORE rounds), \
             {} executions of the site, {} mismatches, collateral {} int3 + {} call hits, {} sites left armed, {:.1} s",
            r.cpus,
            r.patchers,
            r.patch_sync,
            r.patches,
            r.sync_rounds,
            r.executions,
            r.mismatches,
            r.int3_hits,
            r.call_hits,
            r.sites_left_armed,
            r.elapsed_ms as f64 / 1000.0
        );
        for b in &r.bugs {
            outln!("  {b}");
        }
    }
    if r.ok() {
        Ok(())
    } else {
        Err(format!(
            "torture --patching: {} mis-executions, {} BUG reports, {} sites left armed",
            r.mismatches,
            r.bugs.len(),
            r.sites_left_armed
        ))
    }
}
