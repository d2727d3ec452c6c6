//! The static latency checker on a deliberately broken kernel service: a loop without a point
//! is flagged with its `file:line` and the place for the point; a loop with a point is bounded.
//! Its report: the verdict first; with this file taken as the shipped services' source, the
//! broken loop is listed first with its advice and decides the exit code; library code is
//! hidden without `all`, shown with it, and never advised. No assertion names a function the
//! optimiser may inline (only this file's `#[inline(never)]` fixtures).

use lab::points_check::{
    check, check_with, report, shipped_unbounded, CheckRow, Loc, LoopRow, Origin, UnseenRow, WIDTH,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static STOP: AtomicBool = AtomicBool::new(true);
static WORK: AtomicU64 = AtomicU64::new(0);

/// This file, as the shipped services' sources for [`check_with`].
const FIXTURE: &str = "crates/lab/tests/";

/// BROKEN on purpose: after its first point it spins on a flag with no point in the loop.
#[inline(never)]
fn broken_service(stop: &AtomicBool) -> u32 {
    kernel::preempt_point!();
    while !stop.load(Ordering::Acquire) {
        WORK.fetch_add(1, Ordering::Relaxed); // BROKEN_LOOP_LINE
    }
    kernel::preempt_point!();
    line!() - 3
}

/// The same loop with a point in its body: bounded.
#[inline(never)]
fn fixed_service(stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        WORK.fetch_add(1, Ordering::Relaxed);
        kernel::preempt_point!();
    }
    kernel::preempt_point!();
}

/// Calls into Rust's library between its points (formatting a number is not inlined: std's
/// `format_inner`), so the check has library code to hide.
#[inline(never)]
fn service_calling_the_library(n: u64) -> usize {
    kernel::preempt_point!();
    let s = format!("{n} pages");
    kernel::preempt_point!();
    s.len()
}

/// Calls through a pointer between its points: the checker cannot see that stretch whole.
#[inline(never)]
fn service_calling_through_a_pointer(f: fn(u64) -> u64, n: u64) -> u64 {
    kernel::preempt_point!();
    let r = f(n);
    kernel::preempt_point!();
    r
}

fn double(n: u64) -> u64 {
    n * 2
}

fn row_of<'a>(rows: &'a [CheckRow], name: &str) -> &'a CheckRow {
    rows.iter().find(|r| r.function.as_deref().is_some_and(|f| f.ends_with(name))).unwrap_or_else(|| panic!("{name}"))
}

fn run_fixtures() -> u32 {
    let loop_line = broken_service(std::hint::black_box(&STOP));
    fixed_service(std::hint::black_box(&STOP));
    assert!(service_calling_the_library(std::hint::black_box(4096)) > 0);
    assert_eq!(service_calling_through_a_pointer(std::hint::black_box(double), 21), 42);
    loop_line
}

#[test]
fn a_call_through_a_pointer_makes_the_stretch_a_lower_bound() {
    run_fixtures();
    let rows = check().unwrap();
    let r = row_of(&rows, "service_calling_through_a_pointer");
    assert!(r.resolved && r.points == 2 && !r.is_unbounded(), "{r:?}");
    assert!(r.max_stretch_insns.is_some() && r.stretch_is_lower_bound, "{r:?}");
    let call =
        r.unknowns.iter().find(|u| u.why == "indirect call").unwrap_or_else(|| panic!("no indirect call: {r:?}"));
    assert!(call.at.file.as_deref().is_some_and(|f| f.ends_with("lab/tests/points_check.rs")), "{call:?}");
    assert!(lab::points_check::render(r).contains("longest stretch >= "), "{}", lab::points_check::render(r));
    // A stretch the checker sees whole is not marked.
    assert!(!row_of(&rows, "fixed_service").stretch_is_lower_bound);
}

#[test]
fn a_loop_without_a_point_is_flagged_with_its_file_and_line() {
    let loop_line = run_fixtures();
    let rows = check().unwrap();
    let broken = row_of(&rows, "broken_service");
    assert!(broken.resolved && broken.points == 2, "{broken:?}");
    assert_eq!(broken.max_stretch_insns, None, "{broken:?}");
    assert_eq!(broken.unbounded.len(), 1, "{broken:?}");
    let head = &broken.unbounded[0].head;
    assert!(head.file.as_deref().is_some_and(|f| f.ends_with("lab/tests/points_check.rs")), "{head:?}");
    let lines = [loop_line - 1, loop_line];
    assert!(head.line.is_some_and(|l| lines.contains(&l)), "loop at {lines:?}: {head:?}");
    let fixed = row_of(&rows, "fixed_service");
    assert!(fixed.unbounded.is_empty() && fixed.max_stretch_insns.is_some(), "{fixed:?}");
    assert!(lab::points_check::render(broken).contains("add preempt_point!() at crates/lab/tests/points_check.rs:"));
    // Under the real services' sources this file is the project's, not the services': it does
    // not decide the exit code.
    assert_eq!(broken.origin, Origin::Project, "{broken:?}");
    assert!(!broken.unbounded[0].shipped && !broken.decides_exit(), "{broken:?}");
}

