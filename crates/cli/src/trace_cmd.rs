//! `atomkernel trace`: runs a workload with the tracers on and writes what they found
//! (see `lab::trace_run`, `lab::trace_report`, `lab::chrome_trace`).

use crate::input::OutDir;
use crate::output::{out, outln};
use crate::values::{self, defaulted};
use kernel::trace::TraceOptions;
use kernel::{Config, PreemptModel};
use lab::symbols::Resolver;
use lab::trace_run::{self, TraceRun};
use lab::{chrome_trace, trace_report};
use std::path::PathBuf;

#[derive(clap::Args)]
pub(crate) struct TraceArgs {
    /// What to run: scenario (the 1996 scenario), load (worker + RT probe), long-atom (the load
    /// with one deliberately long atom per system call), torture (the register torture: user
    /// mode under none, kernel mode under full).
    #[arg(long, default_value_t = TraceRun::default().workload)]
    workload: String,
    /// Preemption model. Default: voluntary, and full for the torture (which runs under none or
    /// full only).
    #[arg(long, value_parser = values::one::<PreemptModel>())]
    preempt: Option<PreemptModel>,
    /// Tracers as a comma list (events, preemptoff, wakeup_rt, profile) or `all`.
    #[arg(long, default_value = "all")]
    tracers: String,
    /// Directory to write trace.json (Chrome trace / Perfetto), trace.txt, report.txt and
    /// report.json (the report's sections as data) to; removed again if the run fails or is interrupted before writing.
    #[arg(long, default_value = "atomkernel-trace")]
    out: PathBuf,
    // The workloads' settings are `Option`s, so that one given to a workload that does not
    // read it (`lab::trace_run::reads`), which would change nothing, is refused.
    #[arg(long, help = defaulted("Length of the load and long-atom workloads in seconds (above 0, at most 600)", TraceRun::default().seconds))]
    seconds: Option<f64>,
    #[arg(long, help = defaulted("Tick rate (the profiler samples at every tick), 1..=10000; not for the torture, which has its own", Config::default().hz))]
    hz: Option<u32>,
    /// Events kept per CPU (the newest are kept), 64..=16777216.
    #[arg(long, default_value_t = TraceOptions::OFF.buf_entries)]
    buf: usize,
    #[arg(long, help = defaulted("Atoms per system call of the worker (load, long-atom), 1..=4096", TraceRun::default().atoms))]
    atoms: Option<usize>,
    #[arg(long, help = defaulted("Period of the RT probe in microseconds (load, long-atom), 100..=1000000", TraceRun::default().interval_us))]
    interval_us: Option<u64>,
    #[arg(long, help = defaulted("Length of the long atom in microseconds (long-atom), 1..=1000000", TraceRun::default().long_atom_us))]
    long_atom_us: Option<u64>,
    /// Rows per report section, 1..=10000.
    #[arg(long, default_value_t = 5)]
    top: usize,
    #[command(flatten)]
    cpus: crate::cpus_arg::CpusArg,
}

/// The fields of [`TraceRun`] and of the kernel's `Config` it boots (`trace=`, `trace_buf=`,
/// ...), and the option that sets each.
const FLAGS: [(&str, &str); 10] = [
    ("cpus", "--cpus"),
    ("preempt", "--preempt"),
    ("hz", "--hz"),
    ("trace", "--tracers"),
    ("trace_buf", "--buf"),
    ("workload", "--workload"),
    ("seconds", "--seconds"),
    ("atoms", "--atoms"),
    ("interval_us", "--interval-us"),
    ("long_atom_us", "--long-atom-us"),
];

/// The most rows a report section takes (`--top`).
const MAX_TOP: usize = 10_000;

/// The kernel's configuration (checked with the rest, by [`TraceRun::validate`]).
fn config(a: &TraceArgs) -> Result<Config, String> {
    let trace = TraceOptions::parse(&a.tracers, a.buf).map_err(|e| values::flags(e, &FLAGS))?;
    if !trace.any() {
        return Err(format!(
            "--tracers {}: name at least one of {}, or all",
            a.tracers,
            TraceOptions::NAMES.join(", ")
        ));
    }
    let preempt = a.preempt.unwrap_or_else(|| trace_run::default_model(a.workload.trim()));
    let hz = a.hz.unwrap_or(Config::default().hz);
    Ok(Config { preempt, hz, trace, cpus: a.cpus.get(), ..Config::default() }.with_watchdog_defaults())
}

