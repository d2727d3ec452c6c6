//! `atomkernel`: the command line of the atomkernel lab.
//!
//! With no command it runs its main job on the embedded defaults: the latency lab's comparison
//! of every preemption model this build has and the peers, on every workload
//! (`atomkernel compare`).
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use kernel::PreemptModel;
use services::scenario::{self, ScenarioConfig};
use std::process::ExitCode;

mod bh_cmd;
mod compare_cmd;
mod latency_cmd;
mod report;
mod svg;
mod torture_cmd;
mod trace_cmd;

#[derive(Parser)]
#[command(name = "atomkernel", version, about = "A user-mode kernel for measuring kernel preemption")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// The seed's scenario: a 5-atom system call, a device IRQ in atom 1 wakes an RT task.
    Demo(DemoArgs),
    /// Register-integrity torture: every register, flag and vector register checked across
    /// preemptions.
    Torture(torture_cmd::TortureArgs),
    /// Every built model and the peers side by side on every workload: RT latency and
    /// normal-path throughput with the overhead against `none` (the default job).
    #[command(alias = "models")]
    Compare(compare_cmd::CompareArgs),
    /// cyclictest inside atomkernel: RT probes beside a workload under one model.
    Latency(latency_cmd::LatencyArgs),
    /// Bottom halves under packet load: RT wakeup latency and packet throughput with
    /// softirqs at irq_exit (bh=classic) against all in ksoftirqd (bh=threaded).
    Packets(bh_cmd::PacketsArgs),
    /// Runs a workload with the tracers on (preemptoff/irqsoff, wakeup_rt, profiler, event
    /// ring) and writes trace.json (Chrome trace / Perfetto), trace.txt and report.txt.
    Trace(trace_cmd::TraceArgs),
    /// The preemption-point table: every site's address, function and source location.
    Points {
        /// Print one JSON object per site.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Preemption model (none, voluntary, full, lazy, cpulock, patch-int3, patch-call) or
    /// `all` for every model this build has.
    #[arg(long, default_value = "all")]
    preempt: String,
    /// Print one JSON object per model (one per line) instead of the timeline.
    #[arg(long)]
    json: bool,
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
    /// (inside a preempt_disable section), two-points (between two points of a loop).
    #[arg(long, default_value = "checksum")]
    kind: String,
    /// Switch the running kernel to this model in the middle of the system call (at the start
    /// of atom 1, before the interrupt).
    #[arg(long)]
    switch_to: Option<String>,
    /// Run the scenario this many times per model and print the RT wait's distribution
    /// (min, median, max) instead of one timeline.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
}

fn demo(args: &DemoArgs) -> Result<(), String> {
    let switch_to =
        args.switch_to.as_deref().map(|m| m.parse::<PreemptModel>().map_err(|e| e.to_string())).transpose()?;
    let kind = services::scenario::AtomKind::parse(&args.kind).map_err(|e| format!("--kind: {e}"))?;
    let sc = ScenarioConfig { kind, atoms: args.atoms, atom_us: args.atom_us, irq_at_us: args.irq_at_us, switch_to };
    sc.validate()?;
    let models = services::lab::compare::parse_models(&args.preempt)?;
    if models.is_empty() {
        return Err("--preempt: name at least one model, or all".into());
    }
    if args.repeat == 0 || args.repeat > 10_000 {
        return Err(format!("--repeat {}: use 1..=10000", args.repeat));
    }
    if args.repeat > 1 {
        return demo_repeat(&models, &sc, args.repeat, args.json);
    }
    let mut results = Vec::new();
    for m in models {
        let r = scenario::run(m, &sc).map_err(|e| e.to_string())?;
        if args.json {
            println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
        } else {
            print!("{}", scenario::render(&r));
            println!();
        }
        results.push(r);
    }
    if !args.json && results.len() > 1 {
        println!("{:<12} {:>16} {:>18} {:>14}", "model", "irq_during_atom", "rt_ran_after_atom", "rt_wait_ms");
        for r in &results {
            println!(
                "{:<12} {:>16} {:>18} {:>14.3}",
                r.model,
                r.irq_during_atom,
                r.rt_ran_after_atom,
                r.rt_wait_ns as f64 / 1e6
            );
        }
    }
    Ok(())
}

