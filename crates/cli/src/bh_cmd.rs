//! `atomkernel packets`: bottom halves under packet load (see `services::packet_load`): the RT
//! probe's wakeup latency and the packet throughput under `bh=classic` and `bh=threaded`.

use kernel::{BhMode, PreemptModel};
use services::packet::PacketConfig;
use services::packet_load::{compare_bh, PacketLoadConfig, PacketLoadResult};

#[derive(clap::Args)]
pub struct PacketsArgs {
    /// Bottom-half modes as a comma list (classic,threaded) or `all`.
    #[arg(long, default_value = "all")]
    bh: String,
    /// ksoftirqd's SCHED_FIFO priority under bh=threaded, 1..=99.
    #[arg(long, default_value_t = kernel::config::DEFAULT_BH_PRIO)]
    bh_prio: u8,
    /// The probe's SCHED_FIFO priority, 1..=89 (above --bh-prio to see RT before bottom
    /// halves, below it to see the opposite); 0 for no probe (throughput only).
    #[arg(long, default_value_t = 80)]
    probe_prio: u8,
    /// Preemption model of every run (threaded bottom halves need a preemptible kernel).
    #[arg(long, default_value = "full")]
    preempt: String,
    /// Length of each run in seconds (above 0, at most 600).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Rounds over all modes (median throughput, latency samples pooled), 1..=100.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Period of the RT probe in microseconds, 100..=1000000.
    #[arg(long, default_value_t = 1000)]
    interval_us: u64,
    /// Payload bytes per packet (a multiple of 8, up to 2048).
    #[arg(long, default_value_t = 1024)]
    payload: usize,
    /// Packets per NET_RX softirq run (NAPI weight), 1..=4096.
    #[arg(long, default_value_t = 64)]
    budget: usize,
    /// Print one JSON object per mode (one per line) instead of the table.
    #[arg(long)]
    json: bool,
}

/// Parses `--bh`: a comma list of modes or `all`.
fn modes(arg: &str) -> Result<Vec<BhMode>, String> {
    if arg.trim() == "all" {
        return Ok(BhMode::ALL.to_vec());
    }
    let mut v = Vec::new();
    for name in arg.split(',').map(str::trim) {
        let m: BhMode = name.parse().map_err(|e| format!("--{e}, or all"))?;
        if !v.contains(&m) {
            v.push(m);
        }
    }
    Ok(v)
}

pub fn run(a: &PacketsArgs) -> Result<(), String> {
    let preempt: PreemptModel = a.preempt.parse().map_err(|e| format!("--preempt: {e}"))?;
    let cfg = PacketLoadConfig {
        bh: BhMode::Classic,
        bh_prio: a.bh_prio,
        preempt,
        packet: PacketConfig { payload_bytes: a.payload, napi_budget: a.budget, ..PacketConfig::default() },
        seconds: a.seconds,
        probe_prio: (a.probe_prio != 0).then_some(a.probe_prio),
        interval_us: a.interval_us,
    };
    cfg.validate().map_err(|e| e.replace("bh_prio=", "--bh-prio ").replace("payload_bytes=", "--payload "))?;
    let modes = modes(&a.bh)?;
    eprintln!(
        "atomkernel packets: {} modes x {} rounds x {} s (about {:.0} s)",
        modes.len(),
        a.rounds,
        a.seconds,
        modes.len() as f64 * a.rounds as f64 * a.seconds
    );
    let results = compare_bh(&cfg, &modes, a.rounds)?;
    if a.json {
        for r in &results {
            println!("{}", serde_json::to_string(r).map_err(|e| e.to_string())?);
        }
    } else {
        print!("{}", table(&cfg, a.rounds, &results));
    }
    Ok(())
}

fn table(cfg: &PacketLoadConfig, rounds: usize, results: &[PacketLoadResult]) -> String {
    let probe = cfg.probe_prio.map_or("none".to_string(), |p| format!("SCHED_FIFO {p} every {} us", cfg.interval_us));
    let mut s = format!(
        "packets of {} bytes, NAPI budget {}; reader SCHED_NORMAL; probe {probe}; preempt={}, bh_prio={}; \
         {} s per run, {rounds} rounds\n",
        cfg.packet.payload_bytes, cfg.packet.napi_budget, cfg.preempt, cfg.bh_prio, cfg.seconds
    );
    s += &format!(
        "{:<9} {:>11} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>11} {:>11} {:>9}\n",
        "bh",
        "packets/s",
        "lat_min_us",
        "lat_p50_us",
        "lat_p99_us",
        "p99.9_us",
        "lat_max_us",
        "samples",
        "rx_irq_exit",
        "rx_ksoftirqd",
        "handoffs"
    );
    let us = |ns: u64| ns as f64 / 1e3;
    for r in results {
        let l = &r.latency_ns;
        s += &format!(
            "{:<9} {:>11.0} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>8} {:>11} {:>11} {:>9}\n",
            r.bh,
            r.packets_per_s,
            us(l.min),
            us(l.p50),
            us(l.p99),
            us(l.p999),
            us(l.max),
            l.count,
            r.rx_runs_irq_exit,
            r.rx_runs_ksoftirqd,
            r.handoffs
        );
    }
    if let [c, t] = results {
        if c.latency_ns.count > 0 && t.latency_ns.count > 0 {
            let ratio = |a: u64, b: u64| if b == 0 { f64::NAN } else { a as f64 / b as f64 };
            s += &format!(
                "{} / {}: throughput {:.2}x, latency p50 {:.2}x, p99 {:.2}x, max {:.2}x\n",
                t.bh,
                c.bh,
                t.packets_per_s / c.packets_per_s,
                ratio(t.latency_ns.p50, c.latency_ns.p50),
                ratio(t.latency_ns.p99, c.latency_ns.p99),
                ratio(t.latency_ns.max, c.latency_ns.max)
            );
        }
    }
    s
}
