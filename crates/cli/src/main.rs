//! `atomkernel`: the command line of the atomkernel lab.
//!
//! With no command it runs its main job on the embedded defaults: the latency lab's comparison
//! of every preemption model this build has and the peers, on every workload
//! (`atomkernel compare`).
//!
//! This file is the argument parsing and the dispatch; each command is in its own
//! `<command>_cmd.rs`.
#![forbid(unsafe_code)]

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

mod compare_cmd;
mod compare_table;
mod cpus_arg;
mod demo_cmd;
mod fuzz_cmd;
mod input;
mod latency_cmd;
mod output;
mod packets_cmd;
#[cfg(test)]
mod parse_fuzz;
mod points_cmd;
mod qemu_cmd;
mod report;
mod report_charts;
mod soak_cmd;
mod svg;
mod torture_cmd;
mod trace_cmd;
mod values;

#[derive(Parser)]
#[command(name = "atomkernel", version, about = "A user-mode kernel for measuring kernel preemption")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// The seed's scenario: a 5-atom system call, a device IRQ in atom 1 wakes an RT task.
    Demo(demo_cmd::DemoArgs),
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
    Packets(packets_cmd::PacketsArgs),
    /// Runs a workload with the tracers on (preemptoff/irqsoff, wakeup_rt, profiler, event
    /// ring) and writes trace.json (Chrome trace / Perfetto), trace.txt, report.txt and
    /// report.json.
    Trace(trace_cmd::TraceArgs),
    /// The preemption-point table: every site's address, function and source location.
    Points(points_cmd::PointsArgs),
    /// Random kernel programs under every model on 1 to 4 CPUs, checked against the kernel's
    /// invariants; a failure is shrunk to a minimal program and printed with its seed.
    Fuzz(fuzz_cmd::FuzzArgs),
    /// The lab's workloads for minutes with random model switches, interrupt storms and
    /// probes: memory (RSS) and counters each minute; fails on a BUG or growing memory.
    Soak(soak_cmd::SoakArgs),
    /// The bare-metal image under qemu-system-x86_64 (demo, torture, compare), built if its
    /// sources changed: the hosted commands' tables from the image's serial port.
    Qemu(qemu_cmd::QemuArgs),
}

impl Command {
    /// Checks the command's options as its run would, without running it: `Ok` when it would
    /// start, else the error it would end with (for the fuzz test of the parsers).
    #[cfg(test)]
    fn plan(&self) -> Result<(), String> {
        match self {
            Command::Demo(a) => demo_cmd::plan(a).map(drop),
            Command::Torture(a) => torture_cmd::plan(a).map(drop),
            Command::Compare(a) => compare_cmd::plan(a).map(drop),
            Command::Latency(a) => latency_cmd::plan(a).map(drop),
            Command::Packets(a) => packets_cmd::plan(a).map(drop),
            Command::Trace(a) => trace_cmd::plan(a).map(drop),
            Command::Points(_) => Ok(()),
            Command::Fuzz(a) => fuzz_cmd::plan(a).map(drop),
            Command::Soak(a) => soak_cmd::plan(a).map(drop),
            Command::Qemu(a) => qemu_cmd::plan(a).map(drop),
        }
    }
}

/// clap's description of the command line, every option that takes a value taking negative
/// numbers too, so that `--duration -1` reaches the option's own check (which names it and
/// says what to use) instead of clap's "unexpected argument '-1'", and every number parsed by
/// [`values::numbers`], whose error says what to use.
fn command() -> clap::Command {
    Cli::command().mut_subcommands(numbered)
}

/// [`command`]'s change to one subcommand's options, and to its own subcommands' (`qemu demo`).
fn numbered(c: clap::Command) -> clap::Command {
    c.mut_args(|a| if a.get_action().takes_values() { values::numbers(a.allow_negative_numbers(true)) } else { a })
        .mut_subcommands(numbered)
}

/// Parses an argument list (the program's name first) with [`command`].
fn parse_from<I: IntoIterator<Item = T>, T: Into<std::ffi::OsString> + Clone>(args: I) -> Result<Cli, clap::Error> {
    Cli::from_arg_matches(&command().try_get_matches_from(args)?)
}

fn main() -> ExitCode {
    let cli = match parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) if e.kind() == clap::error::ErrorKind::ValueValidation => {
            // A value an option's owner refused (values.rs): one line, as every other error.
            let msg = e.to_string();
            let line = msg.lines().next().unwrap_or_default();
            eprintln!("atomkernel: {}", line.strip_prefix("error: ").unwrap_or(line));
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    if let Err(e) = input::end_cleanly_on_signals() {
        eprintln!("atomkernel: {e}");
        return ExitCode::from(2);
    }
    let outcome = match cli.command.unwrap_or(Command::Compare(compare_cmd::CompareArgs::defaults())) {
        Command::Demo(a) => demo_cmd::run(&a),
        Command::Torture(a) => torture_cmd::run(&a),
        Command::Compare(a) => compare_cmd::run(&a),
        Command::Latency(a) => latency_cmd::run(&a),
        Command::Packets(a) => packets_cmd::run(&a),
        Command::Trace(a) => trace_cmd::run(&a),
        Command::Points(a) => points_cmd::run(&a),
        Command::Fuzz(a) => fuzz_cmd::run(&a),
        Command::Soak(a) => soak_cmd::run(&a),
        Command::Qemu(a) => qemu_cmd::run(&a),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("atomkernel: {e}");
            ExitCode::from(2)
        }
    }
}