/// `demo --repeat N`: the RT wait's distribution per model.
fn demo_repeat(models: &[PreemptModel], sc: &ScenarioConfig, n: usize, json: bool) -> Result<(), String> {
    if !json {
        println!(
            "{:<12} {:>5} {:>18} {:>12} {:>12} {:>12} {:>11} {:>16}",
            "model", "runs", "rt_ran_after_atom", "min_ms", "median_ms", "max_ms", "handler_us", "point_to_rt_us"
        );
    }
    for &m in models {
        let mut runs = Vec::with_capacity(n);
        for _ in 0..n {
            runs.push(scenario::run(m, sc).map_err(|e| e.to_string())?);
        }
        let mut waits: Vec<u64> = runs.iter().map(|r| r.rt_wait_ns).collect();
        waits.sort_unstable();
        let mut after: Vec<usize> = runs.iter().map(|r| r.rt_ran_after_atom).collect();
        after.sort_unstable();
        after.dedup();
        let (min, med, max) = (waits[0], waits[n / 2], waits[n - 1]);
        // The patch models' interrupt-exit work per RT event: look-up, unwinding, arming.
        let events: u64 = runs.iter().map(|r| r.patch.events).sum();
        let handler_ns = (events > 0).then(|| runs.iter().map(|r| r.patch.arm_ns).sum::<u64>() / events);
        // From the worker's point to the RT task running: serving the point (median).
        let mut served: Vec<u64> = runs.iter().filter_map(|r| r.point_to_rt_ns).collect();
        served.sort_unstable();
        let served_med = served.get(served.len() / 2).copied();
        if json {
            let v = serde_json::json!({"model": m.name(), "runs": n, "rt_ran_after_atom": after,
                "rt_wait_ns": {"min": min, "median": med, "max": max}, "handler_ns_mean": handler_ns,
                "point_to_rt_ns_median": served_med});
            println!("{v}");
        } else {
            let after: Vec<String> = after.iter().map(|a| a.to_string()).collect();
            let ms = |ns: u64| ns as f64 / 1e6;
            let handler = handler_ns.map_or("-".to_string(), |ns| format!("{:.2}", ns as f64 / 1e3));
            let served = served_med.map_or("-".to_string(), |ns| format!("{:.1}", ns as f64 / 1e3));
            println!(
                "{:<12} {:>5} {:>18} {:>12.3} {:>12.3} {:>12.3} {:>11} {:>16}",
                m.name(),
                n,
                after.join(","),
                ms(min),
                ms(med),
                ms(max),
                handler,
                served
            );
        }
    }
    Ok(())
}

/// `atomkernel points`: the site table with functions and source lines.
fn points(json: bool) -> Result<(), String> {
    for r in services::symbols::point_table()? {
        if json {
            println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
        } else {
            let f = r.function.as_deref().unwrap_or("?");
            println!("{:#014x}  {}:{}:{}  {}", r.addr, r.file, r.line, r.column, f);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command.unwrap_or(Command::Compare(compare_cmd::CompareArgs::defaults())) {
        Command::Demo(a) => demo(&a),
        Command::Torture(a) => torture_cmd::run(&a),
        Command::Compare(a) => compare_cmd::run(&a),
        Command::Latency(a) => latency_cmd::run(&a),
        Command::Packets(a) => bh_cmd::run(&a),
        Command::Trace(a) => trace_cmd::run(&a),
        Command::Points { json } => points(json),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("atomkernel: {e}");
            ExitCode::from(2)
        }
    }
}
