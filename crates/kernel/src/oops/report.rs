//! Oops, soft-lockup and panic reports: formatted and symbolized on the host side.
//!
//! **Mechanism.** CPUs queue raw reports (`OopsState::push`) and wake the host thread that
//! waits in [`crate::run`] ([`supervise`]). That thread formats each one as Linux prints it,
//! symbolizing every address with `Arch::symbolize` (`function+offset/size at file:line`),
//! writes it to stderr and the printk log, and keeps it for the `RunReport`; it also runs the
//! hung-task scan (`crate::hung`). When a CPU panics, the thread waits (bounded) for every
//! CPU to stop, prints the panic, the report that caused it and the printk log, and returns
//! the error from `run`.
//!
//! **Invariant.** No CPU thread ever symbolizes or waits for this thread; this thread takes
//! no lock a stopped CPU could hold on the panic path (the record is written before the panic
//! is published, and the printk log is read without a lock).

use super::state::{LockupRecord, OopsRecord, OopsReport, Report};
use crate::arch::{Arch, Symbol, A, GP_NAMES};
use crate::instance::{BootError, Kernel};
use alloc::sync::Arc;
use alloc::{format, string::String, string::ToString, vec::Vec};
use core::fmt::Write as _;
use core::sync::atomic::Ordering;

/// Frames of the panic machinery above the code that panicked, left out of a panic's trace.
const PANIC_PLUMBING: [&str; 7] =
    ["std::", "core::", "rust_begin_unwind", "__rustc", "kernel::oops::", "arch::fault::", "<alloc::boxed::Box"];

fn symbols(trace: &[usize], skip_plumbing: bool) -> Vec<Symbol> {
    let all = trace.iter().enumerate().map(|(i, &ip)| A::symbolize(ip, i > 0));
    let plumbing = |s: &Symbol| s.function.as_deref().is_some_and(|f| PANIC_PLUMBING.iter().any(|p| f.starts_with(p)));
    if skip_plumbing {
        all.skip_while(plumbing).collect()
    } else {
        all.collect()
    }
}

/// The first frame in the program's own code with a source line: where a report points.
fn place(frames: &[Symbol]) -> Option<&Symbol> {
    frames.iter().find(|s| A::text_contains(s.addr) && s.line.is_some()).or(frames.first())
}

fn write_trace(out: &mut String, frames: &[Symbol]) {
    out.push_str("Call Trace:\n");
    for s in frames {
        let _ = writeln!(out, " {s}");
    }
}

fn format_oops(n: u64, r: &OopsRecord) -> OopsReport {
    let what = String::from_utf8_lossy(r.what.as_bytes()).into_owned();
    let task = String::from_utf8_lossy(r.name.as_bytes()).into_owned();
    let frames = symbols(&r.trace[..r.depth], !r.full_regs);
    let rip = place(&frames).map_or_else(|| format!("{:#x}", r.regs.rip), |s| s.to_string());
    let mut text = String::new();
    let _ = writeln!(text, "Oops: {what} [#{n}]");
    let _ = writeln!(
        text,
        "CPU: {} PID: {} Comm: {task} preempt_count: {:#x} IRQs {}",
        r.cpu,
        r.pid,
        r.preempt_count,
        if r.irqs_off { "off" } else { "on" }
    );
    let _ = writeln!(text, "RIP: {rip}");
    let _ = writeln!(text, "RSP: {:#018x} EFLAGS: {:#010x}", r.regs.rsp, r.regs.rflags);
    if r.full_regs {
        for (i, chunk) in GP_NAMES.chunks(3).enumerate() {
            let line: Vec<String> =
                chunk.iter().enumerate().map(|(j, n)| format!("{n}: {:#018x}", r.regs.gp[i * 3 + j])).collect();
            let _ = writeln!(text, "{}", line.join(" "));
        }
    } else {
        let _ =
            writeln!(text, "RBP: {:#018x} (a Rust panic: the other registers are the panic path's own)", r.regs.rbp());
    }
    write_trace(&mut text, &frames);
    let _ = writeln!(text, "---[ end trace ]---");
    OopsReport { pid: r.pid, task, cpu: r.cpu, what, rip, text }
}

