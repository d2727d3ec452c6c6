//! Micro-benchmarks of the patch models (preempt=patch-int3, patch-call): what a fired point
//! costs when it finds nothing to do, through a breakpoint and through a call, and the
//! point-table look-up with 10, 1,000 and 100,000 points.
//!
//! `cargo bench -p atomkernel-services --bench patch`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kernel::model::patch::ptable::PointTable;
use kernel::{spawn, Config, TaskBuilder};
use std::time::Duration;

fn canary_site() -> usize {
    arch::ppoint::sites().iter().find(|s| s.info.file.ends_with("ppoint.rs")).expect("canary site").addr
}

/// One iteration = the canary site, armed `how`, reached by a kernel task with nothing pending:
/// for `int3` the SIGTRAP handler (signal delivery, the core's `point_trap`, `sigreturn`); for
/// `call` the point hook. Neither reschedules, so this is the cost of a fired point itself.
fn fired_point(c: &mut Criterion) {
    arch::patch::prepare().expect("text alias");
    let site = canary_site();
    for (name, how) in [("int3", arch::patch::Arm::Int3), ("call", arch::patch::Arm::Call)] {
        c.bench_function(&format!("armed point reached, nothing pending ({name})"), |b| {
            b.iter_custom(|iters| {
                let cfg = Config { preempt: kernel::PreemptModel::PatchInt3, ..Config::default() };
                let r = kernel::run(cfg, move || {
                    spawn(TaskBuilder::new("bench").fifo(90), move || {
                        arch::patch::arm_site(site, how).unwrap();
                        let t0 = kernel::time::now_ns();
                        for _ in 0..iters {
                            arch::ppoint::canary();
                        }
                        let ns = kernel::time::now_ns() - t0;
                        arch::patch::disarm_site(site, how).unwrap();
                        ns as i64
                    })
                    .join()
                    .unwrap_or(0)
                })
                .expect("kernel boots");
                Duration::from_nanos(r.init.expect("bench task ran") as u64)
            })
        });
    }
}

/// A synthetic table of `n` functions of 96 bytes, each with one point, and addresses spread
/// over all of them.
fn synthetic(n: usize) -> (PointTable, Vec<usize>) {
    let base = 0x4000_0000usize;
    let funcs: Vec<(usize, usize)> = (0..n).map(|i| (base + i * 96, base + i * 96 + 80)).collect();
    let sites: Vec<usize> = (0..n).map(|i| base + i * 96 + 40).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let ips = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            base + (x as usize % (n * 96))
        })
        .collect();
    (PointTable::build(&funcs, &sites), ips)
}

/// One iteration = one look-up of an interrupted ip in the point table.
fn table_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("point-table look-up");
    for n in [10usize, 1_000, 100_000] {
        let (t, ips) = synthetic(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & 4095;
                std::hint::black_box(t.lookup(std::hint::black_box(ips[i])))
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = fired_point, table_lookup
}
criterion_main!(benches);
