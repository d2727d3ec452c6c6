//! Builds the bare-metal image and boots it under `qemu-system-x86_64`, every boot bounded: the
//! one place `atomkernel qemu` (crates/cli) and the QEMU tests (crates/arch-metal/tests) share.
//!
//! **Mechanism.** [`image::build`] runs the nested `cargo rustc` of docs/BAREMETAL.md into a
//! target directory of the caller's (the tests: `CARGO_TARGET_TMPDIR/metal`; the CLI:
//! `target/metal`), so the image's flags (`panic=abort`, `relocation-model=static`) never
//! reach the workspace's artifacts; cargo decides whether anything changed. [`boot::Machine`]
//! runs QEMU (`-machine q35 -cpu max -nographic -no-reboot`, the `isa-debug-exit` device) with
//! a kernel command line, reads the serial port from QEMU's stdout, and kills QEMU after its
//! timeout. [`find_qemu`] and [`check_kvm`] say what is missing before anything is built.
//!
//! **Invariant.** Nothing hangs: every boot ends within its timeout, killed if need be, and a
//! killed boot is an error carrying the serial output so far. A tool or device missing is an
//! error naming what to install or use, never a silent fallback.
#![forbid(unsafe_code)]

pub mod boot;
pub mod image;

pub use boot::{Accel, Boot, BootError, Machine};

#[path = "../../arch-metal/machine/src/exit_codes.rs"]
#[allow(dead_code, unreachable_pub)]
pub mod exit_codes;

use std::path::{Path, PathBuf};

/// The Debian package that has `qemu-system-x86_64`.
pub const DEBIAN_PACKAGE: &str = "qemu-system-x86";

/// The line the image prints first, from its Rust entry.
pub const RUST_ENTRY: &str = "atomkernel-metal: Rust entry";

/// The workspace this crate was built in (its root `Cargo.toml`'s directory).
pub fn workspace() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir.ancestors().nth(2).unwrap_or(crate_dir).to_path_buf()
}

/// `$QEMU` when set (it must be a file), else `qemu-system-x86_64` on the `PATH`.
pub fn find_qemu() -> Result<PathBuf, String> {
    if let Some(q) = std::env::var_os("QEMU") {
        let q = PathBuf::from(q);
        return if q.is_file() {
            Ok(q)
        } else {
            Err(format!(
                "QEMU={}: no such file; point $QEMU at qemu-system-x86_64, or unset it and install it (Debian: apt-get install {DEBIAN_PACKAGE})",
                q.display()
            ))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join("qemu-system-x86_64")).find(|p| p.is_file()).ok_or_else(|| {
        format!("qemu-system-x86_64 is not installed (not on the PATH, $QEMU unset): install it (Debian: apt-get install {DEBIAN_PACKAGE})")
    })
}

/// QEMU's version, from `qemu-system-x86_64 --version` (`7.2.22` of "QEMU emulator version
/// 7.2.22 (Debian ...)").
pub fn version(qemu: &Path) -> Result<String, String> {
    let out = std::process::Command::new(qemu)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {} --version: {e}", qemu.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_version(&text).ok_or_else(|| format!("{} --version printed no version: {text:?}", qemu.display()))
}

fn parse_version(text: &str) -> Option<String> {
    let rest = text.lines().next()?.split("version").nth(1)?;
    rest.split_whitespace().next().map(String::from)
}

/// Whether KVM is usable: `/dev/kvm` opens for reading and writing, and the CPU offers
/// hardware virtualization (`vmx` or `svm` among `/proc/cpuinfo`'s flags). A `/dev/kvm` without
/// it is not one the image can run on: on this project's VM it is `kvm_pvm`'s (PVM, which runs
/// guest kernels in user mode by emulating their privileged instructions and needs guests
/// built for it; the image stopped at its first SSE instruction, which PVM's emulator lacks).
pub fn check_kvm() -> Result<(), String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let pvm = Path::new("/sys/module/kvm_pvm").exists();
    check_kvm_at(Path::new("/dev/kvm"), &cpuinfo, pvm)
}

fn check_kvm_at(dev: &Path, cpuinfo: &str, pvm: bool) -> Result<(), String> {
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(dev) {
        return Err(format!(
            "--accel kvm: {} is not usable ({e}): KVM needs the kvm module loaded and read-write access to it (the kvm group); use --accel tcg",
            dev.display()
        ));
    }
    let flags = cpuinfo.lines().filter(|l| l.starts_with("flags")).flat_map(|l| l.split_whitespace());
    if flags.clone().any(|f| f == "vmx" || f == "svm") {
        return Ok(());
    }
    Err(format!(
        "--accel kvm: {} opens, but this CPU offers no hardware virtualization (no vmx or svm among /proc/cpuinfo's flags){}: the image needs KVM on VMX or SVM (kvm_intel or kvm_amd); use --accel tcg",
        dev.display(),
        if pvm { "; its KVM is kvm_pvm, which runs only guests built for PVM" } else { "" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_the_word_after_version() {
        let line = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright ...\n";
        assert_eq!(parse_version(line).as_deref(), Some("7.2.22"));
        assert_eq!(parse_version("qemu 9\n"), None);
    }

    #[test]
    fn kvm_without_its_device_is_an_error_naming_the_option_and_tcg() {
        let e = check_kvm_at(Path::new("/nonexistent/kvm"), "flags\t\t: fpu vmx sse2", false).unwrap_err();
        assert!(e.starts_with("--accel kvm: /nonexistent/kvm is not usable") && e.ends_with("use --accel tcg"), "{e}");
    }

    #[test]
    fn kvm_on_a_cpu_without_vmx_or_svm_is_an_error_naming_pvm_when_it_is_loaded() {
        // a device that opens read-write: any writable file stands in for /dev/kvm here
        let dev = std::env::temp_dir().join(format!("atomkernel-kvm-{}", std::process::id()));
        std::fs::write(&dev, b"").unwrap();
        let no_vt = "processor\t: 0\nflags\t\t: fpu sse2 hypervisor\n";
        let e = check_kvm_at(&dev, no_vt, true).unwrap_err();
        assert!(e.contains("no vmx or svm") && e.contains("kvm_pvm") && e.ends_with("use --accel tcg"), "{e}");
        assert!(!check_kvm_at(&dev, no_vt, false).unwrap_err().contains("kvm_pvm"));
        assert_eq!(check_kvm_at(&dev, "flags\t\t: fpu vmx sse2\n", false), Ok(()));
        assert_eq!(check_kvm_at(&dev, "flags\t\t: fpu svm sse2\n", true), Ok(()));
        let _ = std::fs::remove_file(&dev);
    }

    #[test]
    fn the_workspace_has_the_image_crate() {
        assert!(workspace().join("crates/arch-metal/src/main.rs").is_file(), "{}", workspace().display());
    }
}