/// A workload's setting given for a workload that does not read it, as the error saying so.
fn unread(a: &TraceArgs) -> Result<(), String> {
    let w = a.workload.trim();
    let given = [
        ("hz", a.hz.map(|v| v.to_string())),
        ("seconds", a.seconds.map(|v| v.to_string())),
        ("atoms", a.atoms.map(|v| v.to_string())),
        ("interval_us", a.interval_us.map(|v| v.to_string())),
        ("long_atom_us", a.long_atom_us.map(|v| v.to_string())),
    ];
    for (field, v) in given {
        let Some(v) = v.filter(|_| !trace_run::reads(w).contains(&field)) else { continue };
        let flag = FLAGS.iter().find(|(f, _)| *f == field).map_or(field, |(_, o)| o);
        let readers: Vec<&str> =
            trace_run::WORKLOADS.into_iter().filter(|x| trace_run::reads(x).contains(&field)).collect();
        return Err(format!(
            "{flag} {v}: the {w} workload does not read it ({}), so it would change nothing; drop {flag}, or use --workload {}",
            match w {
                "scenario" => "the scenario has the seed's fixed shape: 5 atoms of 1000 us, and its own length",
                "torture" => "the torture runs a fixed number of preemptions at its own tick rate",
                _ => "only the long-atom workload has a long atom",
            },
            readers.join(" or ")
        ));
    }
    Ok(())
}

/// The files `trace` writes into `--out`.
const FILES: [&str; 4] = ["trace.json", "trace.txt", "report.json", "report.txt"];

/// What `trace` runs, checked before anything starts (the `--out` directory too).
pub(crate) fn plan(a: &TraceArgs) -> Result<TraceRun, String> {
    let d = TraceRun::default();
    let t = TraceRun {
        workload: a.workload.trim().to_string(),
        config: config(a)?,
        seconds: a.seconds.unwrap_or(d.seconds),
        atoms: a.atoms.unwrap_or(d.atoms),
        interval_us: a.interval_us.unwrap_or(d.interval_us),
        long_atom_us: a.long_atom_us.unwrap_or(d.long_atom_us),
    };
    t.validate().map_err(|e| values::flags(e, &FLAGS))?;
    unread(a)?;
    if !(1..=MAX_TOP).contains(&a.top) {
        return Err(format!("--top {}: use 1..={MAX_TOP} rows per report section", a.top));
    }
    OutDir::check("--out", &a.out, &FILES)?;
    Ok(t)
}

pub(crate) fn run(a: &TraceArgs) -> Result<(), String> {
    let t = plan(a)?;
    let out = OutDir::prepare("--out", &a.out, &FILES)?;
    let report = trace_run::run(&t)?;
    let tr = report.trace.ok_or("the kernel returned no trace (was it built without the `trace` feature?)")?;
    let resolver = Resolver::load();
    let analysis = trace_report::analyse(&tr, &resolver);
    let text = trace_report::render(&analysis, a.top);
    let write = |name: &str, body: String| {
        let p = out.path().join(name);
        std::fs::write(&p, body).map_err(|e| format!("--out: cannot write {}: {e}", p.display()))
    };
    let json = chrome_trace::chrome_json(&tr, &resolver);
    write("trace.json", serde_json::to_string(&json).map_err(|e| e.to_string())?)?;
    write("trace.txt", chrome_trace::text(&tr, &resolver))?;
    write("report.json", serde_json::to_string_pretty(&analysis).map_err(|e| e.to_string())?)?;
    write("report.txt", text.clone())?;
    out.keep(); // written: a reader of stdout that goes away does not take the files with it
    outln!("# atomkernel trace --workload {} --preempt {}: {}", t.workload, t.config.preempt, trace_run_note(&t));
    out!("{text}");
    outln!(
        "\nwrote {0}/trace.json (open in https://ui.perfetto.dev or chrome://tracing), {0}/trace.txt, {0}/report.txt, {0}/report.json",
        a.out.display()
    );
    Ok(())
}

fn trace_run_note(t: &TraceRun) -> String {
    match t.workload.as_str() {
        "scenario" => "5 atoms of 1000 us, device IRQ in atom 1 wakes rt (FIFO 50)".into(),
        "torture" => "register torture, 20000 preemptions at HZ=10000 (its own tick rate)".into(),
        w => format!(
            "{} s, worker: {} atoms per system call{}, rt (FIFO 80) every {} us",
            t.seconds,
            t.atoms,
            if w == "long-atom" { format!(" + one long atom of {} us", t.long_atom_us) } else { String::new() },
            t.interval_us
        ),
    }
}
