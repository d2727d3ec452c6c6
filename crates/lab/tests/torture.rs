//! The register torture in the test suite: a shorter run than `atomkernel torture`.

use lab::torture::{run, TortureConfig};

#[test]
fn registers_survive_user_mode_preemption() {
    let cfg = TortureConfig {
        tasks: 3,
        preemptions: 20_000,
        max_secs: 120,
        spins: 2000,
        kernel_mode: false,
        ..TortureConfig::default()
    };
    let r = run(&cfg).unwrap();
    assert!(
        r.mismatches.is_empty(),
        "registers corrupted across preemption: {:#?}",
        &r.mismatches[..r.mismatches.len().min(16)]
    );
    assert!(r.preemptions >= 20_000, "only {} preemptions in {} ms", r.preemptions, r.elapsed_ms);
    assert!(r.rounds > 1000, "{r:?}");
}

#[test]
fn bad_torture_settings_are_refused() {
    let e = |cfg: TortureConfig| run(&cfg).unwrap_err().to_string();
    let d = TortureConfig::default;
    assert!(e(TortureConfig { tasks: 0, ..d() }).contains("tasks=0: use 1..=64 torture tasks"));
    assert!(e(TortureConfig { preemptions: 0, ..d() }).contains("preemptions=0: use at least 1"));
    assert!(e(TortureConfig { max_secs: u64::MAX, ..d() }).contains("max_secs=18446744073709551615: use 1..="));
    assert!(e(TortureConfig { spins: u64::MAX, ..d() }).contains("spins=18446744073709551615: use 1..=100000000"));
    let none = TortureConfig { kernel_mode: true, model: kernel::PreemptModel::None, ..d() };
    assert!(e(none).contains("model=none: kernel code is never preempted"));
}

#[test]
fn registers_survive_kernel_mode_preemption_under_full() {
    let cfg = TortureConfig {
        tasks: 3,
        preemptions: 20_000,
        max_secs: 120,
        spins: 2000,
        kernel_mode: true,
        ..TortureConfig::default()
    };
    let r = run(&cfg).unwrap();
    assert_eq!(r.mode, "kernel");
    assert!(
        r.mismatches.is_empty(),
        "registers corrupted across kernel-mode preemption: {:#?}",
        &r.mismatches[..r.mismatches.len().min(16)]
    );
    assert!(r.preemptions >= 20_000, "only {} preemptions in {} ms", r.preemptions, r.elapsed_ms);
}

/// The register torture across CPUs with forced migrations, kernel mode under `full`: rounds
/// preempted on one CPU thread and resumed on another still compare equal.
#[test]
fn registers_survive_migration_between_cpus() {
    let cfg = TortureConfig {
        tasks: 3,
        preemptions: 5_000,
        max_secs: 120,
        kernel_mode: true,
        model: kernel::PreemptModel::Full,
        cpus: 2,
        migrate: true,
        ..TortureConfig::default()
    };
    let r = run(&cfg).unwrap();
    assert!(r.mismatches.is_empty(), "{:#?}", &r.mismatches[..r.mismatches.len().min(16)]);
    assert!(r.migrations > 0 && r.preemptions > 0, "{r:?}");
    assert_eq!(r.cpus, 2);
    let e = |c: TortureConfig| run(&c).unwrap_err().to_string();
    assert!(
        e(TortureConfig { migrate: true, ..TortureConfig::default() }).contains("migrate=true needs cpus=2 or more")
    );
}
