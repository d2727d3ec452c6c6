//! The image's fault scenarios: a hardware fault in a task kills that task with an oops and
//! the others run on; a fault in interrupt context is a kernel panic.
//!
//! **Mechanism.** `image.run=fault`: the init starts [`WORKERS`] tasks that each sleep 1 ms
//! [`WORKER_ROUNDS`] times and return their own number, and four tasks that sleep 5 ms (so
//! the workers are mid-run) and then fault: `pf` reads the NULL page (a `#PF` at 0x8), `ud`
//! runs `ud2` (`#UD`), `de` divides by zero with `div` (`#DE`), `gp` reads at a
//! non-canonical address (`#GP`). The machine's fault entry
//! (`arch_metal::fault`) hands each fault to the core, which kills the task; its joiner gets
//! the oops error. The init checks that each faulting task's join is an `oops:` error naming
//! its fault and that every worker returned its number, one JSON line per task
//! (`{"test":"fault",...}`), and returns the failed checks. `image.run=fault-smp` (with
//! `cpus=2` and QEMU's `-smp 2`) is the same with the faulting tasks bound to CPU 1 and the
//! workers to CPU 0 (each worker checks it ran there). `image.run=stack-overflow`: one task
//! recurses into the guard page below its stack; its join must be an oops naming the stack
//! overflow, and a worker beside it finishes. `image.run=fault-irq`: a device's handler runs
//! `ud2` in hard-IRQ context: the core panics, the machine exits with status PANIC, and the
//! init's `{"test":"fault_irq","survived":true}` line is never printed.
//! `image.run=fault-irqs-off`: a task takes a `#UD` with IRQs disabled: also the core's panic.
//!
//! **Invariant.** Every line is valid JSON; an init returns 0 only if only the faulting tasks
//! died, each of the fault it was made to take.

use crate::scenarios::escape;
use alloc::vec::Vec;
use arch_metal::kprintln;
use kernel::{BhMode, PreemptModel, TaskBuilder, TaskHandle};

/// Tasks that keep running while the others fault.
const WORKERS: i64 = 3;
/// The 1 ms sleeps of each worker.
const WORKER_ROUNDS: u64 = 20;
/// When the faulting tasks fault, after their start.
const FAULT_AFTER_NS: u64 = 5_000_000;

/// A fault to take.
#[derive(Clone, Copy)]
enum Kind {
    /// A read of the NULL page.
    PageFault,
    /// `ud2`.
    InvalidOpcode,
    /// `div` by zero.
    DivideError,
    /// A read at a non-canonical address.
    GeneralProtection,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::PageFault, Kind::InvalidOpcode, Kind::DivideError, Kind::GeneralProtection];

    fn task(self) -> &'static str {
        match self {
            Kind::PageFault => "pf",
            Kind::InvalidOpcode => "ud",
            Kind::DivideError => "de",
            Kind::GeneralProtection => "gp",
        }
    }

    /// What the oops names (`Fault::what`, as the machine's fault entry says it).
    fn what(self) -> &'static str {
        match self {
            Kind::PageFault => "kernel NULL pointer dereference at 0x8",
            Kind::InvalidOpcode => "invalid opcode",
            Kind::DivideError => "divide error",
            Kind::GeneralProtection => "general protection fault",
        }
    }

    /// Takes the fault; returns only if the hardware did not fault.
    fn take(self) -> i64 {
        let v: u64;
        match self {
            // SAFETY: reads the quadword at 0x8, in the NULL page, which no table maps: the
            // read faults (that is the point) and never completes.
            Kind::PageFault => unsafe {
                core::arch::asm!("mov {v}, qword ptr [{a}]", a = in(reg) core::hint::black_box(8u64), v = out(reg) v, options(nostack, readonly))
            },
            // SAFETY: `ud2` raises #UD; it touches nothing.
            Kind::InvalidOpcode => unsafe {
                core::arch::asm!("ud2", "xor {v:e}, {v:e}", v = out(reg) v, options(nomem, nostack))
            },
            // SAFETY: an unsigned division of rdx:rax = 1 by zero raises #DE; it touches no memory.
            Kind::DivideError => unsafe {
                core::arch::asm!("xor edx, edx", "div {d}", d = in(reg) core::hint::black_box(0u64),
                    inout("rax") 1u64 => v, out("rdx") _, options(nomem, nostack))
            },
            // SAFETY: reads at a non-canonical address, which raises #GP before any access.
            Kind::GeneralProtection => unsafe {
                core::arch::asm!("mov {v}, qword ptr [{a}]", a = in(reg) core::hint::black_box(0x8000_0000_0000_0000u64), v = out(reg) v, options(nostack, readonly))
            },
        }
        v as i64
    }
}

