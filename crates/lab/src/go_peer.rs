//! The Go runtime peer, `peer:go`: the lab's workloads in a Go program at `GOMAXPROCS=N`.
//!
//! **Mechanism.** `build.rs` builds `peers/go/peer.go` when a Go toolchain is present, and
//! this module embeds the program ([`BUILT`] says whether there is one). A run writes the
//! program (and, for `loader`, the image [`loader::build_image`] makes) into a fresh private
//! directory, starts it from a host thread that has first taken the [`CpuPolicy`] (a child
//! inherits the nice value of the thread that forks it, and the runtime's threads inherit the
//! child's), reads its records into [`LatencyHist`]s and a [`RunOut`], and removes the
//! directory. Inside the program (its own docs say more): `GOMAXPROCS` = the kernel
//! instances' CPUs (`-procs`); a worker goroutine per P runs the atoms back to back and never
//! yields, so only the runtime preempts it (sysmon,
//! after 10 ms: a poisoned stack guard met in the next function prologue, and a signal that
//! injects a call of `asyncPreempt`); each probe is a goroutine sleeping to periodic
//! deadlines. The program starts its clock after its set-up (image read, buffers allocated),
//! so the process's start-up is not measured. The directory and the process are registered
//! with [`crate::cleanup`], so a command killed by a signal removes and kills them too.
//!
//! **Invariant.** A figure comes only from a run that exited 0 within its time limit and
//! whose output parsed completely (every deadline of every probe sampled, one worker record);
//! anything else is an error carrying the program's stderr.

use crate::cleanup;
use crate::measure::{self, CpuPolicy, ProbeSpec, RunOut};
use crate::stats::LatencyHist;
use services::loader;
use services::workloads::Workload;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The program `build.rs` built: empty when it did not.
static PROGRAM: &[u8] = include_bytes!(env!("ATOMKERNEL_GO_PEER"));

/// Whether this build has the Go peer.
pub const BUILT: bool = option_env!("ATOMKERNEL_GO_PEER_MISSING").is_none();

/// What to do about a missing peer.
const FIX: &str = "install Go 1.19 or newer (Debian: apt-get install golang-go; .ci/run does it where it is missing) and rebuild atomkernel with GO=$(command -v go) in the environment";

/// Why the peer is not built, and the fix (for an error when it is asked for, and the note when
/// every peer is).
pub fn not_built() -> String {
    let why = option_env!("ATOMKERNEL_GO_PEER_MISSING").unwrap_or("it is built");
    format!("the Go runtime peer (peer:go) is not built into this atomkernel: {why}; {FIX}")
}

