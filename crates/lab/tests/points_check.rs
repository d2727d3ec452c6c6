//! The static latency checker on a deliberately broken kernel service: a loop without a point
//! is flagged with its `file:line` and the place for the point; a loop with a point is bounded.

use lab::points_check::{check, CheckRow};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static STOP: AtomicBool = AtomicBool::new(true);
static WORK: AtomicU64 = AtomicU64::new(0);

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

fn row_of<'a>(rows: &'a [CheckRow], name: &str) -> &'a CheckRow {
    rows.iter().find(|r| r.function.as_deref().is_some_and(|f| f.ends_with(name))).unwrap_or_else(|| panic!("{name}"))
}

#[test]
fn a_loop_without_a_point_is_flagged_with_its_file_and_line() {
    let loop_line = broken_service(std::hint::black_box(&STOP));
    fixed_service(std::hint::black_box(&STOP));
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
    assert!(lab::points_check::render(broken).contains("put a preempt_point!() at"));
}
