//! `atomkernel demo`: the seed's scenario (see `services::scenario`): a table first, one row
//! per model (when the interrupt came, where the RT task ran, its wait, whether the host held
//! the CPU meanwhile), each model's timeline with `--timeline`; with `--repeat` the RT wait's
//! distribution per model, runs the host held set aside.

use crate::cpus_arg::CpusArg;
use crate::output::{out, outln};
use crate::values::{self, List};
use kernel::{Config, PatchLeaf, PatchSync, PreemptModel, PtableMode};
use services::scenario::{self, AtomKind, ScenarioConfig};

#[derive(clap::Args)]
pub(crate) struct DemoArgs {
    /// Preemption model (none, voluntary, full, lazy, cpulock, patch-int3, patch-call) or
    /// `all` for every model this build has.
    #[arg(long, default_value = "all", value_parser = values::list::<PreemptModel>())]
    preempt: List<PreemptModel>,
    /// Print one JSON object per model (one per line) instead of the table.
    #[arg(long)]
    json: bool,
    /// After the table, each model's timeline: every atom, the interrupt, the RT task.
    #[arg(long)]
    timeline: bool,
    /// Atoms in the system call.
    #[arg(long, default_value_t = 5)]
    atoms: usize,
    /// Length of each atom in microseconds.
    #[arg(long, default_value_t = 1000)]
    atom_us: u64,
    /// When the device interrupt arrives, in microseconds after atom 1 begins.
    #[arg(long, default_value_t = 200)]
    irq_at_us: u64,
    /// What the atoms do, and so where the interrupt lands: checksum (in the function with the
    /// points), callee (in a callee without points), libc (in libc's memset), preempt-off
    /// (inside a preempt_disable section), two-points (between two points of a loop), irq-off
    /// (in a callee without points that returns with IRQs masked).
    #[arg(long, default_value = "checksum", value_parser = values::one::<AtomKind>())]
    kind: AtomKind,
    /// Switch the running kernel to this model in the middle of the system call (at the start
    /// of atom 1, before the interrupt).
    #[arg(long, value_parser = values::one::<PreemptModel>())]
    switch_to: Option<PreemptModel>,
    /// The patch models' point table: exact (the next points of the interrupted instruction,
    /// from the machine code) or function (every point of its function). Default: the
    /// kernel's (exact); only with a patch model.
    #[arg(long, value_parser = values::one::<PtableMode>())]
    ptable: Option<PtableMode>,
    /// Where the patch models serve an event whose interrupted function reaches no point: walk
    /// (up the stack, at the first caller's next point) or return (at that function's return:
    /// one unwind step, the RT task no later, but at a return rather than a point). Default:
    /// the kernel's (walk); only with a patch model.
    #[arg(long, value_parser = values::one::<PatchLeaf>())]
    patch_leaf: Option<PatchLeaf>,
    /// How the patch models' patches synchronise the other CPUs: none (one byte alone) or ipi
    /// (Linux's text_poke_bp: int3 first, a serializing round on every CPU, the final byte,
    /// another round). Default: the kernel's (none); only with a patch model.
    #[arg(long, value_parser = values::one::<PatchSync>())]
    patch_sync: Option<PatchSync>,
    /// Time the patch handler's parts too (look-up, unwinding, arming, redirect: the JSON's
    /// handler_parts_ns_median), at the laps' own cost in the handler's time; only with a
    /// patch model.
    #[arg(long)]
    handler_parts: bool,
    /// Run the scenario this many times per model and print the RT wait's distribution
    /// (min, median, max) instead of one timeline.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// With 2 or more, the interrupt arrives on CPU 0 and the worker and the RT task run on
    /// CPU 1: the wakeup crosses CPUs.
    #[command(flatten)]
    cpus: CpusArg,
}

/// The fields of [`ScenarioConfig`] set by an option of their own name.
const SCENARIO_FLAGS: [(&str, &str); 3] =
    [("irq_at_us", "--irq-at-us"), ("atom_us", "--atom-us"), ("atoms", "--atoms")];

/// What `demo` runs, checked before anything starts.
pub(crate) struct Plan {
    models: Vec<PreemptModel>,
    sc: ScenarioConfig,
    /// The kernel configuration of every run but its model.
    base: Config,
    /// Stderr notes: what the options make of the run that the user may not expect.
    notes: Vec<String>,
}

