//! The latency lab as a user meets it: `atomkernel latency` and `atomkernel compare` (option
//! errors with exit code 2, the documented JSON rows, every model present), and the HTML report
//! rendered in headless Chromium. Behaviour only, never timing thresholds.

use kernel::PreemptModel;
use lab::peers::Peer;
use std::collections::BTreeSet;
mod common;
use common::atomkernel;

/// The documented keys of a `compare --json` row (docs/LAB.md), in any order.
const ROW_KEYS: [&str; 35] = [
    "model",
    "rt_runs_at",
    "bh",
    "workload",
    "unit",
    "size",
    "cpus",
    "latency_ns",
    "samples",
    "latency_undisturbed_ns",
    "host_disturbed",
    "host_stalls",
    "latency_per_cpu_ns",
    "cross_cpu",
    "throughput_ops_s",
    "overhead_pct",
    "loaded_throughput_ops_s",
    "rounds_throughput_ops_s",
    "rounds_latency_ns",
    "breakdown",
    "throughput_1cpu_ops_s",
    "scaling",
    "workers",
    "probes",
    "policy",
    "histogram",
    "cdf_ns",
    "seconds",
    "rounds",
    "hz",
    "sites_armed_per_event",
    "handler_ns_per_event",
    "handler_parts_ns_per_event",
    "collateral_per_event",
    "collateral_ns_per_event",
];

fn rows(out: &str) -> Vec<serde_json::Value> {
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn impossible_settings_are_refused_naming_the_option() {
    let refused = |args: &[&str], needle: &str| {
        let (code, out, err) = atomkernel(args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.starts_with("atomkernel: ") || err.contains("error:"), "{err}");
        assert!(err.contains(needle), "{args:?}: expected '{needle}' in: {err}");
    };
    refused(&["latency", "--interval-us", "50"], "--interval-us 50: below the timer resolution");
    refused(&["compare", "--interval-us", "99"], "--interval-us 99: below the timer resolution");
    refused(&["latency", "--preempt", "fastest"], "unknown preemption model 'fastest'");
    refused(&["compare", "--preempt", "none,quick"], "unknown preemption model 'quick'");
    refused(&["compare", "--workload", "compile"], "unknown workload 'compile': choose one of loader, copy");
    refused(&["latency", "--workload", "compile"], "unknown workload 'compile'");
    refused(&["latency", "--duration", "0"], "--duration 0: use a duration above 0");
    refused(&["compare", "--duration", "0"], "--duration 0: use a duration above 0");
    refused(&["latency", "--loops", "0"], "--loops 0");
    refused(&["latency", "--loops", "5", "--duration", "1"], "give one of them");
    refused(&["compare", "--size", "copy=0"], "copy takes 1..=4096");
    refused(&["compare", "--peers", "erlang"], "unknown peer 'erlang': choose host-fifo, tokio, go, all or none");
    if !lab::go_peer::BUILT {
        refused(&["compare", "--peers", "go"], "--peers go: the Go runtime peer (peer:go) is not built");
    }
    refused(&["compare", "--prio", "99"], "--prio 99");
    refused(&["compare", "--rounds", "0"], "--rounds 0: use 1..=100");
    refused(&["compare", "--cpus", "0"], "--cpus");
    refused(&["compare", "--cpus", "65"], "--cpus");
    refused(&["compare", "--cpus", "18446744073709551615"], "--cpus 18446744073709551615 is out of range: use 1..=64");
    refused(&["compare", "--cpu-nice", "-21"], "--cpu-nice -21: use a nice value -20..=19, or keep");
    refused(&["compare", "--duration", "0.0001"], "shorter than two probe periods");
    refused(
        &["compare", "--bh", "softirq"],
        "--bh=softirq: unknown bottom-half mode; choose one of classic, threaded, or all",
    );
    refused(&["compare", "--bh", ","], "--bh is empty: name at least one option (classic, threaded), or all");
    refused(
        &["compare", "--bh-prio", "0"],
        "--bh-prio 0 is out of range: ksoftirqd's SCHED_FIFO priority must be 1..=99",
    );
    refused(&["compare", "--preempt", "none,full", "--handler-parts"], "--handler-parts: sets how the patch models");
    refused(
        &["compare", "--preempt", "", "--workload", "packet"],
        "--preempt names no model, but the packet workload (in --workload) runs only under atomkernel's models",
    );
}

#[test]
fn latency_takes_its_count_and_the_histogram_adds_up() {
    let args = ["latency", "--preempt", "voluntary", "--workload", "loader", "--threads", "2", "--loops", "60"];
    let (code, out, err) = atomkernel(&[&args[..], &["--json"]].concat());
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((v["model"].as_str(), v["workload"].as_str()), (Some("voluntary"), Some("loader")));
    let probes = v["probes"].as_array().unwrap();
    assert_eq!(probes.iter().map(|p| p["prio"].as_u64().unwrap()).collect::<Vec<_>>(), [80, 79]);
    for p in probes {
        assert_eq!(p["latency_ns"]["count"], 60, "{p}");
        let sum: u64 = p["histogram"].as_array().unwrap().iter().map(|b| b["count"].as_u64().unwrap()).sum();
        assert_eq!(sum, 60, "the histogram holds every sample: {p}");
        let undisturbed = p["latency_undisturbed_ns"]["count"].as_u64().unwrap();
        assert_eq!(undisturbed + p["host_disturbed"].as_u64().unwrap(), 60, "{p}");
    }
    let (code, out, err) = atomkernel(&args);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("T:0 P:80 I:1000us C:60") && out.contains("T:1 P:79 I:1500us C:60"), "{out}");
}

