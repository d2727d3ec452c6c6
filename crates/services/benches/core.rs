//! Micro-benchmarks of the kernel core's mechanisms, each measured inside a kernel instance,
//! with the host's own thread switch for comparison: task switch, interrupt entry to handler,
//! `preempt_disable`/`enable`, `cond_resched` with nothing pending, a preemption point, and the
//! same switch between host threads. (The patch and restore of one site, a raw arch primitive,
//! is `cargo bench -p atomkernel-arch --bench patch`.)
//!
//! `cargo bench -p atomkernel-services --bench core`

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use kernel::device::Device;
use kernel::{spawn, Config, TaskBuilder};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Runs `body` as a SCHED_FIFO 90 task of a fresh kernel and returns the duration it measured.
fn in_kernel(body: impl FnOnce() -> u64 + Send + 'static) -> Duration {
    let r = kernel::run(Config::default(), move || {
        spawn(TaskBuilder::new("bench").fifo(90), move || body() as i64).join().unwrap_or(0)
    })
    .expect("kernel boots");
    Duration::from_nanos(r.init.expect("bench task ran") as u64)
}

/// One iteration = one switch: two SCHED_FIFO tasks of one priority `sched_yield` in turn.
fn task_switch(c: &mut Criterion) {
    c.bench_function("kernel task switch (sched_yield, FIFO ping-pong)", |b| {
        b.iter_custom(|iters| in_kernel(move || common::task_switches(iters)))
    });
}

/// One iteration = one switch between two host threads pinned to one host CPU, woken in turn
/// through futexes (`thread::park`/`unpark`). Both threads are the bench's own, so no pinning
/// leaks into the benchmarks that follow.
fn host_thread_switch(c: &mut Criterion) {
    c.bench_function("host thread switch (futex ping-pong, one CPU)", |b| {
        b.iter_custom(|iters| {
            let cpu = hostlab::sched::allowed_cpus()[0];
            common::host_ping_pong(cpu, cpu, iters.div_ceil(2))
        })
    });
}

/// One iteration = a task raises its own CPU's device line; the signal is taken on the way
/// out of `tgkill`, the handler runs, `sigreturn` resumes the task.
fn irq_round_trip(c: &mut Criterion) {
    c.bench_function("interrupt round trip (raise, entry, handler, return)", |b| {
        b.iter_custom(|iters| {
            in_kernel(move || {
                let handled = Arc::new(AtomicU64::new(0));
                let h = handled.clone();
                let dev = Device::register("bench", move || {
                    h.fetch_add(1, Ordering::Relaxed);
                });
                let t0 = kernel::time::now_ns();
                for i in 0..iters {
                    dev.raise();
                    while handled.load(Ordering::Relaxed) <= i {}
                }
                kernel::time::now_ns() - t0
            })
        })
    });
}

/// One iteration's time = from just before the raise to the first line of the handler.
fn irq_entry_to_handler(c: &mut Criterion) {
    c.bench_function("interrupt entry to handler (raise -> handler)", |b| {
        b.iter_custom(|iters| {
            in_kernel(move || {
                let at = Arc::new(AtomicU64::new(0));
                let a = at.clone();
                let dev = Device::register("bench", move || {
                    a.store(kernel::time::now_ns(), Ordering::Relaxed);
                });
                let mut total = 0;
                for _ in 0..iters {
                    at.store(0, Ordering::Relaxed);
                    let t0 = kernel::time::now_ns();
                    dev.raise();
                    while at.load(Ordering::Relaxed) == 0 {}
                    total += at.load(Ordering::Relaxed) - t0;
                }
                total
            })
        })
    });
}

/// One iteration = `preempt_disable()` + `preempt_enable()` on a CPU.
fn preempt_pair(c: &mut Criterion) {
    c.bench_function("preempt_disable + preempt_enable", |b| {
        b.iter_custom(|iters| {
            in_kernel(move || {
                let t0 = kernel::time::now_ns();
                for _ in 0..iters {
                    drop(std::hint::black_box(kernel::preempt::preempt_disable()));
                }
                kernel::time::now_ns() - t0
            })
        })
    });
}