pub(crate) fn plan(args: &DemoArgs) -> Result<Plan, String> {
    let (kind, switch_to) = (args.kind, args.switch_to);
    let sc = ScenarioConfig { kind, atoms: args.atoms, atom_us: args.atom_us, irq_at_us: args.irq_at_us, switch_to };
    sc.validate().map_err(|e| values::flags(e, &SCENARIO_FLAGS))?;
    let models = args.preempt.0.clone();
    if models.is_empty() {
        return Err("--preempt: name at least one model, or all".into());
    }
    let run_models: Vec<PreemptModel> = models.iter().copied().chain(switch_to).collect();
    let given = [
        ("--ptable", args.ptable.map(|p| p.name())),
        ("--patch-leaf", args.patch_leaf.map(|p| p.name())),
        ("--patch-sync", args.patch_sync.map(|p| p.name())),
        ("--handler-parts", args.handler_parts.then_some("")),
    ];
    crate::input::patch_options_apply(&given, &run_models)?;
    let d = Config::default();
    let (ptable, patch_sync) = (args.ptable.unwrap_or(d.ptable), args.patch_sync.unwrap_or(d.patch_sync));
    if args.repeat == 0 || args.repeat > 10_000 {
        return Err(format!("--repeat {}: use 1..=10000", args.repeat));
    }
    let mut notes = Vec::new();
    match switch_to {
        Some(to) if models == [to] => {
            return Err(format!(
                "--switch-to {to}: the kernel already runs {to} (--preempt {to}); switch to another model"
            ))
        }
        Some(to) if models.contains(&to) => {
            notes.push(format!("--switch-to {to}: the {to} run does not switch (it runs {to} already)"))
        }
        _ => {}
    }
    let patch_leaf = args.patch_leaf.unwrap_or(d.patch_leaf);
    let base =
        Config { patch_sync, patch_leaf, patch_parts: args.handler_parts, ..config(ptable, args.cpus.get(), &sc) };
    values::boot(&base)?;
    Ok(Plan { models, sc, base, notes })
}

pub(crate) fn run(args: &DemoArgs) -> Result<(), String> {
    let Plan { models, sc, base, notes } = plan(args)?;
    for n in notes {
        eprintln!("atomkernel demo: note: {n}");
    }
    if args.repeat > 1 {
        return demo_repeat(&models, &sc, base, args.repeat, args.json);
    }
    let mut results = Vec::new();
    for m in models {
        let r = run_one(m, base.clone(), &sc)?;
        if args.json {
            outln!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
        }
        results.push(r);
    }
    if !args.json {
        out!("{}", table(&results));
        if args.timeline {
            for r in &results {
                outln!();
                out!("{}", scenario::render(r));
            }
        } else {
            outln!("each run's events (every atom, the interrupt, the RT task): --timeline");
        }
    }
    Ok(())
}

/// One row per run: when the interrupt came (after atom 1 began, and how late the host
/// delivered it), where the RT task ran, its wait, and whether the host held the CPU.
fn table(results: &[scenario::ScenarioResult]) -> String {
    let mut s = format!(
        "{:<12} {:>10} {:>8}  {:<22} {:>9} {:>11}  {}\n",
        "model", "irq_at_us", "late_us", "rt_ran", "wait_ms", "point_rt_us", "host"
    );
    for r in results {
        let served = r.point_to_rt_ns.map_or("-".to_string(), |ns| format!("{:.1}", ns as f64 / 1e3));
        s += &format!(
            "{:<12} {:>10.1} {:>8.1}  {:<22} {:>9.3} {:>11}  {}\n",
            r.model,
            r.irq_at_ns as f64 / 1e3,
            r.irq_late_ns as f64 / 1e3,
            r.rt_ran(),
            r.rt_wait_ns as f64 / 1e6,
            served,
            if r.host_held { "held the CPU" } else { "-" }
        );
    }
    s += "irq_at_us: when the device interrupt came, after atom 1 began (late_us: after the time\n\
          asked); point_rt_us: from the point the RT task ran at to it running; host: the host\n\
          took the worker's CPU (its thread) between atom 1's start and the RT task running\n";
    s
}

/// The kernel configuration of every run but the model's, its detectors set for the system
/// call asked for ([`ScenarioConfig::watchdog`]: a long one under `none` is the scenario, not
/// a lockup).
fn config(ptable: kernel::PtableMode, cpus: usize, sc: &ScenarioConfig) -> Config {
    Config { ptable, cpus, watchdog: sc.watchdog(), ..Config::default() }
}

fn run_one(m: PreemptModel, base: Config, sc: &ScenarioConfig) -> Result<scenario::ScenarioResult, String> {
    scenario::run_with(Config { preempt: m, ..base }, sc).map_err(|e| e.to_string())
}

