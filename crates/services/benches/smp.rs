//! SMP micro-benchmarks, each measured inside a kernel instance of two CPUs with the host's own
//! counterpart in the same run: the function-call IPI round trip against a futex wake-up of a
//! host thread on the other core and back, and the throughput of two CPU-bound fair tasks on
//! one CPU against two (the scaling of the per-CPU run queues and the balancer) against the
//! same loads on one host thread and on two; and a null system call on one CPU against one on
//! each of two CPUs at once (shared cache lines on the system-call path show there).
//!
//! `cargo bench -p atomkernel-services --bench smp`

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use kernel::{spawn, Config, TaskBuilder};
use std::time::Duration;

/// Runs `body` as a SCHED_FIFO 90 task bound to CPU 0 of a fresh two-CPU kernel; returns the
/// duration it measured.
fn on_cpu0_of_two(body: impl FnOnce() -> u64 + Send + 'static) -> Duration {
    let r = kernel::run(Config { cpus: 2, ..Config::default() }, move || {
        spawn(TaskBuilder::new("bench").fifo(90).cpus(1), move || body() as i64).join().unwrap_or(0)
    })
    .expect("kernel boots");
    Duration::from_nanos(r.init.expect("bench task ran") as u64)
}

/// One iteration = `smp_call_function_single(1, .., wait)` from CPU 0: the mailbox, the
/// doorbell signal to CPU 1's thread, its handler, and the spin until it is done.
fn ipi_round_trip(c: &mut Criterion) {
    c.bench_function("IPI round trip (smp_call_function_single to the other CPU, waiting)", |b| {
        b.iter_custom(|iters| {
            on_cpu0_of_two(move || {
                let t0 = kernel::time::now_ns();
                for _ in 0..iters {
                    kernel::smp::smp_call_function_single(1, || {}, true).expect("CPU 1 exists");
                }
                kernel::time::now_ns() - t0
            })
        })
    });
}

/// One iteration = a host thread on one core wakes a thread parked on the other core
/// (futex), which wakes it back: the host's cross-core round trip.
fn host_cross_core_round_trip(c: &mut Criterion) {
    c.bench_function("host cross-core round trip (futex wake and back)", |b| {
        b.iter_custom(|iters| {
            let cpus = hostlab::sched::allowed_cpus();
            common::host_ping_pong(cpus[0], *cpus.get(1).unwrap_or(&cpus[0]), iters)
        })
    });
}

/// Two fair tasks each checksum `pages` pages in user mode; returns the wall time.
fn two_fair_workers(cpus: usize, pages: u64) -> Duration {
    let t0 = std::time::Instant::now();
    let r = kernel::run(Config { cpus, ..Config::default() }, move || {
        let hs: Vec<_> = (0..2).map(|_| spawn(TaskBuilder::new("worker"), move || checksum(pages))).collect();
        hs.iter().for_each(|h| {
            h.join().expect("worker ran");
        });
        0
    })
    .expect("kernel boots");
    assert!(r.bugs.is_empty(), "{:?}", r.bugs);
    t0.elapsed()
}

/// The workers' load: checksums `pages` pages of 4 KiB.
fn checksum(pages: u64) -> i64 {
    let page = [0x5au8; 4096];
    let mut sum = 0u64;
    for _ in 0..pages {
        sum = sum.wrapping_add(page.iter().map(|&b| b as u64).sum::<u64>());
        std::hint::black_box(&page);
    }
    (sum & 1) as i64
}

/// The same two loads on host threads: one thread doing both in turn, or two at once (the
/// host's own scaling, the ceiling of the kernel's on this machine).
fn two_host_threads(threads: usize, pages: u64) -> Duration {
    let t0 = std::time::Instant::now();
    if threads == 1 {
        std::hint::black_box(checksum(pages) + checksum(pages));
    } else {
        let hs: Vec<_> = (0..2).map(|_| std::thread::spawn(move || checksum(pages))).collect();
        hs.into_iter().for_each(|h| {
            std::hint::black_box(h.join().expect("worker ran"));
        });
    }
    t0.elapsed()
}

/// One iteration = 2 x 50,000 pages checksummed by two fair tasks, on one CPU and on two (the
/// boot of the instance is in the time too), and the same by host threads.
fn fair_scaling(c: &mut Criterion) {
    for cpus in [1, 2] {
        c.bench_function(&format!("two fair workers, 2x50000 pages, cpus={cpus}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| two_fair_workers(cpus, 50_000)).sum())
        });
    }
    for threads in [1, 2] {
        c.bench_function(&format!("two host loads, 2x50000 pages, threads={threads}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| two_host_threads(threads, 50_000)).sum())
        });
    }
}

/// `iters` null system calls by one SCHED_FIFO task bound to each of `cpus` CPUs, all at once;
/// returns the slowest task's time (what touches memory another CPU writes shows here).
fn null_syscalls_on_each(cpus: usize, iters: u64) -> Duration {
    let r = kernel::run(Config { cpus, ..Config::default() }, move || {
        let hs: Vec<_> = (0..cpus)
            .map(|c| {
                spawn(TaskBuilder::new("sys").fifo(50).cpus(1 << c), move || {
                    let t0 = kernel::time::now_ns();
                    for _ in 0..iters {
                        kernel::syscall(|| std::hint::black_box(0));
                    }
                    (kernel::time::now_ns() - t0) as i64
                })
            })
            .collect();
        hs.iter().map(|h| h.join().expect("task ran")).max().unwrap_or(0)
    })
    .expect("kernel boots");
    Duration::from_nanos(r.init.expect("init ran") as u64)
}

/// One iteration = one null system call on one CPU, and on each of two CPUs at once.
fn syscall_scaling(c: &mut Criterion) {
    for cpus in [1, 2] {
        c.bench_function(&format!("null system call, on each of {cpus} CPU(s) at once"), |b| {
            b.iter_custom(|iters| null_syscalls_on_each(cpus, iters))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = ipi_round_trip, host_cross_core_round_trip, fair_scaling, syscall_scaling
}
criterion_main!(benches);
