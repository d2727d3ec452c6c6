//! The exact table: look-up at 10, 1,000 and 100,000 points (flat: constant time), the
//! analysis' time per function, and the table's memory per point (printed once).
//!
//! `cargo bench -p atomkernel-codeflow --bench table`

use codeflow::{analyze, ExactTable, Function};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::time::Duration;

/// `n` functions of 16 bytes: `test edi, edi; je ret; <point>; nop; ret`, padded with `int3`.
fn program(n: usize) -> (u64, Vec<u8>, Vec<u64>) {
    let base = 0x4000_0000u64;
    let one = [0x85, 0xff, 0x74, 0x06, 0x3d, 0, 0, 0, 0, 0x90, 0xc3, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc];
    let code: Vec<u8> = (0..n).flat_map(|_| one).collect();
    let sites = (0..n as u64).map(|i| base + i * 16 + 4).collect();
    (base, code, sites)
}

fn build(n: usize) -> (ExactTable, Vec<u64>) {
    let (base, code, sites) = program(n);
    let funcs: Vec<Function<'_>> =
        code.chunks(16).enumerate().map(|(i, b)| Function { start: base + i as u64 * 16, bytes: b }).collect();
    let a = analyze(&funcs, &sites, &|_, _| None);
    let t = ExactTable::build(&a);
    eprintln!(
        "{n} points: {} ranges, {} bytes, {:.1} bytes per point",
        t.ranges(),
        t.memory_bytes(),
        t.memory_bytes() as f64 / n as f64
    );
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let ips = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            base + x % (n as u64 * 16)
        })
        .collect();
    (t, ips)
}

/// One iteration = one look-up of an interrupted ip.
fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("exact-table look-up");
    for n in [10usize, 1_000, 100_000] {
        let (t, ips) = build(n);
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

/// One iteration = analysing and packing 1,000 functions.
fn analysis(c: &mut Criterion) {
    let (base, code, sites) = program(1_000);
    let funcs: Vec<Function<'_>> =
        code.chunks(16).enumerate().map(|(i, b)| Function { start: base + i as u64 * 16, bytes: b }).collect();
    c.bench_function("analyze+pack 1000 functions", |b| {
        b.iter(|| ExactTable::build(&analyze(std::hint::black_box(&funcs), &sites, &|_, _| None)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = lookup, analysis
}
criterion_main!(benches);