#[test]
fn an_unbounded_loop_of_the_shipped_sources_comes_first_with_advice_and_decides_the_exit_code() {
    let loop_line = run_fixtures();
    let rows = check_with(FIXTURE).unwrap();
    let shipped = shipped_unbounded(&rows);
    assert_eq!(shipped.len(), 1, "only the broken loop is in the fixture's source: {shipped:?}");
    let r = report(&rows, FIXTURE, false);
    let text = r.lines.join("\n");
    assert_eq!(r.exit_code, 1, "{text}");
    assert!(r.lines[0].starts_with("UNBOUNDED: 1 unbounded loop(s)") && r.lines[0].ends_with("exit 1"), "{text}");
    // The first function listed is the broken one, then its loop with the advice.
    assert!(
        r.lines[2].contains("crates/lab/tests/points_check.rs:") && r.lines[2].contains("broken_service"),
        "{text}"
    );
    assert!(r.lines[2].contains("UNBOUNDED"), "{text}");
    let advice = &r.lines[3];
    let at_line = [loop_line - 1, loop_line].map(|l| format!("crates/lab/tests/points_check.rs:{l}"));
    assert!(at_line.iter().any(|a| advice.contains(a.as_str())), "{at_line:?}: {text}");
    assert!(advice.contains("add preempt_point!() at"), "{text}");
    for line in &r.lines {
        assert!(line.chars().count() <= WIDTH, "{} columns: {line}", line.chars().count());
    }
}

#[test]
fn library_code_is_hidden_without_all_shown_with_it_and_never_advised() {
    run_fixtures();
    let rows = check_with(FIXTURE).unwrap();
    let library: Vec<&CheckRow> = rows.iter().filter(|r| r.origin == Origin::Library).collect();
    assert!(!library.is_empty(), "the fixture calls std's formatting: {rows:#?}");
    for r in &rows {
        for l in &r.unbounded {
            match &l.advice {
                Some(a) => assert!(r.origin != Origin::Library && !a.contains(" at /"), "{r:?}"),
                None => assert!(!l.head.is_project() || l.head.line.is_none(), "project loop unadvised: {r:?}"),
            }
        }
    }
    let quiet = report(&rows, FIXTURE, false).lines.join("\n");
    let all = report(&rows, FIXTURE, true).lines.join("\n");
    for r in &library {
        let at = Loc { addr: r.addr, file: r.file.clone(), line: r.line };
        let shown = format!("{at}  {}:", r.function.as_deref().unwrap_or("?"));
        assert!(all.contains(&shown), "--all shows {shown}:\n{all}");
        assert!(!quiet.contains(&format!("{at}  ")), "hidden without --all: {shown}\n{quiet}");
    }
    for text in [&quiet, &all] {
        for line in text.lines().filter(|l| l.contains("preempt_point!()")) {
            let place = line.rsplit("preempt_point!() at ").next().unwrap();
            assert!(!place.starts_with('/'), "advice only in the project's source: {line}");
        }
    }
    assert!(!quiet.contains("/rustc/"), "{quiet}");
}

fn loc(file: &str, line: u32) -> Loc {
    Loc { addr: 0x1000 + line as usize, file: Some(file.into()), line: Some(line) }
}

fn row(function: &str, file: &str, line: u32, origin: Origin) -> CheckRow {
    CheckRow {
        function: Some(function.into()),
        file: Some(file.into()),
        line: Some(line),
        addr: 0x1000 + line as usize,
        points: 1,
        max_stretch_insns: Some(12),
        stretch_is_lower_bound: false,
        stretch: Some((loc(file, line), loc(file, line + 1))),
        unbounded: Vec::new(),
        counted_loops: 0,
        unbounded_calls: Vec::new(),
        unknowns: Vec::new(),
        resolved: true,
        in_lab: origin == Origin::Services,
        origin,
    }
}

fn spin(r: &mut CheckRow, line: u32, shipped: bool, advice: bool) {
    let file = r.file.clone().unwrap();
    let advice = advice.then(|| format!("add preempt_point!() at {file}:{}", line + 1));
    r.unbounded.push(LoopRow { head: loc(&file, line), place_point_at: loc(&file, line + 1), shipped, advice });
    r.max_stretch_insns = None;
    r.stretch = None;
}