#[test]
fn compare_json_rows_cover_every_model_and_peer_with_the_documented_fields() {
    let args = [
        "compare",
        "--quick",
        "--cpus",
        "1",
        "--json",
        "--handler-parts",
        "--workload",
        "checksum,hog",
        "--size",
        "checksum=8,hog=8",
    ];
    let (code, out, err) = atomkernel(&args);
    assert_eq!(code, 0, "{err}");
    let rows = rows(&out);
    let mut expected = vec!["floor".to_string()];
    expected.extend(PreemptModel::ALL.iter().map(|m| m.name().to_string()));
    expected.extend(Peer::ALL.iter().map(|p| format!("peer:{}", p.name())));
    for w in ["checksum", "hog"] {
        let names: Vec<&str> =
            rows.iter().filter(|r| r["workload"] == w).map(|r| r["model"].as_str().unwrap()).collect();
        assert_eq!(names, expected, "{w}");
    }
    let documented: BTreeSet<&str> = ROW_KEYS.into_iter().collect();
    for r in &rows {
        let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, documented, "the row schema is stable: {r}");
        for k in ["min", "p50", "p99", "p999", "max"] {
            assert!(r["latency_ns"][k].as_u64().is_some(), "{k}: {r}");
        }
        assert_eq!(r["rounds_latency_ns"].as_array().unwrap().len(), 1, "one round: {r}");
        let floor = r["model"] == "floor";
        assert_eq!(r["throughput_ops_s"].as_f64().is_some_and(|t| t > 0.0), !floor, "{r}");
        assert_eq!(r["overhead_pct"].as_f64().is_some(), !floor, "{r}");
        let sum: u64 = r["histogram"].as_array().unwrap().iter().map(|b| b["count"].as_u64().unwrap()).sum();
        assert_eq!(sum, r["samples"].as_u64().unwrap(), "{r}");
        let undisturbed = r["latency_undisturbed_ns"]["count"].as_u64().unwrap();
        assert_eq!(undisturbed + r["host_disturbed"].as_u64().unwrap(), sum, "{r}");
        assert!(r["policy"].is_string(), "{r}");
        let (h, parts) = (&r["handler_ns_per_event"], &r["handler_parts_ns_per_event"]);
        assert_eq!(h.is_null(), parts.is_null(), "the arming and its parts go together: {r}");
        if let Some(total) = h.as_f64() {
            let each: Vec<f64> =
                ["lookup", "unwind", "poke", "redirect"].iter().map(|p| parts[p].as_f64().unwrap()).collect();
            assert!(each.iter().all(|&ns| ns >= 0.0), "{parts}");
            assert!(each.iter().sum::<f64>() <= total + 1e-6, "the parts fit in the whole: {parts} of {total}");
        }
        let st = &r["host_stalls"];
        if !st.is_null() {
            // The watcher ran (SCHED_FIFO allowed): one round, stalled or not.
            let (n, stalled) = (st["count"].as_u64().unwrap(), st["rounds_stalled"].as_u64().unwrap());
            assert_eq!(stalled, (n > 0) as u64, "{st}");
            assert_eq!(st["longest_ns"].as_u64().unwrap() >= 1_000_000, n > 0, "a stall is 1 ms or more: {st}");
            let unstalled = st["latency_unstalled_ns"]["count"].as_u64().unwrap();
            assert_eq!(unstalled, if n > 0 { 0 } else { sum }, "the samples of the rounds without one: {st}");
        }
        let reference = r["model"].as_str().unwrap().starts_with("peer:") || floor;
        let b = &r["breakdown"];
        assert_eq!(b.is_null(), reference, "a model's wakeups are split, a reference's are not: {r}");
        if !reference {
            let explained = b["explained"].as_u64().unwrap();
            assert!(explained > 0 && explained <= r["samples"].as_u64().unwrap(), "{r}");
            let parts = ["delivery", "handler", "exit", "wait", "serve", "switch"];
            let worst: u64 = parts.iter().map(|p| b["worst_ns"][p].as_u64().unwrap()).sum();
            assert_eq!(worst, b["worst_total_ns"].as_u64().unwrap(), "the parts add up: {b}");
            assert!(parts.iter().all(|p| b["median_ns"][p].is_u64()), "{b}");
            assert!(b["worst_held_at"].as_str().is_some_and(|s| !s.is_empty()), "{b}");
        }
        assert_eq!(r["bh"].as_str(), if reference { None } else { Some("classic") }, "one option by default: {r}");
        assert_eq!(r["cpus"], 1, "{r}");
        assert!(r["scaling"].is_null() && r["throughput_1cpu_ops_s"].is_null() && r["cross_cpu"].is_null(), "{r}");
        let cdf = r["cdf_ns"].as_array().unwrap();
        assert_eq!(cdf.first().unwrap()[1], r["latency_ns"]["min"], "the CDF starts at the min: {r}");
        assert_eq!(cdf.last().unwrap()[1], r["latency_ns"]["max"], "and ends at the max: {r}");
        assert!(cdf.windows(2).all(|w| w[0][1].as_u64() <= w[1][1].as_u64()), "{r}");
    }
    let none = rows.iter().find(|r| r["model"] == "none").unwrap();
    assert_eq!(none["overhead_pct"].as_f64(), Some(0.0));
}

