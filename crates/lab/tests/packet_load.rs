//! The bottom halves under packet load (`lab::packet_load`): bad settings refused naming what
//! to change; a run reports both `bh=` modes, softirqs at `irq_exit` only under `classic`.

use kernel::BhMode;
use lab::packet_load::{compare_bh, run_packet_load, PacketLoadConfig};
use services::packet::PacketConfig;

#[test]
fn bad_packet_load_configs_are_refused_naming_what_to_change() {
    let e = |c: PacketLoadConfig| c.validate().unwrap_err();
    let d = PacketLoadConfig::default;
    assert!(e(PacketLoadConfig { bh_prio: 0, ..d() })
        .contains("bh_prio=0 is out of range: ksoftirqd's SCHED_FIFO priority must be 1..=99"));
    let p = |c: PacketConfig| e(PacketLoadConfig { packet: c, ..d() });
    assert!(p(PacketConfig { napi_budget: 0, ..Default::default() }).starts_with("napi_budget=0: use 1..=4096"));
    assert!(p(PacketConfig { payload_bytes: 12, ..Default::default() })
        .starts_with("payload_bytes=12: use a multiple of 8"));
    assert!(e(PacketLoadConfig { seconds: -1.0, ..d() }).starts_with("seconds=-1: "));
    assert!(e(PacketLoadConfig { probe_prio: Some(95), ..d() }).starts_with("probe_prio=95: use 1..=89"));
    assert!(e(PacketLoadConfig { probe_pages: 5000, ..d() }).starts_with("probe_pages=5000: "));
    assert!(e(PacketLoadConfig { interval_us: 5, ..d() }).starts_with("interval_us=5: "));
    // A run in which the probe could not wake twice measures nothing: refused, not zeros.
    let short = e(PacketLoadConfig { seconds: 0.0001, ..d() });
    assert!(
        short.starts_with("seconds=0.0001 is shorter than two probe periods (interval_us=1000): use at least 0.002 s"),
        "{short}"
    );
    PacketLoadConfig { seconds: 0.0001, probe_prio: None, ..d() }.validate().unwrap();
}

#[test]
fn packet_load_reports_both_modes() {
    let cfg = PacketLoadConfig { seconds: 0.3, ..PacketLoadConfig::default() };
    let one = run_packet_load(&cfg).unwrap();
    assert!(one.packets_per_s > 0.0 && one.latency_ns.count > 0, "{one:?}");
    let both = compare_bh(&cfg, &BhMode::ALL, 1).unwrap();
    assert_eq!(both.len(), 2);
    assert_eq!((both[0].bh.as_str(), both[1].bh.as_str()), ("classic", "threaded"));
    assert_eq!(both[1].rx_runs_irq_exit, 0, "threaded: no softirq at irq_exit");
    assert!(both[0].rx_runs_irq_exit > 0, "classic: softirqs at irq_exit");
}
