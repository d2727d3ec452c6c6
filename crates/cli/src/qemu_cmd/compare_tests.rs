//! `qemu compare`'s parser, verdict, table and JSON on lines of the image's documented shape
//! (`image.run=lab`), written here: the parsing and the judging without a boot.

use super::*;
use crate::qemu_cmd::{Plan, Session};
use std::time::Duration;

/// A serial output of one boot: the clock, then one `lab` line per workload.
fn serial(model: &str, tsc_khz: u64, p99s: &[(&str, u64)]) -> String {
    let mut s = format!("atomkernel-metal: Rust entry\r\n{{\"test\":\"clock\",\"tsc_khz\":{tsc_khz}}}\r\n");
    for (w, p99) in p99s {
        s += &format!(
            "{{\"test\":\"lab\",\"model\":\"{model}\",\"cpus\":1,\"workload\":\"{w}\",\"size\":64,\"calls\":500,\"units\":32000,\
             \"elapsed_cycles\":2000000000,\"probes\":[{{\"cpu\":0,\"prio\":90,\"interval_ns\":1000000,\"samples\":100,\
             \"min\":1000,\"p50\":1500,\"p99\":{p99},\"max\":{},\"hist\":[[1024,60],[2048,40]]}}]{}}}\r\n",
            p99 + 100,
            // the patch models' handler: 4 events of 380 and 420 (a mean of 400), none elsewhere
            if model.starts_with("patch") {
                ",\"patch\":{\"events\":4,\"handler_ns\":1600,\"handler_max_ns\":420,\"sites_armed\":8,\"frames_walked\":4,\"redirects\":0,\"fallbacks\":0}"
            } else {
                ""
            }
        );
    }
    s
}

/// The substrate line the command prints between the verdict and the tables.
const HEADER: &str = "substrate: QEMU 7.2.22 TCG, 1 CPU, bare metal (crates/arch-metal); clock: -icount shift=0";

fn boot(serial: String) -> qemu::Boot {
    qemu::Boot { status: 33, serial, stderr: String::new(), to_rust: None, total: Duration::ZERO }
}

