//! `atomkernel packets`: bottom halves under packet load (see `lab::packet_load`): the RT
//! probe's wakeup latency and the packet throughput under `bh=classic` and `bh=threaded`.

use crate::output::{out, outln};
use crate::values::{self, defaulted, List};
use kernel::{BhMode, PreemptModel};
use lab::packet_load::{compare_bh, PacketLoadConfig, PacketLoadResult};
use services::packet::PacketConfig;

#[derive(clap::Args)]
pub(crate) struct PacketsArgs {
    /// Bottom-half modes as a comma list (classic,threaded) or `all`.
    #[arg(long, default_value = "all", value_parser = values::list::<BhMode>())]
    bh: List<BhMode>,
    /// ksoftirqd's SCHED_FIFO priority under bh=threaded, 1..=99 (default 50).
    #[arg(long)]
    bh_prio: Option<u8>,
    /// The probe's SCHED_FIFO priority, 1..=89 (above --bh-prio to see RT before bottom
    /// halves, below it to see the opposite); 0 for no probe (throughput only).
    #[arg(long, default_value_t = PacketLoadConfig::default().probe_prio.unwrap_or(0))]
    probe_prio: u8,
    // The options of the measurement (not of `--order`) are `Option`s, so that one given with
    // `--order`, which would change nothing, is refused; each help says its default.
    #[arg(long, value_parser = values::one::<PreemptModel>(),
        help = defaulted("Preemption model of every run (threaded bottom halves need a preemptible kernel)", PacketLoadConfig::default().preempt))]
    preempt: Option<PreemptModel>,
    #[arg(long, help = defaulted("Length of each run in seconds (above 0, at most 600; at least two probe periods with a probe)", PacketLoadConfig::default().seconds))]
    seconds: Option<f64>,
    #[arg(long, help = defaulted("Rounds over all modes (median throughput, latency samples pooled), 1..=100", ROUNDS))]
    rounds: Option<usize>,
    #[arg(long, help = defaulted("Period of the RT probe in microseconds, 100..=1000000", PacketLoadConfig::default().interval_us))]
    interval_us: Option<u64>,
    #[arg(long, help = defaulted("4 KiB page checksums the probe does after each wakeup (its response time is measured to the end of them), 0..=4096", PROBE_PAGES))]
    probe_pages: Option<usize>,
    #[arg(long, help = defaulted("Payload bytes per packet (a multiple of 8, up to 2048)", PacketLoadConfig::default().packet.payload_bytes))]
    payload: Option<usize>,
    #[arg(long, help = defaulted("Packets per NET_RX softirq run (NAPI weight), 1..=4096", PacketLoadConfig::default().packet.napi_budget))]
    budget: Option<usize>,
    /// Print one JSON object per mode (one per line) instead of the table (with --order:
    /// `bh`, `bh_prio` and `order`, the names in the order they ran).
    #[arg(long)]
    json: bool,
    /// Only show the order: one interrupt wakes an RT task above --bh-prio (--probe-prio) and one
    /// below it (--low-prio) and raises NET_RX; who runs first under each mode?
    #[arg(long)]
    order: bool,
    #[arg(long, help = defaulted("The lower RT task's priority for --order (only with --order), 1..=99", LOW_PRIO))]
    low_prio: Option<u8>,
    #[command(flatten)]
    cpus: crate::cpus_arg::CpusArg,
}

/// The fields of [`PacketLoadConfig`] (of its device's `PacketConfig`, of the kernel's
/// `Config` it boots), of the ordering run's priorities and the rounds, and the option that
/// sets each.
const FLAGS: [(&str, &str); 11] = [
    ("cpus", "--cpus"),
    ("bh_prio", "--bh-prio"),
    ("rounds", "--rounds"),
    ("payload_bytes", "--payload"),
    ("napi_budget", "--budget"),
    ("seconds", "--seconds"),
    ("probe_prio", "--probe-prio"),
    ("probe_pages", "--probe-pages"),
    ("interval_us", "--interval-us"),
    ("high_prio", "--probe-prio"),
    ("low_prio", "--low-prio"),
];

/// `--rounds`, `--probe-pages` and `--low-prio` when not given.
const ROUNDS: usize = 3;
const PROBE_PAGES: usize = 64;
const LOW_PRIO: u8 = 40;

