//! The harness the QEMU tests share: builds the image once per test binary and boots it.
//!
//! **Mechanism.** The image is built by a nested `cargo rustc` (the command of
//! docs/BAREMETAL.md) into `target/tmp/metal`, a target directory of its own: the image's
//! flags (`panic=abort`, `relocation-model=static`) never reach the workspace's artifacts, and
//! the nested cargo never waits on the outer one's lock. [`boot`] runs `qemu-system-x86_64
//! -machine q35 -cpu max -accel tcg -nographic -no-reboot -device isa-debug-exit,...` with a
//! command line; QEMU is killed after [`TIMEOUT`] and the test fails with the serial output
//! so far.
//!
//! **Invariant.** Nothing hangs (every boot is bounded), and where `qemu-system-x86_64` is
//! missing each test says so through `hostlab::testing::skip` instead of passing silently.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

#[path = "../../machine/src/exit_codes.rs"]
#[allow(dead_code, unreachable_pub)]
pub(crate) mod exit_codes;

/// The longest a boot may take before QEMU is killed and the test fails.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(60);
/// The line the image prints first, from its Rust entry.
pub(crate) const RUST_ENTRY: &str = "atomkernel-metal: Rust entry";

/// `qemu-system-x86_64` on the PATH (or `$QEMU`), if any.
pub(crate) fn qemu() -> Option<PathBuf> {
    if let Some(q) = std::env::var_os("QEMU") {
        return Some(PathBuf::from(q));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("qemu-system-x86_64")).find(|p| p.is_file())
}

/// The image, built once for the whole test binary.
pub(crate) fn image() -> &'static Path {
    static IMAGE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match IMAGE.get_or_init(build_image) {
        Ok(p) => p,
        Err(e) => panic!("building the image failed:\n{e}"),
    }
}

fn build_image() -> Result<PathBuf, String> {
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("metal");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let started = Instant::now();
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["rustc", "-p", "atomkernel-arch-metal", "--bin", "atomkernel-metal", "--features", "image"])
        .args(["--release", "--target-dir"])
        .arg(&target_dir)
        .args(["--config", "profile.release.panic=\"abort\"", "--", "-C", "relocation-model=static"])
        // the image's flags are the command's; a caller's must not leak into it
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    eprintln!("image built in {:.1} s", started.elapsed().as_secs_f64());
    Ok(target_dir.join("release").join("atomkernel-metal"))
}

/// What one boot printed and how it ended.
pub(crate) struct Boot {
    /// QEMU's exit status.
    pub(crate) status: i32,
    /// Everything on the serial port.
    pub(crate) serial: String,
    /// From QEMU's start to the Rust entry's line on the serial port.
    pub(crate) to_rust: Option<Duration>,
    /// From QEMU's start to its exit.
    pub(crate) total: Duration,
}

/// Boots the image with `cmdline`; `None` (after a skip) where QEMU is missing.
pub(crate) fn boot(cmdline: &str) -> Option<Boot> {
    boot_with(&[], cmdline)
}

/// [`boot`] with more QEMU arguments (`-icount shift=0,sleep=off`, say).
pub(crate) fn boot_with(extra: &[&str], cmdline: &str) -> Option<Boot> {
    let Some(qemu) = qemu() else {
        hostlab::testing::skip("qemu-system-x86_64 is not installed (Debian: apt-get install qemu-system-x86)");
        return None;
    };
    let image = image();
    let started = Instant::now();
    let mut child = Command::new(&qemu)
        .args(["-machine", "q35", "-cpu", "max", "-accel", "tcg", "-m", "128M", "-nographic", "-no-reboot"])
        .args(extra)
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel"])
        .arg(image)
        .args(["-append", cmdline])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", qemu.display()));
    let serial = Arc::new(Mutex::new((String::new(), None::<Duration>)));
    let mut stdout = child.stdout.take().expect("piped");
    let reader = {
        let serial = Arc::clone(&serial);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut s = serial.lock().unwrap();
                s.0.push_str(&String::from_utf8_lossy(&buf[..n]));
                if s.1.is_none() && s.0.contains(RUST_ENTRY) {
                    s.1 = Some(started.elapsed());
                }
            }
        })
    };
    let status = loop {
        if let Some(st) = child.try_wait().expect("waiting for QEMU") {
            break st;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            let _ = reader.join();
            let mut err = String::new();
            let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
            panic!(
                "QEMU did not exit within {TIMEOUT:?}; killed. Serial output:\n{}\nstderr:\n{err}",
                serial.lock().unwrap().0
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let total = started.elapsed();
    reader.join().expect("the serial reader");
    let (serial, to_rust) = std::mem::take(&mut *serial.lock().unwrap());
    let status = status.code().unwrap_or_else(|| panic!("QEMU was killed by a signal ({status:?}); serial:\n{serial}"));
    eprintln!(
        "booted `{cmdline}`: Rust entry after {} ms, exit after {} ms, status {status}",
        to_rust.map_or("?".into(), |d| d.as_millis().to_string()),
        total.as_millis()
    );
    Some(Boot { status, serial, to_rust, total })
}
