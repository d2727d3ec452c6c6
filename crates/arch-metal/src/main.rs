//! The bare-metal image: the kernel core on the machine of [`arch_metal`] (one CPU).
//!
//! **Mechanism.** Built by `cargo rustc --features image` with `-C panic=abort` (see
//! docs/BAREMETAL.md); QEMU enters it at `metal_pvh_start`, the machine comes up
//! (`arch_metal::metal_rust_entry`) and, unless the command line asks for a self-test fault
//! (`fault=`), calls [`metal_image_main`] with the QEMU `-append` command line. That parses a
//! `kernel::Config` with the core's own boot-option parser, runs `kernel::run` with an init
//! that checks the scenarios of [`scenarios`], prints one JSON line per result on COM1, and
//! exits through `isa-debug-exit`: `SUCCESS` when every check held and every task finished,
//! `FAILED` otherwise (a refused configuration prints `{"boot_error": ...}` first). Words of
//! the command line starting with `image.` are the image's: `image.run=panic` runs a task
//! that panics instead of the scenarios, `image.run=smp` the SMP scenario, `image.run=device`
//! the device timer's ([`device`]), and `image.run=fault`, `fault-smp`, `fault-irq`,
//! `fault-irqs-off` and `stack-overflow` the fault scenarios of [`faults`] (a task's oops; a
//! fault in interrupt context), `image.run=lab` the bare-metal lab ([`lab`]),
//! `image.run=bound-check` the static bound checked against every sample and
//! `bound-calibrate` its gate constant ([`bound_check`]). Each oops of the run is one
//! `{"test":"oops",...}` line; one `device_irqs` line gives the device's source and its
//! interrupts per CPU (`arch_metal::hpet::report`); one `sync_core` line the `SYNC_CORE`
//! rounds `patch_sync=ipi` made (the arch's NMI rounds, and the rounds the core counted from
//! the patcher's answers), a round's mean time and the NMIs that found no round.
//!
//! **Invariant.** A panic prints `PANIC: ...` on the serial console (after the core's panic
//! hook) and exits QEMU with `exit_codes::PANIC`: it never unwinds.
#![no_std]
#![no_main]

extern crate alloc;

mod bound_check;
mod device;
mod faults;
mod lab;
mod options;
mod scenarios;
mod smp;
mod softirq_stack;
mod torture;

use arch_metal::{exit_codes, kprintln, serial};

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    arch_metal::panic(info)
}

/// What runs as the init of the image's kernel.
type Init = fn(kernel::PreemptModel, kernel::BhMode) -> i64;

/// Every `image.run=` value and its init, in the order the refusal lists them.
const RUNS: &[(&str, Init)] = &[
    ("scenarios", scenarios::init),
    ("panic", scenarios::task_panic),
    ("smp", smp::init),
    ("device", device::init),
    ("stack-overflow", faults::stack_overflow),
    ("fault", faults::init),
    ("fault-smp", faults::init_smp),
    ("fault-irq", faults::in_irq),
    ("fault-irqs-off", faults::irqs_off),
    ("softirq-stack", softirq_stack::init),
    ("lab", lab::init),
    ("bound-check", bound_check::init),
    ("bound-calibrate", bound_check::calibrate),
];

