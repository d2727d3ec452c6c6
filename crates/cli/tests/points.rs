//! `atomkernel points --check` as a user meets it on the shipped binary: the verdict first, at
//! most 100 columns a line, the exit code as before (0: the shipped services are bounded),
//! library code only with `--all` and never advised, `--json` with its fields. Assertions hold
//! whatever the optimiser inlines: they name no function, only what the report guarantees.

mod common;
use common::atomkernel;
use serde_json::Value;

fn json_rows() -> Vec<Value> {
    let (code, out, err) = atomkernel(&["points", "--check", "--json"]);
    assert_eq!(code, 0, "no loop of the shipped services spins without a point: {err}");
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `file:line` of a JSON row, as the report prints it (without one, the report prints the
/// address, which differs from run to run: the program is position-independent).
fn at(v: &Value) -> Option<String> {
    Some(format!("{}:{}", v["file"].as_str()?, v["line"].as_u64()?))
}

#[test]
fn the_verdict_comes_first_and_the_exit_code_is_unchanged() {
    let (code, out, err) = atomkernel(&["points", "--check"]);
    assert_eq!(code, 0, "the shipped services are bounded: {out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    let verdict = lines[0];
    // "bounded" only when every services' stretch is a bound; "loops bounded" and the count of
    // lower bounds when some are not (a call the checker cannot see into, as the vDSO's clock)
    let rows = json_rows();
    let partial = rows.iter().filter(|r| r["origin"] == "services" && r["stretch_is_lower_bound"] == true).count();
    if partial == 0 {
        assert!(verdict.starts_with("bounded: 0 unbounded loop(s) in the shipped services' source"), "{out}");
        assert!(verdict.contains("crates/services/src/") && verdict.ends_with("exit 0"), "{out}");
    } else {
        assert!(verdict.starts_with("loops bounded: 0 unbounded loop(s) in the shipped services' source"), "{out}");
        assert!(verdict.ends_with("exit 0"), "{out}");
        assert!(lines[1].contains(&format!(", {partial} lower bound(s);")), "{out}");
    }
    assert!(lines[1].contains("decide the exit code"), "{out}");
    for line in &lines {
        assert!(line.chars().count() <= 100, "{} columns: {line}", line.chars().count());
    }
    assert!(lines.last().unwrap().starts_with("exact table: "), "the table's line last: {out}");
    // The answer agrees with --json's rows: no loop of the services' source is unbounded.
    let shipped = rows.iter().flat_map(|r| r["unbounded"].as_array().unwrap()).filter(|l| l["shipped"] == true);
    assert_eq!(shipped.count(), 0);
}

#[test]
fn library_code_is_hidden_without_all_shown_with_it_and_never_advised() {
    let rows = json_rows();
    for r in &rows {
        for field in ["function", "file", "line", "points", "max_stretch_insns", "unbounded", "resolved", "in_lab"] {
            assert!(r.get(field).is_some(), "{field} in {r}");
        }
        let origin = r["origin"].as_str().unwrap();
        assert!(["services", "project", "library"].contains(&origin), "{r}");
        assert_eq!(r["in_lab"] == true, origin == "services", "{r}");
        for l in r["unbounded"].as_array().unwrap() {
            if let Some(advice) = l["advice"].as_str() {
                assert!(origin != "library" && !advice.contains(" at /"), "advice only on our code: {r}");
            }
        }
    }
    let (code, quiet, _) = atomkernel(&["points", "--check"]);
    assert_eq!(code, 0);
    let (code, all, _) = atomkernel(&["points", "--check", "--all"]);
    assert_eq!(code, 0, "--all changes what is printed, not the exit code");
    assert_eq!(quiet.lines().next(), all.lines().next(), "the same verdict first");
    for text in [&quiet, &all] {
        for line in text.lines().filter(|l| l.contains("preempt_point!()")) {
            let place = line.rsplit("preempt_point!() at ").next().unwrap();
            assert!(!place.starts_with('/'), "never advise library code: {line}");
        }
    }
    assert!(!quiet.contains("/rustc/") && !quiet.contains("/.cargo/"), "{quiet}");
    let library: Vec<&Value> = rows.iter().filter(|r| r["origin"] == "library").collect();
    for r in &library {
        let name = r["function"].as_str().unwrap_or("?");
        assert!(all.contains(&format!("  {name}: ")), "--all shows {name}");
        if let Some(at) = at(r) {
            assert!(all.contains(&format!("{at}  {name}: ")), "--all shows {at}  {name}");
            assert!(!quiet.contains(&format!("{at}  ")), "hidden without --all: {at}  {name}\n{quiet}");
        }
    }
    let hidden = format!(", {} library (--all)", library.len());
    assert!(quiet.lines().any(|l| l.contains(&hidden)), "says how many are hidden: {quiet}");
    // The services' functions are listed: `csum` bounded; `run_atom`, where the build keeps it
    // a function of its own, a lower bound through the clock's vDSO call.
    let atoms: Vec<&str> = quiet.lines().filter(|l| l.starts_with("  crates/services/src/atoms.rs:")).collect();
    assert!(atoms.iter().any(|l| l.contains("csum: bounded, longest stretch ")), "{quiet}");
    for l in atoms.iter().filter(|l| l.contains("run_atom: ")) {
        assert!(l.contains(": stretch >= "), "{quiet}");
    }
}