/// Rows as `check` gives them, sorted by file: the report reorders them by what decides.
#[test]
fn the_report_puts_the_verdict_then_the_deciding_function_first_in_at_most_100_columns() {
    let rustc = "/rustc/0123456789abcdef0123456789abcdef01234567/library/std/src/sys/sync/mutex/futex.rs";
    let mut lib = row("std::sys::sync::mutex::futex::Mutex::lock_contended", rustc, 55, Origin::Library);
    spin(&mut lib, 55, false, false);
    let mut lock = row("arch::sync::SpinLock::lock", "crates/arch/src/sync.rs", 35, Origin::Project);
    spin(&mut lock, 35, false, true);
    let bounded = row("services::atoms::csum", "crates/services/src/atoms.rs", 19, Origin::Services);
    let long = "services::workloads::<impl services::workloads::Workload for a::very::long::Type<With, Generics>>::run";
    let mut broken = row(long, "crates/services/src/workloads.rs", 181, Origin::Services);
    spin(&mut broken, 190, true, true);
    let rows = [lib, lock, bounded, broken];
    for (rows, code) in [(&rows[..], 1), (&rows[..3], 0)] {
        assert_eq!(shipped_unbounded(rows).len(), code as usize);
        for all in [false, true] {
            let r = report(rows, lab::points_check::LAB_SOURCES, all);
            let text = r.lines.join("\n");
            assert_eq!(r.exit_code, code, "{text}");
            let word = if code == 1 { "UNBOUNDED: 1 unbounded" } else { "bounded: 0 unbounded" };
            assert!(r.lines[0].starts_with(word) && r.lines[0].ends_with(&format!("exit {code}")), "{text}");
            assert_eq!(text.contains("/rustc/"), all, "library code only with --all: {text}");
            assert!(text.contains("arch::sync::SpinLock::lock"), "machinery listed: {text}");
            if code == 1 {
                assert!(r.lines[2].starts_with("  crates/services/src/workloads.rs:181"), "deciding row first: {text}");
                assert!(r.lines[3].contains("add preempt_point!() at"), "{text}");
                assert!(r.lines[3].contains("crates/services/src/workloads.rs:"), "{text}");
            }
            if !all {
                assert!(r.lines.iter().all(|l| l.chars().count() <= WIDTH), "{text}");
                // The machinery's loop is listed, its advice only with --all.
                assert_eq!(text.matches("preempt_point!()").count(), code as usize, "{text}");
            } else {
                assert!(text.contains("library code, not ours to change"), "{text}");
            }
        }
    }
}

/// A stretch through a call the analysis cannot see into is printed as a lower bound, with the
/// call named; never as "bounded".
#[test]
fn a_stretch_through_a_call_not_analysed_is_reported_as_a_lower_bound() {
    let mut partial = row("services::atoms::run_atom", "crates/services/src/atoms.rs", 42, Origin::Services);
    partial.stretch_is_lower_bound = true;
    let at = loc("crates/services/src/atoms.rs", 45);
    partial.unknowns.push(UnseenRow { at: at.clone(), callee: None, why: "indirect call".into() });
    let why = "call outside the analysed text".to_string();
    partial.unknowns.push(UnseenRow { at, callee: Some("kernel::time::now_ns".into()), why });
    let bounded = row("services::atoms::csum", "crates/services/src/atoms.rs", 19, Origin::Services);
    let rows = [bounded, partial];
    let r = report(&rows, lab::points_check::LAB_SOURCES, false);
    let short = r.lines.join("\n");
    assert_eq!(r.exit_code, 0, "{short}");
    assert!(r.lines[0].starts_with("loops bounded: 0 unbounded loop(s)"), "not called bounded: {short}");
    assert!(r.lines[0].ends_with("so exit 0"), "{short}");
    assert!(r.lines[1].contains("(2 checked, 1 lower bound(s);"), "{short}");
    assert!(short.contains("csum: bounded, longest stretch 12 insns"), "{short}");
    assert!(short.contains("run_atom: stretch >= 12 insns; 2 cost(s) not known"), "{short}");
    let full = report(&rows, lab::points_check::LAB_SOURCES, true).lines.join("\n");
    assert!(full.contains("longest stretch >= 12 insns"), "{full}");
    let at = "cost not known at crates/services/src/atoms.rs:45";
    assert!(full.contains(&format!("{at}: this instruction: indirect call")), "{full}");
    assert!(full.contains(&format!("{at}: the call of kernel::time::now_ns: call outside")), "{full}");
}
