//! Micro-benchmarks of the patch models (preempt=patch-int3, patch-call): the kernel's
//! point-table look-up with 10, 1,000 and 100,000 points. (What an armed site costs when it is
//! reached, and patching one, are raw arch primitives: `cargo bench -p atomkernel-arch --bench
//! patch`.)
//!
//! `cargo bench -p atomkernel-services --bench patch`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kernel::model::patch::ptable::PointTable;
use std::time::Duration;

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
    targets = table_lookup
}
criterion_main!(benches);