/// One iteration = `cond_resched()` in kernel code when nothing is pending: a per-CPU load and
/// test of `need_resched`, no reschedule.
fn cond_resched_idle(c: &mut Criterion) {
    c.bench_function("cond_resched, nothing pending", |b| {
        b.iter_custom(|iters| {
            in_kernel(move || {
                kernel::syscall(|| {
                    let t0 = kernel::time::now_ns();
                    let mut taken = 0u64;
                    for _ in 0..iters {
                        taken += std::hint::black_box(kernel::cond_resched()) as u64;
                    }
                    std::hint::black_box(taken);
                    kernel::time::now_ns() - t0
                })
            })
        })
    });
}

/// One iteration's time = from the device handler (which wakes an RT task) to that RT task
/// running, when the interrupt lands in a user-mode task spinning in its own code: context
/// injection, trampoline (XSAVE), `preempt_schedule_irq`, switch. The device's host thread
/// raises the interrupt, so it lands in the spin loop (a task raising its own interrupt would
/// take it inside libc's `syscall`, foreign code, where preemption waits for the next tick).
fn irq_preemption(c: &mut Criterion) {
    c.bench_function("user-mode preemption: IRQ handler -> RT task running", |b| {
        b.iter_custom(|iters| {
            in_kernel(move || {
                let wq = Arc::new(kernel::WaitQueue::new());
                let irq_at = Arc::new(AtomicU64::new(0));
                let (w, a) = (wq.clone(), irq_at.clone());
                let dev = Arc::new(Device::register("bench", move || {
                    a.store(kernel::time::now_ns(), Ordering::Release);
                    w.wake_up();
                }));
                let (total, served, stop) =
                    (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
                let (w, a, t, s, st) = (wq.clone(), irq_at.clone(), total.clone(), served.clone(), stop.clone());
                let rt = spawn(TaskBuilder::new("rt").fifo(50), move || loop {
                    w.wait_event(|| a.load(Ordering::Acquire) != 0 || st.load(Ordering::Acquire));
                    if st.load(Ordering::Acquire) {
                        return 0;
                    }
                    t.fetch_add(kernel::time::now_ns() - a.swap(0, Ordering::AcqRel), Ordering::Relaxed);
                    s.fetch_add(1, Ordering::AcqRel);
                });
                let (s, d) = (served.clone(), dev.clone());
                let user = spawn(TaskBuilder::new("user").fifo(10), move || {
                    for i in 0..iters {
                        d.raise_at(kernel::time::now_ns() + 20_000);
                        while s.load(Ordering::Acquire) <= i {}
                    }
                    0
                });
                let _ = user.join();
                stop.store(true, Ordering::Release);
                wq.wake_up();
                let _ = rt.join();
                total.load(Ordering::Relaxed)
            })
        })
    });
}

/// One iteration = a preemption point in kernel code with nothing pending, under `model`: a
/// 5-byte NOP (`none`), or the patched call of the point hook (`voluntary`).
fn point_cost(c: &mut Criterion, model: kernel::PreemptModel) {
    c.bench_function(&format!("preemption point, nothing pending (preempt={model})"), |b| {
        b.iter_custom(|iters| {
            let cfg = Config { preempt: model, ..Config::default() };
            let r = kernel::run(cfg, move || {
                spawn(TaskBuilder::new("bench").fifo(90), move || {
                    kernel::syscall(|| {
                        let t0 = kernel::time::now_ns();
                        for _ in 0..iters {
                            kernel::preempt_point!();
                        }
                        (kernel::time::now_ns() - t0) as i64
                    })
                })
                .join()
                .unwrap_or(0)
            })
            .expect("kernel boots");
            Duration::from_nanos(r.init.expect("bench task ran") as u64)
        })
    });
}

fn points(c: &mut Criterion) {
    point_cost(c, kernel::PreemptModel::None);
    point_cost(c, kernel::PreemptModel::Voluntary);
    point_cost(c, kernel::PreemptModel::PatchInt3);
    point_cost(c, kernel::PreemptModel::PatchCall);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = task_switch, host_thread_switch, irq_round_trip, irq_entry_to_handler, preempt_pair, cond_resched_idle, irq_preemption, points
}
criterion_main!(benches);
