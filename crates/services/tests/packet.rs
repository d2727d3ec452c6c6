//! The packet device: no packet lost or delivered twice under an interrupt storm, under both
//! bottom-half modes; bad configurations refused with the field named.

use kernel::softirq::{softirq_stats, NET_RX_SOFTIRQ};
use kernel::{spawn, BhMode, Config, TaskBuilder};
use services::packet::{inet_csum, PacketConfig, PacketDevice};
use std::sync::Arc;

const PACKETS: u64 = 50_000;

fn storm(bh: BhMode) {
    let config = Config { bh, preempt: kernel::PreemptModel::Full, ..Config::default() };
    let r = kernel::run(config, move || {
        // Small rings and budget: the wire stalls, the socket queue fills, NET_RX re-raises
        // itself past the restart budget.
        let cfg = PacketConfig {
            payload_bytes: 256,
            ring_slots: 64,
            socket_slots: 128,
            napi_budget: 16,
            packets: Some(PACKETS),
            ..PacketConfig::default()
        };
        let dev = Arc::new(PacketDevice::open(cfg).unwrap());
        let d = dev.clone();
        let reader = spawn(TaskBuilder::new("reader"), move || {
            let mut expect = 0;
            while let Some(p) = d.recv() {
                assert_eq!(p.seq, expect, "packet out of order");
                expect += 1;
            }
            expect as i64
        });
        dev.start();
        let got = reader.join().unwrap();
        let s = dev.stats();
        assert_eq!(got as u64, PACKETS);
        assert_eq!((s.sent, s.delivered, s.received), (PACKETS, PACKETS, PACKETS), "{s:?}");
        assert_eq!((s.out_of_order, s.csum_errors), (0, 0), "{s:?}");
        assert!(s.irqs > 0 && s.softirq_runs >= PACKETS / 16, "{s:?}");
        let st = softirq_stats();
        assert_eq!(st.runs(NET_RX_SOFTIRQ), s.softirq_runs);
        if bh == BhMode::Threaded {
            assert_eq!(st.runs_irq_exit[NET_RX_SOFTIRQ], 0, "threaded: all in ksoftirqd");
        }
        0
    })
    .unwrap();
    assert_eq!(r.init, Ok(0));
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
}

#[test]
fn storm_loses_and_duplicates_no_packet_classic() {
    storm(BhMode::Classic);
}

#[test]
fn storm_loses_and_duplicates_no_packet_threaded() {
    storm(BhMode::Threaded);
}

#[test]
fn internet_checksum_matches_rfc1071() {
    // RFC 1071's example bytes 00 01 f2 03 f4 f5 f6 f7 (16-bit sum 0xddf2), as one
    // little-endian word: the folded sum of 16-bit little-endian halves.
    let w = u64::from_le_bytes([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
    let sum = 0x0100u32 + 0x03f2 + 0xf5f4 + 0xf7f6;
    let folded = (sum & 0xffff) + (sum >> 16);
    assert_eq!(inet_csum(&[w]), !(folded as u16));
    assert_eq!(inet_csum(&[]), 0xffff);
}

#[test]
fn bad_packet_configs_are_refused_with_the_field_named() {
    let bad = |c: PacketConfig| c.validate().unwrap_err();
    assert!(bad(PacketConfig { payload_bytes: 12, ..Default::default() }).contains("payload_bytes=12"));
    assert!(bad(PacketConfig { ring_slots: 100, ..Default::default() }).contains("ring_slots=100: use a power of two"));
    assert!(bad(PacketConfig { napi_budget: 0, ..Default::default() }).contains("napi_budget=0"));
}