/// What `packets` runs, checked before anything starts.
pub(crate) struct Plan {
    cfg: PacketLoadConfig,
    modes: Vec<BhMode>,
    rounds: usize,
    /// `--order`: the lower RT task's priority.
    low_prio: u8,
    /// Stderr notes: what the options make of the run that the user may not expect.
    notes: Vec<String>,
}

impl PacketsArgs {
    /// The measurement's options given on the command line: `--order` reads none of them.
    fn measure_options(&self) -> Vec<String> {
        let given = |flag: &str, v: Option<String>| v.map(|v| format!("{flag} {v}"));
        [
            given("--preempt", self.preempt.map(|m| m.name().to_string())),
            given("--seconds", self.seconds.map(|v| v.to_string())),
            given("--rounds", self.rounds.map(|v| v.to_string())),
            given("--interval-us", self.interval_us.map(|v| v.to_string())),
            given("--probe-pages", self.probe_pages.map(|v| v.to_string())),
            given("--payload", self.payload.map(|v| v.to_string())),
            given("--budget", self.budget.map(|v| v.to_string())),
            given("--cpus", self.cpus.given().map(|v| v.to_string())),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

pub(crate) fn plan(a: &PacketsArgs) -> Result<Plan, String> {
    let d = PacketLoadConfig::default();
    let preempt = a.preempt.unwrap_or(d.preempt);
    let bh_prio = a.bh_prio.unwrap_or(kernel::config::DEFAULT_BH_PRIO);
    let packet = PacketConfig {
        payload_bytes: a.payload.unwrap_or(d.packet.payload_bytes),
        napi_budget: a.budget.unwrap_or(d.packet.napi_budget),
        ..d.packet
    };
    let cfg = PacketLoadConfig {
        bh: BhMode::Classic,
        bh_prio,
        preempt,
        packet,
        seconds: a.seconds.unwrap_or(d.seconds),
        probe_prio: (a.probe_prio != 0).then_some(a.probe_prio),
        interval_us: a.interval_us.unwrap_or(d.interval_us),
        probe_pages: a.probe_pages.unwrap_or(PROBE_PAGES),
        cpus: a.cpus.get(),
    };
    cfg.validate().map_err(|e| values::flags(e, &FLAGS))?;
    let modes = a.bh.0.clone();
    // The list of modes is this command's own (`compare_bh` runs what it is given).
    if modes.is_empty() {
        let names: Vec<&str> = BhMode::ALL.iter().map(|m| m.name()).collect();
        return Err(format!("--bh: name at least one option ({}), or all", names.join(", ")));
    }
    crate::input::bh_prio_applies(a.bh_prio, &modes)?;
    let rounds = a.rounds.unwrap_or(ROUNDS);
    let low_prio = a.low_prio.unwrap_or(LOW_PRIO);
    if a.order {
        if a.probe_prio == 0 {
            return Err("--order needs an RT task: give --probe-prio 1..=89".into());
        }
        if let Some(o) = a.measure_options().first() {
            return Err(format!(
                "{o}: --order runs one interrupt in a fixed kernel (preempt=full, one CPU) and measures nothing, so it reads only --bh, --bh-prio, --probe-prio, --low-prio and --json; drop {}, or drop --order to measure",
                o.split(' ').next().unwrap_or(o)
            ));
        }
        lab::packet_load::check_order(a.probe_prio, low_prio).map_err(|e| values::flags(e, &FLAGS))?;
        return Ok(Plan { cfg, modes, rounds, low_prio, notes: Vec::new() });
    }
    if let Some(p) = a.low_prio {
        return Err(format!(
            "--low-prio {p}: sets the lower RT task of --order, and this run measures (no --order); add --order, or drop --low-prio"
        ));
    }
    lab::measure::validate_rounds(rounds).map_err(|e| values::flags(e, &FLAGS))?;
    let mut notes = Vec::new();
    if preempt == PreemptModel::None && modes.contains(&BhMode::Threaded) {
        notes.push(format!(
            "bh=threaded under --preempt none: ksoftirqd (SCHED_FIFO {bh_prio}) and the probe cannot preempt kernel code there, they wait for the running system call to return or sleep; threaded bottom halves are meant for a preemptible kernel (Linux's PREEMPT_RT implies preempt=full)"
        ));
    }
    Ok(Plan { cfg, modes, rounds, low_prio, notes })
}

pub(crate) fn run(a: &PacketsArgs) -> Result<(), String> {
    let Plan { cfg, modes, rounds, low_prio, notes } = plan(a)?;
    if a.order {
        for &m in &modes {
            let order = lab::packet_load::bh_order(m, cfg.bh_prio, a.probe_prio, low_prio)?;
            if a.json {
                let v = serde_json::json!({"bh": m.name(), "bh_prio": cfg.bh_prio, "order": order});
                outln!("{v}");
            } else {
                outln!("bh={:<8} bh_prio={}: {}", m.name(), cfg.bh_prio, order.join(", then "));
            }
        }
        return Ok(());
    }
    for n in notes {
        eprintln!("atomkernel packets: note: {n}");
    }
    eprintln!(
        "atomkernel packets: {} modes x {rounds} rounds x {} s (about {:.0} s)",
        modes.len(),
        cfg.seconds,
        modes.len() as f64 * rounds as f64 * cfg.seconds
    );
    let results = compare_bh(&cfg, &modes, rounds).map_err(|e| values::flags(e, &FLAGS))?;
    if a.json {
        for r in &results {
            outln!("{}", serde_json::to_string(r).map_err(|e| e.to_string())?);
        }
    } else {
        out!("{}", table(&cfg, rounds, &results));
    }
    Ok(())
}

fn table(cfg: &PacketLoadConfig, rounds: usize, results: &[PacketLoadResult]) -> String {
    let probe = cfg.probe_prio.map_or("none".to_string(), |p| format!("SCHED_FIFO {p} every {} us", cfg.interval_us));
    let mut s = format!(
        "packets of {} bytes, NAPI budget {}; reader SCHED_NORMAL; probe {probe}, then {} page checksums; \
         preempt={}, bh_prio={}; {} s per run, {rounds} rounds\n",
        cfg.packet.payload_bytes, cfg.packet.napi_budget, cfg.probe_pages, cfg.preempt, cfg.bh_prio, cfg.seconds
    );
    s += &format!(
        "{:<9} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>8} {:>9} {:>9} {:>8} {:>9}\n",
        "bh",
        "packets/s",
        "wake_min",
        "wake_p50",
        "wake_p99",
        "wake_max",
        "resp_p50",
        "resp_p99",
        "resp_max",
        "samples",
        "rx_irqexit",
        "rx_ksirqd",
        "handoffs",
        "pkts_on_rt"
    );
    let us = |ns: u64| ns as f64 / 1e3;
    for r in results {
        let (l, p) = (&r.latency_ns, &r.response_ns);
        s += &format!(
            "{:<9} {:>10.0} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>9.1} {:>9.1} {:>9.1} {:>8} {:>9} {:>9} {:>8} {:>9}\n",
            r.bh,
            r.packets_per_s,
            us(l.min),
            us(l.p50),
            us(l.p99),
            us(l.max),
            us(p.p50),
            us(p.p99),
            us(p.max),
            l.count,
            r.rx_runs_irq_exit,
            r.rx_runs_ksoftirqd,
            r.handoffs,
            r.stats.packets_on_watched
        );
    }
    s += "wake_*: probe wakeup lateness, resp_*: end of its work past the deadline, in microseconds; \
          rx_*: NET_RX runs at irq_exit / in ksoftirqd; pkts_on_rt: packets the softirq processed on the \
          probe's time (at the irq_exit of interrupts that came while it ran)\n";
    if let [c, t] = results {
        if c.latency_ns.count > 0 && t.latency_ns.count > 0 {
            let ratio = |a: u64, b: u64| if b == 0 { f64::NAN } else { a as f64 / b as f64 };
            s += &format!(
                "{} / {}: throughput {:.2}x, wakeup p50 {:.2}x, p99 {:.2}x, response p50 {:.2}x, p99 {:.2}x\n",
                t.bh,
                c.bh,
                t.packets_per_s / c.packets_per_s,
                ratio(t.latency_ns.p50, c.latency_ns.p50),
                ratio(t.latency_ns.p99, c.latency_ns.p99),
                ratio(t.response_ns.p50, c.response_ns.p50),
                ratio(t.response_ns.p99, c.response_ns.p99)
            );
        }
    }
    s
}
