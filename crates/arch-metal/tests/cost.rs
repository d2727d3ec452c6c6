//! The normal-path cost of a preemption point on the bare-metal image, in instructions: under
//! `-icount shift=0,sleep=off` the TSC counts instructions, and the image's `point_cost` line
//! gives the least cycles of a loop of idle points and of the same loop without them. The
//! patch models must cost exactly what `none` costs (their idle site is the same one `cmp eax,
//! imm32`: 0 instructions per point against `none`), one instruction per point against no
//! point at all, and `voluntary` must show the call every site makes.
//!
//! **Mechanism.** The harness (`common/mod.rs`) builds the image once and boots it per model
//! with `-icount`; each boot is killed after 60 s and the test then fails with its output.
//!
//! **Invariant.** Every check names the boot's whole serial output when it fails.

mod common;

use common::{boot_with, exit_codes, result, Boot};
use serde_json::Value;

const ICOUNT: [&str; 2] = ["-icount", "shift=0,sleep=off"];

/// The `point_cost` line of a boot under `-icount` with `preempt=model`.
fn point_cost(model: &str) -> Option<(Value, Boot)> {
    let b = boot_with(&ICOUNT, &format!("preempt={model}"))?;
    assert_eq!(b.status, exit_codes::qemu_status(exit_codes::SUCCESS), "exit status; serial:\n{}", b.serial);
    let line = result(&b, "point_cost");
    assert_eq!(line["model"], model, "{}", b.serial);
    assert_eq!(line["ok"], true, "{}", b.serial);
    Some((line, b))
}

/// (with points, without points, points) of a `point_cost` line.
fn cycles(v: &Value) -> (u64, u64, u64) {
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("`{k}` is not a number in {v}"));
    (n("with_points_cycles"), n("without_points_cycles"), n("points"))
}

#[test]
fn the_patch_models_cost_what_none_costs_per_point_and_voluntary_pays_a_call() {
    let Some((none, nb)) = point_cost("none") else { return };
    let (with, without, points) = cycles(&none);
    let per_point = (with - without) / points;
    assert_eq!(per_point, 1, "an idle site is one instruction (cmp eax, imm32): {none}\n{}", nb.serial);
    for model in ["patch-int3", "patch-call"] {
        let Some((p, b)) = point_cost(model) else { return };
        assert_eq!(
            cycles(&p),
            (with, without, points),
            "{model} must cost what none costs on the normal path (0 instructions per point against none): \
             {p} against {none}\n{}",
            b.serial
        );
    }
    let Some((v, vb)) = point_cost("voluntary") else { return };
    let (vwith, vwithout, _) = cycles(&v);
    assert_eq!(vwithout, without, "the loop without points does not depend on the model: {v}\n{}", vb.serial);
    assert!(
        (vwith - vwithout) / points >= per_point + 5,
        "under voluntary every site is a call (several instructions per point): {v}\n{}",
        vb.serial
    );
}