/// `compare --cpus 2`: the rows have the per-CPU fields, every CPU's probes took samples and
/// stayed on their CPU, a worker bound to each CPU ran there, the cross-CPU probe's interrupt
/// and task were where they were put, the table has the SMP columns.
#[test]
fn compare_on_two_cpus_places_a_worker_and_the_probes_on_every_cpu() {
    let args = ["compare", "--quick", "--cpus", "2", "--peers", "none", "--preempt", "none,full,patch-call"];
    let (code, out, err) = atomkernel(&[&args[..], &["--workload", "copy", "--size", "copy=8", "--json"]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(err.starts_with("atomkernel compare: cpus=2 (--cpus): 4 cells"), "the floor and 3 models: {err}");
    for r in rows(&out) {
        assert_eq!(r["cpus"], 2, "{r}");
        let per = r["latency_per_cpu_ns"].as_array().unwrap();
        assert_eq!(per.len(), 2, "{r}");
        let probes = r["probes"].as_array().unwrap();
        for (c, l) in per.iter().enumerate() {
            let on: Vec<&serde_json::Value> = probes.iter().filter(|p| p["cpu"] == c).collect();
            assert_eq!(on.len(), 1, "one probe on CPU {c}: {r}");
            assert_eq!(on[0]["ran_on"], serde_json::json!([c]), "it stayed there: {r}");
            assert!(l["count"].as_u64().unwrap() > 0 && l["count"] == on[0]["latency_ns"]["count"], "{r}");
        }
        let mut workers: Vec<String> = r["workers"].as_array().unwrap().iter().map(|w| w.to_string()).collect();
        workers.sort();
        assert_eq!(workers, [r#"{"cpu":0,"ran_on":[0]}"#, r#"{"cpu":1,"ran_on":[1]}"#], "{r}");
        let x = &r["cross_cpu"];
        assert_eq!(
            (&x["irq"]["ran_on"], &x["rt"]["ran_on"]),
            (&serde_json::json!([0]), &serde_json::json!([1])),
            "{r}"
        );
        assert!(x["latency_ns"]["count"].as_u64().unwrap() > 0, "{r}");
        if r["model"] != "floor" {
            assert!(r["throughput_1cpu_ops_s"].as_f64().unwrap() > 0.0 && r["scaling"].as_f64().is_some(), "{r}");
        }
    }
    let args =
        ["compare", "--quick", "--cpus", "2", "--peers", "none", "--preempt", "none", "--workload", "hog", "--wide"];
    let (code, out, err) = atomkernel(&[&args[..], &["--size", "hog=8"]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("cpus=2: a worker bound to each CPU") && out.contains(" x_p99_us ") && out.contains("scaling"),
        "{out}"
    );
}

#[test]
fn the_packet_workload_runs_every_model_under_both_bh_options_and_the_peers_skip_it() {
    let args = [
        "compare",
        "--quick",
        "--cpus",
        "1",
        "--json",
        "--workload",
        "packet",
        "--size",
        "packet=16",
        "--bh-prio",
        "40",
    ];
    let (code, out, err) = atomkernel(&args);
    assert_eq!(code, 0, "{err}");
    let rows = rows(&out);
    let models = PreemptModel::ALL.iter().flat_map(|m| ["classic", "threaded"].map(|bh| (m.name(), bh)));
    let expected: Vec<(String, String)> =
        std::iter::once(("floor", "null")).chain(models).map(|(m, b)| (m.to_string(), b.to_string())).collect();
    let got: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r["model"].as_str().unwrap().to_string(), r["bh"].as_str().unwrap_or("null").to_string()))
        .collect();
    assert_eq!(got, expected, "the floor, every built model x both options by default, no peer row");
    for r in rows.iter().filter(|r| r["model"] != "floor") {
        assert_eq!(
            (r["workload"].as_str(), r["unit"].as_str(), r["size"].as_u64()),
            (Some("packet"), Some("packets"), Some(16))
        );
        assert!(r["throughput_ops_s"].as_f64().unwrap() > 0.0, "packets were received: {r}");
        assert!(r["samples"].as_u64().unwrap() > 0, "{r}");
    }
    let peers: Vec<String> = Peer::ALL.iter().map(|p| format!("peer:{}", p.name())).collect();
    let note = format!("note: packet: {} skipped: the workload runs through atomkernel's softirqs", peers.join(", "));
    assert!(err.contains(&note), "{err}");
}

#[test]
fn the_table_shows_the_bh_option_when_there_are_several() {
    let args = ["compare", "--quick", "--peers", "none", "--preempt", "none,full", "--bh", "all", "--workload", "copy"];
    let (code, out, err) = atomkernel(&[&args[..], &["--size", "copy=8", "--cpus", "1"]].concat());
    assert_eq!(code, 0, "{err}");
    for label in ["none/classic", "none/threaded", "full/classic", "full/threaded"] {
        assert!(out.lines().any(|l| l.starts_with(&format!("{label:<16} "))), "{label}: {out}");
    }
}

#[test]
fn the_json_schema_is_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/LAB.md")).unwrap();
    for k in ROW_KEYS {
        assert!(doc.contains(&format!("`{k}`")), "docs/LAB.md documents `{k}`");
    }
}

#[test]
fn compare_table_has_a_row_per_model_and_the_answer() {
    let (code, out, err) =
        atomkernel(&["compare", "--quick", "--cpus", "1", "--peers", "none", "--workload", "copy", "--size", "copy=8"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("smoke test: one round has no spread"), "--quick says what it is: {out}");
    assert!(lines[1].starts_with("copy: p99 no verdict (one round) (floor "), "the answer first: {out}");
    let header = lines.iter().position(|l| l.starts_with("copy ") && l.contains("  RT runs at  ")).expect(&out);
    let first: Vec<&str> = lines[header + 1].split_whitespace().collect();
    assert_eq!(first[..3], ["floor", "host", "preempts"], "the floor first: {out}");
    let columns = ["p50", "us", "p99", "us", "cost", "%", "host", "stalls"];
    assert!(lines[header].split_whitespace().skip(4).eq(columns), "the columns: {out}");
    for m in PreemptModel::ALL {
        assert!(lines.iter().any(|l| l.starts_with(&format!("{}  ", m.name()))), "{m}: {out}");
    }
    assert!(lines.iter().all(|l| l.chars().count() <= 100), "every line fits 100 columns: {out}");
}

#[test]
fn models_is_the_same_command() {
    let args = [
        "models",
        "--seconds",
        "0.05",
        "--rounds",
        "1",
        "--peers",
        "none",
        "--workload",
        "hog",
        "--json",
        "--cpus",
        "1",
    ];
    let (code, out, err) = atomkernel(&args);
    assert_eq!(code, 0, "{err}");
    let names: Vec<String> = rows(&out).iter().map(|r| r["model"].as_str().unwrap().to_string()).collect();
    let expected: Vec<String> =
        std::iter::once("floor".to_string()).chain(PreemptModel::ALL.map(|m| m.name().to_string())).collect();
    assert_eq!(names, expected);
}

#[test]
fn no_arguments_starts_the_comparison() {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_atomkernel"))
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut first).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.starts_with("atomkernel compare: cpus="), "{first}");
    let host = std::thread::available_parallelism().map_or(1, |n| n.get()).min(64);
    let chose = if host >= 2 {
        format!("cpus={host} (the host's {host} cores; --cpus 1 for one CPU)")
    } else {
        "cpus=1 (the host has one core)".into()
    };
    assert!(first.contains(&chose), "says what it chose and why: {first}");
    for m in PreemptModel::ALL {
        assert!(first.contains(m.name()), "{m}: {first}");
    }
    assert!(first.contains("peer:host-fifo") && first.contains("loader"), "{first}");
}

/// A browser to render the report with, if this machine has one.
fn browser() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| std::process::Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
}