/// A private directory for one run's program and image, removed when dropped (and by
/// [`cleanup::undo_all`] on a signal).
struct Scratch(PathBuf, #[allow(dead_code)] cleanup::Registered);

impl Scratch {
    fn new() -> Result<Scratch, String> {
        use std::os::unix::fs::DirBuilderExt;
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("atomkernel-go-peer-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let registered =
            cleanup::create_dir(&dir, |d| std::fs::DirBuilder::new().mode(0o700).create(d)).map_err(|e| {
                format!("peer:go: cannot create {}: {e} (set TMPDIR to a writable directory)", dir.display())
            })?;
        Ok(Scratch(dir, registered))
    }

    /// Writes `bytes` to `name` in the directory, with `mode`.
    fn write(&self, name: &str, bytes: &[u8], mode: u32) -> Result<PathBuf, String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.0.join(name);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&path);
        let r = f.as_mut().map_err(|e| e.to_string()).and_then(|f| f.write_all(bytes).map_err(|e| e.to_string()));
        r.map_err(|e| format!("peer:go: cannot write {}: {e} (set TMPDIR to a writable directory)", path.display()))?;
        Ok(path)
    }

    /// The embedded program, written out, and the image of `loader_kib` KiB if any.
    fn program(&self, loader_kib: Option<usize>) -> Result<(PathBuf, Option<PathBuf>), String> {
        if !BUILT || PROGRAM.is_empty() {
            return Err(format!("peer:go: {}", not_built()));
        }
        let exe = self.write("atomkernel-go-peer", PROGRAM, 0o700)?;
        let image = loader_kib.map(|kib| self.write("module.aout", loader::build_image(kib).bytes_mut(), 0o600));
        Ok((exe, image.transpose()?))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `workload` (if any) on `cpus` worker goroutines and each of `probes` `cpus` times, for
/// `ns` nanoseconds in the Go program at `GOMAXPROCS=cpus`; returns the figures and how the
/// host and the runtime scheduled them.
pub fn run(
    workload: Option<Workload>,
    probes: &[ProbeSpec],
    ns: u64,
    cpu: CpuPolicy,
    cpus: usize,
) -> Result<(RunOut, String), String> {
    let probes: Vec<ProbeSpec> = measure::layout(probes, cpus).into_iter().map(|(_, p)| p).collect();
    let probes = &probes[..];
    let scratch = Scratch::new()?;
    let kib = workload.filter(|w| w.name() == "loader").map(|w| w.size);
    let (exe, image) = scratch.program(kib)?;
    let mut cmd = Command::new(exe);
    cmd.arg(format!("-ns={ns}")).arg(format!("-procs={cpus}"));
    let intervals: Vec<String> = probes.iter().map(|p| p.interval_ns.to_string()).collect();
    cmd.arg(format!("-probes={}", intervals.join(",")));
    if let Some(w) = workload {
        cmd.arg(format!("-workload={}", w.name())).arg(format!("-size={}", w.size));
    }
    if let Some(image) = image {
        cmd.arg("-image").arg(image);
    }
    // The child inherits the nice value of the thread that forks it.
    let limit = Duration::from_nanos(ns.saturating_mul(2)) + Duration::from_secs(60);
    let (out, policy) = std::thread::spawn(move || {
        let policy = cpu.apply();
        (output(cmd, limit), policy)
    })
    .join()
    .map_err(|_| "peer:go: the thread that runs the program panicked".to_string())?;
    let (out, err) = out?;
    let stderr = if err.is_empty() { "(empty)" } else { err.as_str() };
    let (run, version, procs) = parse(&out, probes, ns).map_err(|e| format!("{e}; its stderr: {stderr}"))?;
    if workload.is_some() && run.units == 0 {
        return Err("peer:go: the worker did no work (lengthen the run)".into());
    }
    if procs as usize != cpus {
        return Err(format!("peer:go: the program ran at GOMAXPROCS={procs}, asked for {cpus}"));
    }
    let workers = if cpus > 1 { format!("{cpus} workers") } else { "worker".into() };
    let policy = format!(
        "GOMAXPROCS={procs}, {version}; {workers}: atoms back to back, preempted by the runtime (sysmon, 10 ms); process: {policy}"
    );
    Ok((run, policy))
}

/// The program's `-selftest` output for workloads of `size` and a loader image of `kib` KiB:
/// what one call of each computes (see `peer.go`), for a test to compare with the Rust atoms.
pub fn selftest(size: usize, kib: usize) -> Result<String, String> {
    let scratch = Scratch::new()?;
    let (exe, image) = scratch.program(Some(kib))?;
    let mut cmd = Command::new(exe);
    cmd.arg("-selftest").arg(format!("-size={size}")).arg("-image").arg(image.unwrap_or_default());
    output(cmd, Duration::from_secs(60)).map(|(out, _)| out)
}

/// Runs `cmd` to its end (killed after `limit`); its stdout and stderr, or an error with its
/// stderr.
fn output(mut cmd: Command, limit: Duration) -> Result<(String, String), String> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let (child_arc, _registered) = spawn(&mut cmd)?;
    let mut child = child_lock(&child_arc);
    let pipe = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.map(|mut r| r.read_to_end(&mut buf));
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = pipe(child.stdout.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let stderr = pipe(child.stderr.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    drop(child);
    let t0 = Instant::now();
    let status = loop {
        let mut child = child_lock(&child_arc);
        match child.try_wait() {
            Ok(Some(s)) => break Ok(s),
            Ok(None) if t0.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("did not finish within {} s and was killed", limit.as_secs()));
            }
            Ok(None) => {
                drop(child);
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => break Err(format!("cannot wait for it: {e}")),
        }
    };
    let (out, err) = (stdout.join().unwrap_or_default(), stderr.join().unwrap_or_default());
    let err = err.trim().to_string();
    match status {
        Ok(s) if s.success() => Ok((out, err)),
        Ok(s) => Err(format!("peer:go: the Go program failed ({s}): {err}")),
        Err(e) => Err(format!("peer:go: the Go program {e}; its stderr: {err}")),
    }
}

fn child_lock(c: &Mutex<Child>) -> MutexGuard<'_, Child> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

/// Spawns `cmd` (registered with [`cleanup`]), retrying while the kernel says the
/// just-written program is busy (ETXTBSY: another thread of this process forked while its
/// file was open for writing).
fn spawn(cmd: &mut Command) -> Result<(Arc<Mutex<Child>>, cleanup::Registered), String> {
    const ETXTBSY: i32 = 26;
    let mut tries = 0;
    loop {
        match cleanup::spawn(cmd) {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            r => return r.map_err(|e| format!("peer:go: cannot start the Go program: {e}")),
        }
    }
}

/// Parses the program's records: `G <version> <GOMAXPROCS>`, `S <probe> <late_ns> <0|1>`,
/// `W <units> <worker_ns>`. Every probe must have sampled each of its deadlines in `ns`.
fn parse(out: &str, probes: &[ProbeSpec], ns: u64) -> Result<(RunOut, String, u32), String> {
    let bad = |line: &str| {
        format!("peer:go: the Go program printed a line this atomkernel cannot read: {line:?} (rebuild atomkernel: the program and the crate come from one build)")
    };
    let mut hists: Vec<LatencyHist> = probes.iter().map(|_| LatencyHist::new()).collect();
    let (mut head, mut work) = (None, None);
    for line in out.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).ok_or_else(|| bad(line));
        match f.first().copied() {
            Some("S") if f.len() == 4 => {
                let h = hists.get_mut(num(1)? as usize).ok_or_else(|| bad(line))?;
                h.record_sample(num(2)?, num(3)? == 1);
            }
            Some("G") if f.len() == 3 => head = Some((f[1].to_string(), num(2)? as u32)),
            Some("W") if f.len() == 3 => work = Some((num(1)?, num(2)?)),
            _ => return Err(bad(line)),
        }
    }
    let ((version, procs), (units, wall)) = head.zip(work).ok_or_else(|| bad(out.lines().last().unwrap_or("")))?;
    for (i, (h, p)) in hists.iter().zip(probes).enumerate() {
        if h.count() != ns / p.interval_ns {
            return Err(format!(
                "peer:go: probe {i} has {} samples; a run of {ns} ns every {} ns has {} (the program's output is incomplete)",
                h.count(),
                p.interval_ns,
                ns / p.interval_ns
            ));
        }
    }
    Ok((RunOut { units, ns: wall, hists, ..RunOut::default() }, version, procs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_and_incomplete_output_is_an_error() {
        let probes = [ProbeSpec { prio: 80, interval_ns: 1000 }];
        let (out, version, procs) = parse("G go1.19 1\nS 0 5 0\nS 0 7 1\nW 10 2000\n", &probes, 2000).unwrap();
        assert_eq!((out.units, out.ns, version.as_str(), procs), (10, 2000, "go1.19", 1));
        assert_eq!((out.hists[0].count(), out.hists[0].disturbed()), (2, 1));
        let e = parse("G go1.19 1\nS 0 5 0\nW 10 2000\n", &probes, 2000).unwrap_err();
        assert!(e.contains("probe 0 has 1 samples"), "{e}");
        assert!(parse("G go1.19 1\nS 1 5 0\nW 1 1\n", &probes, 1000).unwrap_err().contains("cannot read"));
        assert!(parse("G go1.19 1\nS 0 5 0\n", &probes, 1000).unwrap_err().contains("cannot read"));
        assert!(parse("hello\n", &probes, 1000).unwrap_err().contains("\"hello\""));
    }

    #[test]
    fn a_failing_program_is_an_error_with_its_stderr() {
        if !BUILT {
            hostlab::testing::skip(&not_built());
            return;
        }
        let scratch = Scratch::new().unwrap();
        let (exe, _) = scratch.program(None).unwrap();
        let mut cmd = Command::new(exe);
        cmd.args(["-ns=1000000", "-workload=packet"]);
        let e = output(cmd, Duration::from_secs(60)).unwrap_err();
        assert!(e.starts_with("peer:go: the Go program failed (exit status: 2)"), "{e}");
        assert!(e.contains("-workload \"packet\": unknown"), "its stderr: {e}");
    }
}