fn format_lockup(k: &Kernel, r: &LockupRecord) -> String {
    let frames = symbols(&r.trace[..r.depth], false);
    let mut text = format!(
        "BUG: soft lockup - CPU#{} stuck for {}ms! [{}:{}] (softlockup_thresh_ms={})\n",
        r.cpu,
        r.stuck_ms,
        String::from_utf8_lossy(r.name.as_bytes()),
        r.pid,
        k.config.watchdog.softlockup_thresh_ms
    );
    match place(&frames) {
        Some(s) => {
            let _ = writeln!(text, "RIP: {s}");
        }
        None => text.push_str("RIP: unknown (the tick was replayed, not taken from the running code)\n"),
    }
    write_trace(&mut text, &frames);
    text
}

/// Prints `text` on stderr and into the printk log, line by line.
fn emit(k: &Kernel, text: &str) {
    A::console_write(2, text.as_bytes());
    for line in text.lines() {
        crate::printk::printk_str(k, line);
    }
}

/// Formats and prints every queued report.
pub(crate) fn drain(k: &Kernel) {
    for r in k.oops.take_pending() {
        match r {
            Report::Oops(o) => {
                let n = k.oops.reports.lock().len() as u64 + 1;
                let rep = format_oops(n, &o);
                emit(k, &rep.text);
                k.oops.reports.lock().push(rep);
            }
            Report::SoftLockup(l) => {
                let text = format_lockup(k, &l);
                emit(k, &text);
                k.bug_text(text.lines().next().unwrap_or_default().to_string() + &place_suffix(&text));
            }
        }
    }
}

/// The `RIP:` line of a report, appended to its headline for the `BUG:` list.
fn place_suffix(text: &str) -> String {
    text.lines().find_map(|l| l.strip_prefix("RIP: ")).map(|p| format!(" at RIP {p}")).unwrap_or_default()
}

/// How long the host side waits for the other CPUs to stop after a panic.
const STOP_PATIENCE_NS: u64 = 1_000_000_000;

/// The host side of a running instance: reports, the hung-task scan, and the panic. Returns
/// when CPU 0's thread has finished (its result) or the kernel panicked (an error).
pub(crate) fn supervise(k: &Arc<Kernel>, cpu0: <A as Arch>::CpuThread<Result<(), BootError>>) -> Result<(), BootError> {
    let _ = k.oops.supervisor.set(A::supervisor_handle());
    let mut hung = crate::hung::HungTasks::new(k);
    loop {
        if k.oops.panic_record().is_some() {
            return Err(report_panic(k));
        }
        drain(k);
        if k.oops.cpu0_done.load(Ordering::Acquire) || A::cpu_finished(&cpu0) {
            let r = A::join_cpu(cpu0).map_err(|_| BootError::Host("the CPU thread panicked".into()))?;
            drain(k);
            return r;
        }
        if let Some(reason) = hung.scan(k) {
            crate::oops::panic_from_host(k, &reason);
            continue;
        }
        A::supervisor_sleep(hung.period().as_nanos() as u64);
    }
}

fn report_panic(k: &Kernel) -> BootError {
    let t0 = A::now_ns();
    let online = k.online.load(Ordering::Acquire);
    while k.oops.stopped.load(Ordering::Acquire) & online != online && A::now_ns() - t0 < STOP_PATIENCE_NS {
        A::supervisor_sleep(5_000_000);
    }
    drain(k);
    let p = k.oops.panic_record().expect("the panic was published");
    let reason = String::from_utf8_lossy(p.reason.as_bytes()).into_owned();
    let mut text = String::new();
    let mut summary = reason.clone();
    match p.cause {
        Some(Report::Oops(o)) => {
            let rep = format_oops(k.oops.reports.lock().len() as u64 + 1, &o);
            text.push_str(&rep.text);
            summary = format!("{reason}: {} in task '{}' (pid {})", rep.what, rep.task, rep.pid);
        }
        Some(Report::SoftLockup(l)) => {
            let lockup = format_lockup(k, &l);
            summary = format!("{reason}: {}", lockup.lines().next().unwrap_or_default());
            text.push_str(&lockup);
        }
        None => {}
    }
    let stopped = k.oops.stopped.load(Ordering::Acquire);
    let _ = writeln!(text, "Kernel panic - not syncing: {summary}");
    if stopped & online != online {
        let _ = writeln!(text, "CPUs that did not stop (running with IRQs masked): {:#x}", online & !stopped);
    }
    let _ = writeln!(text, "--- printk log ---\n{}", k.printk.drain().trim_end());
    let _ = writeln!(text, "---[ end Kernel panic - not syncing: {reason} ]---");
    A::console_write(2, text.as_bytes());
    BootError::Panic(summary)
}