/// The report leads with the answer: the verdict, then per workload the compact table (the
/// floor first), the trade-off chart and the breakdown bars; the timelines; the distributions,
/// the per-CPU figures and the full table folded. In Chromium: every chart laid out, every
/// CDF curve, trade-off point and breakdown segment drawn, no two trade-off labels (or a label
/// and a point) overlapping, no label outside its chart.
#[test]
fn the_report_renders_in_headless_chromium_with_its_charts() {
    let dir = std::env::temp_dir().join(format!("atomkernel-report-{}", std::process::id()));
    let d = dir.to_str().unwrap();
    let args = ["compare", "--quick", "--cpus", "2", "--workload", "hog,copy", "--size", "hog=8,copy=8", "--report", d];
    let (code, _, err) = atomkernel(&args);
    assert_eq!(code, 0, "{err}");
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    let json: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    let (models, peers) = (PreemptModel::ALL.len(), Peer::ALL.len());
    let subjects = 1 + models + peers;
    assert_eq!(json.len(), 2 * subjects, "the floor, the models and the peers");
    let charts = html.matches("<svg xmlns").count();
    assert_eq!(
        charts,
        2 * (3 + subjects) + 1,
        "per workload a trade-off, a breakdown, a CDF and a histogram per subject; the timelines"
    );
    let at = |needle: &str| html.find(needle).unwrap_or_else(|| panic!("'{needle}' in the page"));
    let all = |needle: &str| html.match_indices(needle).map(|m| m.0).collect::<Vec<_>>();
    assert!(at("<b>Smoke test:</b>") < at("<ul id=\"verdict\"><li>hog: p99 "), "--quick says what it is, first");
    let verdict = at("<ul id=\"verdict\"><li>hog: p99 ");
    assert!(html[verdict..].contains("<li>copy: p99 "), "a verdict line per workload");
    let (tables, tradeoffs, bars) =
        (all("<table class=\"compact\">"), all("class=\"chart tradeoff\""), all("class=\"chart breakdown\""));
    assert_eq!((tables.len(), tradeoffs.len(), bars.len()), (2, 2, 2), "per workload");
    let folded = at("<details");
    for i in 0..2 {
        assert!(verdict < tables[i] && tables[i] < tradeoffs[i] && tradeoffs[i] < bars[i] && bars[i] < folded);
        let table = &html[tables[i]..tables[i] + html[tables[i]..].find("</table>").unwrap()];
        let body = table.split("<tbody>").nth(1).unwrap();
        assert!(
            body.starts_with("<tr class=\"floor\"><td>floor</td><td>host preempts</td>"),
            "the floor first: {table}"
        );
        assert_eq!(body.matches("<tr").count(), subjects, "a row per subject: {table}");
        for h in [
            "RT runs at",
            "p50 µs [lowest round, highest]",
            "p99 µs [lowest round, highest]",
            "cost %",
            "host held",
            "host stalls",
        ] {
            assert!(table.contains(h), "{h}: {table}");
        }
    }
    assert!(at("class=\"chart timeline\"") < folded, "the timelines are not folded");
    assert_eq!(html.matches("class=\"chart timeline\"").count(), 1, "every model on one axis");
    for (i, _) in html.match_indices("class=\"chart histogram\"").chain(html.match_indices("class=\"chart cdf\"")) {
        assert!(i > at("<details id=\"distributions\">"), "the distributions are folded");
    }
    assert!(at("<details id=\"per-cpu\">") < at("<th>CPU 1 p50 / p99 / max µs</th>"));
    let full = at("<details id=\"full-table\">");
    assert!(html[full..].contains("<th>cross-CPU p99 µs</th><th>p99 per CPU µs</th>"), "the full table folded");
    assert!(!html.contains(">log n<"), "histogram axes have tick values");
    assert_eq!(html.matches("http://").count(), charts, "self-contained: no URL but the SVG namespace");
    assert!(!html.contains("https://") && !html.contains(" src="), "self-contained");
    let Some(b) = browser() else {
        hostlab::testing::skip("no chromium on this machine (.ci/run installs Debian's chromium); the report was written and checked as text only");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    };
    let profile = dir.join("profile");
    let out = std::process::Command::new(b)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg("--window-size=1280,1000")
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", dir.join("index.html").display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{b}: {}", String::from_utf8_lossy(&out.stderr));
    let count = dom.split("<span id=\"svg-count\"").nth(1).and_then(|s| s.split('>').next()).unwrap_or_default();
    let expected = format!(
        " data-rendered=\"{charts}\" data-cdf=\"2\" data-tradeoff=\"2\" data-breakdown=\"2\" data-labels=\"{}\" data-overlaps=\"0\" data-clipped=\"0\" data-height=\"",
        2 * subjects
    );
    assert!(
        count.starts_with(&expected),
        "laid out: all {charts} charts, both CDFs' curves, both trade-offs' points and both breakdowns' \
         segments; a label per subject on each trade-off, none overlapping another or a point, none outside: {count}"
    );
    let height: u32 = count.rsplit("data-height=\"").next().unwrap().trim_end_matches('"').parse().unwrap();
    eprintln!("the page is {height} px tall at 1280 px wide, its folds closed");
    assert!(height > 0);
}