/// `demo --repeat N`: the RT wait's distribution per model, over the runs the host did not hold
/// (a run whose worker CPU the host took between atom 1's start and the RT task running is set
/// aside and counted; if the host held every run, all are kept and the line says so).
fn demo_repeat(models: &[PreemptModel], sc: &ScenarioConfig, base: Config, n: usize, json: bool) -> Result<(), String> {
    if !json {
        outln!(
            "{:<12} {:>5} {:>9} {:>18} {:>12} {:>12} {:>12} {:>11} {:>14} {:>10} {:>11} {:>16}",
            "model",
            "runs",
            "set_aside",
            "rt_ran_after_atom",
            "min_ms",
            "median_ms",
            "max_ms",
            "handler_us",
            "handler_med_us",
            "disarm_us",
            "sites/event",
            "point_to_rt_us"
        );
    }
    for &m in models {
        let mut runs = Vec::with_capacity(n);
        for _ in 0..n {
            runs.push(run_one(m, base.clone(), sc)?);
        }
        let held = runs.iter().filter(|r| r.host_held).count();
        if held < n {
            runs.retain(|r| !r.host_held);
        }
        let set_aside = if held < n { held } else { 0 };
        let n = runs.len();
        let mut waits: Vec<u64> = runs.iter().map(|r| r.rt_wait_ns).collect();
        waits.sort_unstable();
        let mut after: Vec<usize> = runs.iter().map(|r| r.rt_ran_after_atom).collect();
        after.sort_unstable();
        after.dedup();
        let (min, med, max) = (waits[0], waits[n / 2], waits[n - 1]);
        // The patch models' interrupt-exit work per RT event: look-up, unwinding, arming.
        let events: u64 = runs.iter().map(|r| r.patch.events).sum();
        let handler_ns = (events > 0).then(|| runs.iter().map(|r| r.patch.arm_ns).sum::<u64>() / events);
        let sites = (events > 0).then(|| runs.iter().map(|r| r.patch.sites_armed).sum::<u64>() as f64 / events as f64);
        // Disarming once the event is served (in `__schedule`), and the SYNC_CORE rounds.
        let disarm_ns = (events > 0).then(|| runs.iter().map(|r| r.patch.disarm_ns).sum::<u64>() / events);
        let rounds = (events > 0).then(|| runs.iter().map(|r| r.patch.sync_rounds).sum::<u64>() as f64 / events as f64);
        // The handler's cost per event, run by run: its median.
        let mut per_event: Vec<u64> = runs.iter().filter_map(|r| r.handler_ns_per_event).collect();
        per_event.sort_unstable();
        let handler_med = per_event.get(per_event.len() / 2).copied();
        // The handler's parts per event, run by run: each one's median (`--handler-parts`).
        let part = |f: fn(&kernel::model::patch::PatchStatsSnapshot) -> u64| {
            let mut v: Vec<u64> =
                runs.iter().filter(|r| r.patch.events > 0).map(|r| f(&r.patch) / r.patch.events).collect();
            v.sort_unstable();
            v.get(v.len() / 2).copied()
        };
        let parts = base.patch_parts.then(|| {
            serde_json::json!({"lookup": part(|p| p.lookup_ns), "unwind": part(|p| p.unwind_ns),
                "poke": part(|p| p.poke_ns), "redirect": part(|p| p.redirect_ns)})
        });
        // From the worker's point to the RT task running: serving the point (median).
        let mut served: Vec<u64> = runs.iter().filter_map(|r| r.point_to_rt_ns).collect();
        served.sort_unstable();
        let served_med = served.get(served.len() / 2).copied();
        if json {
            let v = serde_json::json!({"model": m.name(), "cpus": base.cpus, "runs": n, "rt_ran_after_atom": after,
                "rt_wait_ns": {"min": min, "median": med, "max": max}, "handler_ns_mean": handler_ns,
                "handler_ns_median": handler_med, "sites_armed_per_event": sites, "ptable": base.ptable.name(), "patch_leaf": base.patch_leaf.name(),
                "patch_sync": base.patch_sync.name(), "disarm_ns_mean": disarm_ns, "sync_rounds_per_event": rounds,
                "point_to_rt_ns_median": served_med, "handler_parts_ns_median": parts,
                "set_aside": set_aside, "host_held_every_run": held > 0 && set_aside == 0});
            outln!("{v}");
        } else {
            let after: Vec<String> = after.iter().map(|a| a.to_string()).collect();
            let ms = |ns: u64| ns as f64 / 1e6;
            let handler = handler_ns.map_or("-".to_string(), |ns| format!("{:.2}", ns as f64 / 1e3));
            let served = served_med.map_or("-".to_string(), |ns| format!("{:.1}", ns as f64 / 1e3));
            let hmed = handler_med.map_or("-".to_string(), |ns| format!("{:.2}", ns as f64 / 1e3));
            let sites = sites.map_or("-".to_string(), |s| format!("{s:.2}"));
            let disarm = disarm_ns.map_or("-".to_string(), |ns| format!("{:.2}", ns as f64 / 1e3));
            outln!(
                "{:<12} {:>5} {:>9} {:>18} {:>12.3} {:>12.3} {:>12.3} {:>11} {:>14} {:>10} {:>11} {:>16}",
                m.name(),
                n,
                if held > 0 && set_aside == 0 { "none:all".to_string() } else { set_aside.to_string() },
                after.join(","),
                ms(min),
                ms(med),
                ms(max),
                handler,
                hmed,
                disarm,
                sites,
                served
            );
        }
    }
    if !json {
        outln!(
            "set_aside: runs left out because the host took the worker's CPU between atom 1 and the RT task\n\
             (none:all: it took it in every run, and all are kept)"
        );
    }
    Ok(())
}
