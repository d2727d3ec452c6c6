//! `atomkernel`: the command line of the atomkernel lab.
//!
//! With no command it runs its main job on the embedded defaults: the 1996 scenario under
//! every preemption model this build has (`atomkernel demo --preempt all`).

use clap::{Parser, Subcommand};
use kernel::PreemptModel;
use services::scenario::{self, ScenarioConfig};
use std::process::ExitCode;

mod lab_cmd;
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
    /// Every built model side by side: normal-path throughput and RT wakeup latency under load.
    Models(lab_cmd::ModelsArgs),
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
    /// Switch the running kernel to this model in the middle of the system call (at the start
    /// of atom 1, before the interrupt).
    #[arg(long)]
    switch_to: Option<String>,
    /// Run the scenario this many times per model and print the RT wait's distribution
    /// (min, median, max) instead of one timeline.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
}

/// Parses `--preempt`: one model, or `all` for the built ones.
fn models(arg: &str) -> Result<Vec<PreemptModel>, String> {
    if arg == "all" {
        return Ok(PreemptModel::BUILT.to_vec());
    }
    arg.split(',').map(|m| m.trim().parse::<PreemptModel>().map_err(|e| e.to_string())).collect()
}

fn demo(args: &DemoArgs) -> Result<(), String> {
    let switch_to =
        args.switch_to.as_deref().map(|m| m.parse::<PreemptModel>().map_err(|e| e.to_string())).transpose()?;
    let sc = ScenarioConfig { atoms: args.atoms, atom_us: args.atom_us, irq_at_us: args.irq_at_us, switch_to };
    sc.validate()?;
    let models = models(&args.preempt)?;
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
            "{:<12} {:>5} {:>18} {:>12} {:>12} {:>12}",
            "model", "runs", "rt_ran_after_atom", "min_ms", "median_ms", "max_ms"
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
        if json {
            let v = serde_json::json!({"model": m.name(), "runs": n, "rt_ran_after_atom": after,
                "rt_wait_ns": {"min": min, "median": med, "max": max}});
            println!("{v}");
        } else {
            let after: Vec<String> = after.iter().map(|a| a.to_string()).collect();
            let ms = |ns: u64| ns as f64 / 1e6;
            println!(
                "{:<12} {:>5} {:>18} {:>12.3} {:>12.3} {:>12.3}",
                m.name(),
                n,
                after.join(","),
                ms(min),
                ms(med),
                ms(max)
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
    let outcome = match cli.command.unwrap_or(Command::Demo(default_demo())) {
        Command::Demo(a) => demo(&a),
        Command::Torture(a) => torture_cmd::run(&a),
        Command::Models(a) => lab_cmd::run(&a),
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

fn default_demo() -> DemoArgs {
    let sc = ScenarioConfig::default();
    DemoArgs {
        preempt: "all".into(),
        json: false,
        atoms: sc.atoms,
        atom_us: sc.atom_us,
        irq_at_us: sc.irq_at_us,
        switch_to: None,
        repeat: 1,
    }
}
