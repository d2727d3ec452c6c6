//! Builds the lab's Go runtime peer (`peers/go/peer.go`) when a Go toolchain is present.
//!
//! **Mechanism.** Finds `go` (the `GO` variable, else `PATH`), runs `go build -trimpath` on
//! the one file into `OUT_DIR/atomkernel-go-peer` (static, `CGO_ENABLED=0`, no network:
//! `GOPROXY=off`, `GOTOOLCHAIN=local`; a `GOCACHE`/`GOPATH` under `OUT_DIR` when the host has
//! no `HOME` or `XDG_CACHE_HOME`), and hands the file to the crate as
//! `ATOMKERNEL_GO_PEER`, which `lab::go_peer` embeds with `include_bytes!` (so an installed
//! `atomkernel` carries its peer). Without Go, or when the build fails, the file is left empty,
//! `ATOMKERNEL_GO_PEER_MISSING` says why and how to fix it, and a `cargo:warning` says so.
//!
//! **Invariant.** The crate always builds: `ATOMKERNEL_GO_PEER` always names a file, which is
//! either the peer built from the current `peer.go` or empty with the reason set.

use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = "peers/go/peer.go";
const FIX: &str = "install Go 1.19 or newer (Debian: apt-get install golang-go; .ci/run does it), then rebuild with GO=$(command -v go) in the environment (or touch crates/lab/peers/go/peer.go)";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-env-changed=GO");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let exe = out.join("atomkernel-go-peer");
    if let Err(why) = build(&out, &exe) {
        let _ = std::fs::write(&exe, b"");
        for line in format!("peer:go not built: {why}; {FIX}").lines() {
            println!("cargo:warning={line}");
        }
        println!("cargo:rustc-env=ATOMKERNEL_GO_PEER_MISSING={}", why.replace('\n', " "));
    }
    println!("cargo:rustc-env=ATOMKERNEL_GO_PEER={}", exe.display());
}

/// Builds the peer into `exe`, or says why not.
fn build(out: &Path, exe: &Path) -> Result<(), String> {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target != "x86_64-unknown-linux-gnu" && target != "x86_64-unknown-linux-musl" {
        return Err(format!("the Go peer is built for x86-64 Linux only, not {target}"));
    }
    let go = find_go()?;
    println!("cargo:rerun-if-changed={}", go.display());
    let mut cmd = Command::new(&go);
    cmd.args(["build", "-trimpath", "-ldflags=-s -w", "-o"]).arg(exe).arg(SOURCE);
    cmd.env("CGO_ENABLED", "0").env("GOOS", "linux").env("GOARCH", "amd64");
    cmd.env("GOPROXY", "off").env("GOTOOLCHAIN", "local").env("GO111MODULE", "on").env("GOWORK", "off");
    cmd.env_remove("GOFLAGS");
    let home = |v: &str| std::env::var_os(v).is_some_and(|s| !s.is_empty());
    if !home("HOME") && !home("XDG_CACHE_HOME") && !home("GOCACHE") {
        cmd.env("GOCACHE", out.join("go-build")).env("GOPATH", out.join("gopath"));
    }
    let o = cmd.output().map_err(|e| format!("cannot run {}: {e}", go.display()))?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let err: Vec<&str> = err.lines().take(12).collect();
        let err = if err.is_empty() { "(no output)".to_string() } else { err.join(" | ") };
        return Err(format!("{} build {SOURCE} failed ({}): {err}", go.display(), o.status));
    }
    match std::fs::metadata(exe) {
        Ok(m) if m.len() > 0 => Ok(()),
        _ => Err(format!("{} build {SOURCE} reported success but wrote no program", go.display())),
    }
}

/// `GO` if set (it must exist), else the first `go` on `PATH`.
fn find_go() -> Result<PathBuf, String> {
    if let Some(go) = std::env::var_os("GO").filter(|g| !g.is_empty()) {
        let go = PathBuf::from(go);
        return if go.is_file() { Ok(go) } else { Err(format!("GO={} is not a file", go.display())) };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("go"))
        .find(|p| p.is_file())
        .ok_or_else(|| "no `go` on PATH (and GO is not set)".to_string())
}