/// The image's main (see the crate's description); the machine calls it once, on CPU 0.
#[no_mangle]
pub(crate) fn metal_image_main(cmdline: &str) -> ! {
    // `image.*` words are the image's own (which init to run); the rest is the core's.
    let kernel_words: alloc::vec::Vec<&str> = cmdline.split_whitespace().filter(|w| !w.starts_with("image.")).collect();
    let run = arch_metal::boot::cmdline_value(cmdline, "image.run").unwrap_or("scenarios");
    let config = match kernel::Config::from_cmdline(&kernel_words.join(" ")) {
        Ok(c) => c,
        Err(e) => {
            kprintln!("{{\"boot_error\":\"{}\"}}", scenarios::escape(&e.0));
            serial::exit(exit_codes::FAILED)
        }
    };
    let (model, bh) = (config.preempt, config.bh);
    let (switch_min, switch_mean) = arch_metal::switch::bench_switch(1000);
    kprintln!("{{\"test\":\"switch_cycles\",\"rounds\":1000,\"min\":{switch_min},\"mean\":{switch_mean}}}");
    let t0 = arch_metal::cpu::rdtsc();
    let faults = run.starts_with("fault") || run == "stack-overflow";
    // the runs with options of their own check them before any task runs
    match run {
        "lab" => lab::configure(cmdline, &config),
        "bound-check" => bound_check::configure(cmdline, &config),
        _ => {}
    }
    if run.starts_with("bound-") {
        // the gate's account of every interrupt, which the bound check subtracts; enabled
        // here, in the boot context before any task or AP runs (`account::enable`)
        arch_metal::account::enable();
    }
    let Some(&(_, init)) = RUNS.iter().find(|(name, _)| *name == run) else {
        let names: alloc::vec::Vec<&str> = RUNS.iter().map(|(name, _)| *name).collect();
        kprintln!("{{\"boot_error\":\"image.run={}: use one of {}\"}}", scenarios::escape(run), names.join(", "));
        serial::exit(exit_codes::FAILED)
    };
    match kernel::run(config, move || init(model, bh)) {
        Ok(report) => {
            let finished = report.tasks.iter().filter(|t| matches!(t.result, Some(Ok(_)))).count();
            let total = report.tasks.len();
            let (n, mean, min, nested) = arch_metal::stats::irq_figures();
            kprintln!(
                "{{\"test\":\"run\",\"init\":{},\"tasks\":{total},\"finished\":{finished},\"jiffies\":{},\
                 \"switches\":{},\"irqs\":{},\"bugs\":{},\"tsc_cycles\":{}}}",
                match &report.init {
                    Ok(v) => *v,
                    Err(_) => -1,
                },
                report.jiffies,
                report.switches,
                report.irqs,
                report.bugs.len(),
                arch_metal::cpu::rdtsc() - t0
            );
            kprintln!("{{\"test\":\"irq_hook_cycles\",\"count\":{n},\"mean\":{mean},\"min\":{min},\"nested\":{nested},\"irqs_on_windows\":{}}}", arch_metal::stats::irqs_on_windows());
            let (tn, tmean, tmin) = arch_metal::idt::tick_path_cycles();
            kprintln!("{{\"test\":\"tick_path_cycles\",\"count\":{tn},\"mean\":{tmean},\"min\":{tmin}}}");
            for (i, c) in report.cpus.iter().enumerate() {
                kprintln!(
                    "{{\"test\":\"cpu\",\"cpu\":{i},\"irqs\":{},\"switches\":{},\"ipis_sent\":{},\"ipis_received\":{}}}",
                    c.irqs,
                    c.switches,
                    c.ipis_sent,
                    c.ipis_received
                );
            }
            for o in &report.oopses {
                let (task, what, rip) =
                    (scenarios::escape(&o.task), scenarios::escape(&o.what), scenarios::escape(&o.rip));
                kprintln!("{{\"test\":\"oops\",\"pid\":{},\"task\":\"{task}\",\"cpu\":{},\"what\":\"{what}\",\"rip\":\"{rip}\"}}", o.pid, o.cpu);
            }
            kprintln!("{{\"test\":\"device_irqs\",{}}}", arch_metal::hpet::report(report.cpus.len() as u32));
            let (rounds, cycles, stray) = arch_metal::sync_core::counts();
            let (core_rounds, per_round) = (report.patch.sync_rounds, cycles.checked_div(rounds).unwrap_or(0));
            kprintln!(
                "{{\"test\":\"sync_core\",\"rounds\":{rounds},\"core_rounds\":{core_rounds},\
                 \"cycles_per_round\":{per_round},\"stray_nmis\":{stray}}}"
            );
            for b in &report.bugs {
                kprintln!("{{\"bug\":\"{}\"}}", scenarios::escape(b));
            }
            // A fault scenario's tasks killed by their oopses are accounted for; elsewhere an oops fails the run.
            let oopsed = if faults { report.oopses.len() } else { 0 };
            let ok = report.init == Ok(0) && finished + oopsed == total && report.bugs.is_empty();
            serial::exit(if ok { exit_codes::SUCCESS } else { exit_codes::FAILED })
        }
        Err(kernel::BootError::Panic(summary)) => {
            // the core's supervisor printed its report (CPU 0 came back to it: `park_forever`)
            kprintln!("{{\"panic\":\"{}\"}}", scenarios::escape(&summary));
            serial::exit(exit_codes::PANIC)
        }
        Err(e) => {
            kprintln!("{{\"boot_error\":\"{}\"}}", scenarios::escape(&alloc::format!("{e}")));
            serial::exit(exit_codes::FAILED)
        }
    }
}