/// Starts the workers, each bound to `cpus` (0: anywhere).
fn workers(cpus: u64) -> Vec<TaskHandle> {
    (0..WORKERS)
        .map(|i| {
            let b = TaskBuilder::new(&alloc::format!("worker{i}"));
            let b = if cpus != 0 { b.cpus(cpus) } else { b };
            kernel::spawn(b, move || {
                for _ in 0..WORKER_ROUNDS {
                    kernel::time::sleep_ns(1_000_000);
                }
                if cpus != 0 && cpus & (1 << kernel::smp_processor_id()) == 0 {
                    return -1;
                }
                i
            })
        })
        .collect()
}

/// Joins the workers: true if each returned its number; one line each.
fn workers_finished(workers: Vec<TaskHandle>) -> bool {
    let mut ok = true;
    for (i, w) in workers.into_iter().enumerate() {
        let r = w.join();
        let fine = r == Ok(i as i64);
        kprintln!(
            "{{\"test\":\"fault\",\"task\":\"worker{i}\",\"result\":\"{}\",\"ok\":{fine}}}",
            escape(&alloc::format!("{r:?}"))
        );
        ok &= fine;
    }
    ok
}

/// Joins a faulting task: true if it died of an oops naming `what`; one line.
fn died_of(name: &str, t: &TaskHandle, what: &str) -> bool {
    let r = t.join();
    let ok = matches!(&r, Err(e) if e.starts_with("oops: ") && e.contains(what) && e.contains(name));
    kprintln!(
        "{{\"test\":\"fault\",\"task\":\"{name}\",\"expected\":\"{}\",\"result\":\"{}\",\"ok\":{ok}}}",
        escape(what),
        escape(&alloc::format!("{r:?}"))
    );
    ok
}

fn faults_beside_workers(faulting_cpus: u64, worker_cpus: u64) -> i64 {
    let workers = workers(worker_cpus);
    let faulting: Vec<(Kind, TaskHandle)> = Kind::ALL
        .into_iter()
        .map(|k| {
            let b = TaskBuilder::new(k.task());
            let b = if faulting_cpus != 0 { b.cpus(faulting_cpus) } else { b };
            (
                k,
                kernel::spawn(b, move || {
                    kernel::time::sleep_ns(FAULT_AFTER_NS);
                    k.take()
                }),
            )
        })
        .collect();
    let died = faulting.into_iter().filter(|(k, t)| died_of(k.task(), t, k.what())).count();
    let finished = workers_finished(workers);
    (Kind::ALL.len() - died) as i64 + i64::from(!finished)
}

/// `image.run=fault`: four tasks fault, three workers finish (see the module's description).
pub(crate) fn init(_model: PreemptModel, _bh: BhMode) -> i64 {
    faults_beside_workers(0, 0)
}

/// `image.run=fault-smp`: the same, the faulting tasks on CPU 1, the workers on CPU 0.
pub(crate) fn init_smp(_model: PreemptModel, _bh: BhMode) -> i64 {
    faults_beside_workers(0b10, 0b01)
}

/// `image.run=stack-overflow`: a task recurses into its guard page and dies of an oops naming
/// the stack overflow, as on the host; a worker beside it finishes.
pub(crate) fn stack_overflow(_model: PreemptModel, _bh: BhMode) -> i64 {
    fn recurse(depth: u64) -> u64 {
        if core::hint::black_box(depth) == u64::MAX {
            return 0;
        }
        let frame = core::hint::black_box([depth; 64]);
        recurse(depth + 1) + frame[0]
    }
    let workers = workers(0);
    let t = kernel::spawn(TaskBuilder::new("overflow"), || recurse(0) as i64);
    let died = died_of("overflow", &t, "kernel stack overflow (guard page hit)");
    let finished = workers_finished(workers);
    i64::from(!died) + i64::from(!finished)
}

/// `image.run=fault-irqs-off`: a task takes a `#UD` with IRQs disabled: the core's panic
/// ("Fatal exception with IRQs disabled"), as on the host, before the init's line.
pub(crate) fn irqs_off(_model: PreemptModel, _bh: BhMode) -> i64 {
    let t = kernel::spawn(TaskBuilder::new("irqs-off"), || {
        arch_metal::irq::local_irq_disable();
        Kind::InvalidOpcode.take()
    });
    let r = t.join();
    kprintln!("{{\"test\":\"fault_irqs_off\",\"survived\":true,\"result\":\"{}\"}}", escape(&alloc::format!("{r:?}")));
    1
}

/// `image.run=fault-irq`: a device's handler takes a `#UD` in hard-IRQ context: the core's
/// panic ends the machine before the init's line.
pub(crate) fn in_irq(_model: PreemptModel, _bh: BhMode) -> i64 {
    let dev = kernel::device::Device::register("faulty-dev", || {
        Kind::InvalidOpcode.take();
    });
    dev.raise();
    kprintln!("{{\"test\":\"fault_irq\",\"survived\":true}}");
    1
}
