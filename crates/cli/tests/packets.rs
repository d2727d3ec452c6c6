//! `atomkernel packets`: the bottom-half order, a short measurement as JSON, bad input.

mod common;
use common::atomkernel;

#[test]
fn order_shows_rt_before_bottom_halves_only_when_threaded() {
    let (code, out, err) = atomkernel(&["packets", "--order"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("bh=classic  bh_prio=50: NET_RX softirq (at irq_exit), then rt80, then rt40"), "{out}");
    assert!(out.contains("bh=threaded bh_prio=50: rt80, then NET_RX softirq (in ksoftirqd), then rt40"), "{out}");
}

#[test]
fn packets_json_has_one_object_per_mode() {
    let (code, out, err) =
        atomkernel(&["packets", "--seconds", "0.2", "--rounds", "1", "--probe-pages", "4", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(v.len(), 2, "{out}");
    assert_eq!((v[0]["bh"].as_str(), v[1]["bh"].as_str()), (Some("classic"), Some("threaded")));
    for m in &v {
        assert!(m["packets_per_s"].as_f64().unwrap() > 0.0, "{m}");
        assert_eq!(m["stats"]["sent"], m["stats"]["received"], "{m}");
        assert!(m["latency_ns"]["count"].as_u64().unwrap() > 0, "{m}");
    }
    assert_eq!(v[1]["rx_runs_irq_exit"], 0, "threaded serves nothing at irq_exit");
    assert_eq!(v[1]["stats"]["packets_on_watched"], 0, "threaded does no receive work on the probe's time");
}

#[test]
fn bad_packets_input_names_the_option() {
    let (code, _, err) = atomkernel(&["packets", "--bh", "soon"]);
    assert_eq!(code, 2);
    assert!(err.contains("bh=soon: unknown bottom-half mode; choose one of classic, threaded, or all"), "{err}");
    let (code, _, err) = atomkernel(&["packets", "--bh-prio", "100"]);
    assert_eq!(code, 2);
    assert!(err.contains("--bh-prio 100 is out of range: ksoftirqd's SCHED_FIFO priority must be 1..=99"), "{err}");
    let (code, _, err) = atomkernel(&["packets", "--payload", "7"]);
    assert_eq!(code, 2);
    assert!(err.contains("--payload 7: use a multiple of 8"), "{err}");
    let (code, _, err) = atomkernel(&["packets", "--order", "--probe-prio", "0"]);
    assert_eq!(code, 2);
    assert!(err.contains("--order needs an RT task"), "{err}");
}
