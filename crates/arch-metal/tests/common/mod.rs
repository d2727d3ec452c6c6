//! The harness the QEMU tests share: builds the image once per test binary and boots it,
//! through the `atomkernel-qemu` crate (crates/qemu), which `atomkernel qemu` uses too.
//!
//! **Mechanism.** [`image`] runs `qemu::image::build` (the nested `cargo rustc` of
//! docs/BAREMETAL.md) into `CARGO_TARGET_TMPDIR/metal`, a target directory of its own: the
//! image's flags (`panic=abort`, `relocation-model=static`) never reach the workspace's
//! artifacts, and the nested cargo never waits on the outer one's lock. [`boot`] runs
//! `qemu::Machine::boot` (`qemu-system-x86_64 -machine q35 -cpu max -accel tcg -nographic
//! -no-reboot -device isa-debug-exit,...`) with a command line; QEMU is killed after
//! [`TIMEOUT`] and the test fails with the serial output so far.
//!
//! **Invariant.** Nothing hangs (every boot is bounded), and where `qemu-system-x86_64` is
//! missing each test says so through `hostlab::testing::skip` instead of passing silently.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

pub(crate) use qemu::exit_codes;
pub(crate) use qemu::Boot;

/// Every JSON line of the boot's serial output (`qemu::Boot::json_lines`), parsed.
pub(crate) fn json(b: &Boot) -> Vec<serde_json::Value> {
    b.json_lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Every JSON line whose `test` is `test`.
pub(crate) fn results(b: &Boot, test: &str) -> Vec<serde_json::Value> {
    json(b).into_iter().filter(|v| v["test"] == test).collect()
}

/// The first JSON line whose `test` is `test`; the test fails naming it and the serial output
/// if there is none.
pub(crate) fn result(b: &Boot, test: &str) -> serde_json::Value {
    results(b, test).into_iter().next().unwrap_or_else(|| panic!("no `{test}` line on the serial port:\n{}", b.serial))
}

/// The line the image prints first, from its Rust entry.
pub(crate) const RUST_ENTRY: &str = qemu::RUST_ENTRY;

/// The longest a boot may take before QEMU is killed and the test fails.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(60);

/// `qemu-system-x86_64` on the PATH (or `$QEMU`), if any.
pub(crate) fn qemu() -> Option<PathBuf> {
    qemu::find_qemu().ok()
}

/// The image, built once for the whole test binary.
pub(crate) fn image() -> &'static Path {
    static IMAGE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = IMAGE.get_or_init(|| {
        let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("metal");
        let b = qemu::image::build(&qemu::workspace(), &target_dir)?;
        eprintln!("image {} in {:.1} s", if b.rebuilt { "built" } else { "up to date" }, b.seconds);
        Ok(b.image)
    });
    match built {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// Boots the image with `cmdline`; `None` (after a skip) where QEMU is missing.
pub(crate) fn boot(cmdline: &str) -> Option<Boot> {
    boot_with(&[], cmdline)
}

/// [`boot`] with more QEMU arguments (`-icount shift=0,sleep=off`, say).
pub(crate) fn boot_with(extra: &[&str], cmdline: &str) -> Option<Boot> {
    let qemu = match qemu::find_qemu() {
        Ok(q) => q,
        Err(why) => {
            hostlab::testing::skip(&why);
            return None;
        }
    };
    let machine = qemu::Machine {
        qemu,
        image: image().to_path_buf(),
        accel: qemu::Accel::Tcg,
        cpus: 1,
        icount: false,
        extra: extra.iter().map(|s| s.to_string()).collect(),
        timeout: TIMEOUT,
    };
    let b = machine.boot(cmdline).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "booted `{cmdline}`: Rust entry after {} ms, exit after {} ms, status {}",
        b.to_rust.map_or("?".into(), |d| d.as_millis().to_string()),
        b.total.as_millis(),
        b.status
    );
    Some(b)
}
