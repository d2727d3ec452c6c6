//! The normal path with tracing compiled out, compiled in but off, and on (`trace=all`).
//!
//! ```sh
//! cargo bench -p atomkernel-services --bench trace                          # compiled in: off and on
//! cargo bench -p atomkernel-services --bench trace --no-default-features    # compiled out
//! ```
//!
//! Each benchmark runs in a fresh kernel instance under `preempt=voluntary` (so points are
//! patched calls of the hook, the path the tracers hook), in a SCHED_FIFO 90 task, and times
//! itself with the kernel's clock. The label says which build and setting it measured.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use kernel::trace::TraceOptions;
use kernel::{spawn, Config, PreemptModel, TaskBuilder};
use services::atoms::{csum, PAGE};
use std::time::Duration;

/// The settings this build can measure: (label, trace option).
fn settings() -> Vec<(&'static str, &'static str)> {
    if kernel::trace::BUILT {
        vec![("tracing off", "off"), ("tracing on", "all")]
    } else {
        vec![("no tracing built", "off")]
    }
}

/// Runs `body(iters)` in a SCHED_FIFO 90 task of a fresh kernel; `body` returns elapsed ns.
fn in_kernel(trace: &str, body: impl FnOnce() -> u64 + Send + 'static) -> Duration {
    let trace = TraceOptions::parse(trace, 1 << 16).expect("trace option");
    let cfg = Config { preempt: PreemptModel::Voluntary, trace, ..Config::default() };
    let r =
        kernel::run(cfg, move || spawn(TaskBuilder::new("bench").fifo(90), move || body() as i64).join().unwrap_or(0))
            .expect("kernel boots");
    Duration::from_nanos(r.init.expect("bench task ran") as u64)
}

fn bench(c: &mut Criterion, what: &str, body: fn(u64) -> u64) {
    for (label, trace) in settings() {
        c.bench_function(&format!("{what} [{label}]"), |b| {
            b.iter_custom(|iters| in_kernel(trace, move || body(iters)))
        });
    }
}

/// One iteration = a null system call (entry, `ret_from_syscall`).
fn null_syscall(iters: u64) -> u64 {
    let t0 = kernel::time::now_ns();
    for _ in 0..iters {
        kernel::syscall(|| std::hint::black_box(0));
    }
    kernel::time::now_ns() - t0
}

/// One iteration = a preemption point in kernel code with nothing pending (a patched call).
fn point(iters: u64) -> u64 {
    kernel::syscall(|| {
        let t0 = kernel::time::now_ns();
        for _ in 0..iters {
            kernel::preempt_point!();
        }
        kernel::time::now_ns() - t0
    })
}

/// One iteration = `preempt_disable()` + `preempt_enable()`.
fn preempt_pair(iters: u64) -> u64 {
    let t0 = kernel::time::now_ns();
    for _ in 0..iters {
        drop(std::hint::black_box(kernel::preempt::preempt_disable()));
    }
    kernel::time::now_ns() - t0
}

/// One iteration = one system call of 64 atoms (a 4 KiB page checksummed, then a point): the
/// models lab's normal-path load.
fn syscall_of_atoms(iters: u64) -> u64 {
    let page = [0x5au8; PAGE];
    let t0 = kernel::time::now_ns();
    for _ in 0..iters {
        let a = kernel::syscall(|| {
            let mut a = 0u16;
            for _ in 0..64 {
                a ^= csum(std::hint::black_box(&page));
                kernel::preempt_point!();
            }
            a
        });
        std::hint::black_box(a);
    }
    kernel::time::now_ns() - t0
}

fn all(c: &mut Criterion) {
    bench(c, "null system call", null_syscall);
    bench(c, "preemption point, nothing pending", point);
    bench(c, "preempt_disable + preempt_enable", preempt_pair);
    bench(c, "kernel task switch (sched_yield)", common::task_switches);
    bench(c, "system call of 64 page-checksum atoms", syscall_of_atoms);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = all
}
criterion_main!(benches);
