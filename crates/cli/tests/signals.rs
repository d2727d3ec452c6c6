//! A command killed by a signal leaves nothing behind: `compare --peers go` interrupted with
//! SIGINT while the Go peer runs removes its scratch directory (and ends the Go program), and
//! dies of the signal as an uncaught SIGINT would; `trace --out D` and `compare --report D`
//! interrupted before they wrote remove the `D` they made; a report whose reader went away
//! (`| head`) ends the command quietly with a closed pipe's status, not a panic, and keeps the
//! `D` it had written.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sigint_during_compare_with_the_go_peer_removes_its_temporary_directory() {
    if !lab::go_peer::BUILT {
        hostlab::testing::skip(&lab::go_peer::not_built());
        return;
    }
    // A private TMPDIR: the peer's scratch directory is made in it, and nothing else is.
    let tmp = std::env::temp_dir().join(format!("atomkernel-sigint-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).unwrap();
    let args = ["compare", "--peers", "go", "--preempt", "", "--workload", "checksum", "--duration", "60"];
    let mut child = Command::new(env!("CARGO_BIN_EXE_atomkernel"))
        .args(args)
        .args(["--rounds", "1", "--cpu-nice", "keep"])
        .env("TMPDIR", &tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded: the run itself lasts 2 x 60 s) until the Go program runs from its
    // scratch directory.
    let t0 = Instant::now();
    while programs_under(&tmp).is_empty() && t0.elapsed() < Duration::from_secs(100) {
        assert!(child.try_wait().unwrap().is_none(), "compare ended before the Go peer ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 1, "the Go peer's scratch directory is there");
    assert!(!programs_under(&tmp).is_empty(), "the Go program runs");
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(2), "it died of SIGINT: {status:?}");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().map(|e| e.unwrap().path()).collect();
    let running = programs_under(&tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(running.is_empty(), "the Go program still runs: {running:?}");
}

/// Runs `atomkernel ARGS --OPTION DIR` (DIR new), waits (bounded) for DIR to be made, sends
/// SIGINT and checks that the command died of it and removed DIR.
fn interrupted_leaves_no_directory(args: &[&str], option: &str) {
    let dir = new_dir("sigint", option);
    let mut child = with_dir(args, option, &dir, Stdio::null());
    let t0 = Instant::now();
    while !dir.exists() && t0.elapsed() < Duration::from_secs(100) {
        assert!(child.try_wait().unwrap().is_none(), "{args:?} ended before it made {}", dir.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(dir.is_dir(), "{args:?}: {} made before the work", dir.display());
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    let left = dir.exists();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(status.signal(), Some(2), "{args:?}: it died of SIGINT: {status:?}");
    assert!(!left, "{args:?}: interrupted, it left {} behind", dir.display());
}

#[test]
fn sigint_during_trace_removes_the_out_directory_it_made() {
    interrupted_leaves_no_directory(&["trace", "--workload", "load", "--seconds", "60"], "--out");
}

#[test]
fn sigint_during_compare_removes_the_report_directory_it_made() {
    let args = ["compare", "--preempt", "none", "--peers", "none", "--workload", "copy", "--duration", "60"];
    interrupted_leaves_no_directory(&[&args[..], &["--rounds", "1", "--cpus", "1"]].concat(), "--report");
}

/// The processes whose program was started from under `dir`.
fn programs_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let procs = std::fs::read_dir("/proc").unwrap().filter_map(Result::ok);
    procs.filter_map(|p| std::fs::read_link(p.path().join("exe")).ok()).filter(|exe| exe.starts_with(dir)).collect()
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly_with_a_closed_pipes_status() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_atomkernel"))
        .args(["points", "--check", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the pipe while the command analyses its text: its first report line finds no
    // reader, however long the report (a reader that went mid-report could still find the
    // whole of a short one in the pipe's 64 KB).
    drop(child.stdout.take());
    let status = ended_within(&mut child, 60, "points --check --json");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(128 + 13), "a closed pipe's status: {status:?}\n{err}");
    assert!(!err.contains("panicked"), "no panic: {err}");
}

/// Runs `atomkernel ARGS --OPTION DIR` (DIR new) with a stdout whose reader is gone from the
/// start, and checks that it ended with a closed pipe's status and kept DIR with `files`.
fn a_closed_stdout_keeps_what_was_written(args: &[&str], option: &str, files: &[&str]) {
    let dir = new_dir("epipe", option);
    let mut child = with_dir(args, option, &dir, Stdio::piped());
    drop(child.stdout.take()); // no reader: the first line of the report meets a closed pipe
    let status = ended_within(&mut child, 120, &format!("{args:?}"));
    let missing: Vec<&&str> = files.iter().filter(|f| !dir.join(f).is_file()).collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(status.code(), Some(128 + 13), "{args:?}: a closed pipe's status: {status:?}");
    assert!(missing.is_empty(), "{args:?}: removed what it had written: {missing:?}");
}

#[test]
fn trace_out_and_compare_report_are_kept_when_stdout_closes() {
    let files = ["trace.json", "trace.txt", "report.json", "report.txt"];
    a_closed_stdout_keeps_what_was_written(&["trace", "--workload", "load", "--seconds", "1"], "--out", &files);
    let args = ["compare", "--preempt", "none", "--peers", "none", "--workload", "copy", "--duration", "1"];
    let args = [&args[..], &["--rounds", "1", "--cpus", "1"]].concat();
    a_closed_stdout_keeps_what_was_written(&args, "--report", &["index.html", "results.json"]);
}

/// A directory path of this test process's own for `option` (removed if it exists).
fn new_dir(kind: &str, option: &str) -> std::path::PathBuf {
    let name = format!("atomkernel-{kind}-{}-{}", option.trim_start_matches('-'), std::process::id());
    let dir = std::env::temp_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Starts `atomkernel ARGS OPTION DIR` with `stdout`, stderr discarded.
fn with_dir(args: &[&str], option: &str, dir: &std::path::Path, stdout: Stdio) -> std::process::Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_atomkernel"));
    c.args(args).arg(option).arg(dir).stdout(stdout).stderr(Stdio::null());
    c.spawn().unwrap()
}

/// Waits for `child` at most `secs`; one that has not ended then is killed and fails the test.
fn ended_within(child: &mut std::process::Child, secs: u64, what: &str) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if t0.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            panic!("{what} did not end within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