/// One boot: the model, the TSC's kHz, and each workload's p99 in cycles.
type BootFixture<'a> = (&'a str, u64, Vec<(&'a str, u64)>);

/// The rows of one round per boot.
fn rows(boots: &[BootFixture<'_>], icount: bool) -> Vec<Row> {
    let mut rows = Vec::new();
    for (m, khz, p99s) in boots {
        let (clock, lines) = parse(&boot(serial(m, *khz, p99s))).unwrap();
        add(&mut rows, lines, Clock { tsc_khz: clock.tsc_khz, icount });
    }
    rows
}

fn session(icount: bool) -> Session {
    let plan = Plan {
        models: vec![],
        cpus: 1,
        accel: qemu::Accel::Tcg,
        icount,
        timeout: Duration::from_secs(1),
        json: true,
        patch_sync: None,
        patch_leaf: None,
    };
    Session { plan, qemu: "q".into(), version: "7.2.22".into(), image: "i".into() }
}

#[test]
fn the_lines_parse_into_typed_rows_and_a_missing_clock_is_an_error() {
    let (clock, lines) = parse(&boot(serial("full", 2_000_000, &[("checksum", 4000), ("hog", 9000)]))).unwrap();
    assert_eq!(clock.tsc_khz, 2_000_000);
    assert_eq!(lines.len(), 2);
    let l = &lines[1];
    assert_eq!((l.model.as_str(), l.workload.as_str(), l.size, l.calls, l.units), ("full", "hog", 64, 500, 32000));
    let p = &l.probes[0];
    assert_eq!((p.cpu, p.prio, p.samples, p.min, p.p50, p.p99, p.max), (0, 90, 100, 1000, 1500, 9000, 9100));
    assert_eq!(p.hist, [(1024, 60), (2048, 40)]);
    let no_clock = serial("full", 1, &[("hog", 1)]).replace("{\"test\":\"clock\",\"tsc_khz\":1}", "");
    assert!(parse(&boot(no_clock)).unwrap_err().contains("no `clock` line"));
    let bad = serial("full", 1, &[("hog", 1)]).replace("\"calls\":500", "\"calls\":\"many\"");
    assert!(parse(&boot(bad)).unwrap_err().contains("`lab` line"), "a malformed line is an error, not skipped");
}

#[test]
fn cycles_become_ns_through_the_tsc_rate_and_stay_instructions_under_icount() {
    assert_eq!(Clock { tsc_khz: 2_000_000, icount: false }.figure(4000), 2000, "2 GHz: 4000 cycles are 2000 ns");
    assert_eq!(Clock { tsc_khz: 999_931, icount: true }.figure(4000), 4000);
    let r = rows(&[("full", 2_000_000, vec![("checksum", 4000)])], false);
    assert_eq!(r[0].p99().value, 2000.0);
    assert_eq!(r[0].throughput(), Some(32000.0), "32000 units in 2e9 cycles at 2 GHz: one second");
}

#[test]
fn under_icount_one_boot_ranks_exactly_and_equal_figures_tie() {
    let boots = [
        ("none", 1_000_000, vec![("checksum", 900_000), ("hog", 5000)]),
        ("full", 1_000_000, vec![("checksum", 4000), ("hog", 5000)]),
    ];
    let t = table(&rows(&boots, true), "instr", true, 1, HEADER);
    let lines: Vec<&str> = t.lines().collect();
    assert!(lines[0].contains("no run-to-run noise"), "{t}");
    assert_eq!(lines[1], "checksum: p99 lowest full 4,000 instr");
    assert_eq!(lines[2], "hog: p99 a tie within the spread: none 5,000 instr, full 5,000 instr");
    assert_eq!(lines[3], HEADER, "the substrate right after the verdict:\n{t}");
    let row = lines.iter().find(|l| l.starts_with("full ")).unwrap();
    assert_eq!(row.split_whitespace().collect::<Vec<_>>(), ["full", "1,500", "4,000", "4,100", "100", "16000", "-"]);
}

#[test]
fn without_icount_a_lead_inside_the_rounds_spread_is_a_tie_and_one_round_ranks_nothing() {
    let khz = 1_000_000;
    let round = |a: u64, b: u64| [("none", khz, vec![("hog", a)]), ("full", khz, vec![("hog", b)])];
    let mut boots = Vec::new();
    for (a, b) in [(9000, 3000), (9500, 3100), (9200, 2900)] {
        boots.extend(round(a, b));
    }
    let t = table(&rows(&boots, false), "ns", false, 3, HEADER);
    assert!(t.starts_with("hog: p99 lowest full 3,000 ns\n"), "{t}");
    assert!(t.contains("3,000 [2,900,3,100]"), "the median and the rounds' range: {t}");
    let mut overlap = Vec::new();
    for (a, b) in [(3050, 3000), (2950, 3100), (3000, 2900)] {
        overlap.extend(round(a, b));
    }
    let t = table(&rows(&overlap, false), "ns", false, 3, HEADER);
    assert!(t.starts_with("hog: p99 a tie within the spread:"), "{t}");
    let one = table(&rows(&round(9000, 3000), false), "ns", false, 1, HEADER);
    assert!(one.starts_with("one round has no spread") && one.contains("hog: p99 not ranked"), "{one}");
}

#[test]
fn the_json_row_keeps_the_hosted_names_and_nulls_what_bare_metal_does_not_measure() {
    let r = rows(&[("full", 1_000_000, vec![("checksum", 4000)])], true);
    let v = json_row(&session(true), &r[0]);
    assert_eq!(
        (v["model"].as_str(), v["workload"].as_str(), v["clock"].as_str()),
        (Some("full"), Some("checksum"), Some("icount"))
    );
    assert_eq!(v["latency_ns"]["p99"], 4000.0);
    assert!(v["rt_runs_at"].is_null() && v["host_disturbed"].is_null() && v["latency_undisturbed_ns"].is_null());
    let p = &v["probes"][0];
    assert_eq!((p["interval_us"].as_u64(), p["latency_ns"]["p99"].as_u64()), (Some(1000), Some(4000)));
    assert!(p["latency_ns"]["p999"].is_null(), "no p99.9 from the image");
    assert_eq!(p["histogram"][1], serde_json::json!({"lo_ns": 2048, "count": 40}));
    assert!(v["handler_ns_per_event"].is_null(), "full arms nothing: {v}");
}

#[test]
fn the_patch_handler_per_event_is_summed_over_rounds_into_the_table_and_the_json() {
    let boots = [("patch-call", 1_000_000, vec![("hog", 5000)]), ("patch-call", 1_000_000, vec![("hog", 5000)])];
    let r = rows(&boots, true);
    let v = json_row(&session(true), &r[0]);
    assert_eq!(v["handler_ns_per_event"], 400.0, "1600 ns over 4 events, in both rounds: {v}");
    assert_eq!((v["handler_max_ns"].as_u64(), v["sites_armed_per_event"].as_f64()), (Some(420), Some(2.0)));
    assert_eq!(v["frames_walked_per_event"], 1.0);
    let t = table(&r, "instr", true, 2, HEADER);
    let row = t.lines().find(|l| l.starts_with("patch-call ")).unwrap();
    assert!(row.ends_with(" 400/420"), "the handler's mean and longest last: {t}");
    let old = serial("patch-call", 1, &[("hog", 1)]).replace(&format!(",\"patch\":{}", "{"), ",\"old\":{");
    assert!(parse(&boot(old)).is_ok(), "a line without the patch object still parses");
}
