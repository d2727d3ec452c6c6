//! The image's build: the nested `cargo rustc` of docs/BAREMETAL.md into a target directory of
//! its own.
//!
//! **Mechanism.** `cargo rustc -p atomkernel-arch-metal --bin atomkernel-metal --features image
//! --release --target-dir DIR --config 'profile.release.panic="abort"' -- -C
//! relocation-model=static`, run in the workspace with the caller's `RUSTFLAGS` removed. Cargo
//! decides whether the sources changed; the image's modification time before and after says
//! whether it did rebuild ([`Built::rebuilt`]).
//!
//! **Invariant.** The image's flags are this command's alone: none leak into the workspace's
//! artifacts (their own directory) and none of the caller's leak into the image.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

/// A built image.
#[derive(Clone, Debug)]
pub struct Built {
    /// The ELF QEMU boots (`DIR/release/atomkernel-metal`).
    pub image: PathBuf,
    /// Whether cargo wrote a new image (a source changed, or there was none).
    pub rebuilt: bool,
    /// The nested cargo's wall time.
    pub seconds: f64,
}

/// The image's path in `target_dir`.
pub fn path(target_dir: &Path) -> PathBuf {
    target_dir.join("release").join("atomkernel-metal")
}

/// Builds (or finds up to date) the image of `workspace` in `target_dir`; the error is cargo's
/// stderr.
pub fn build(workspace: &Path, target_dir: &Path) -> Result<Built, String> {
    let image = path(target_dir);
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let before: Option<SystemTime> = mtime(&image);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let started = Instant::now();
    let out = Command::new(&cargo)
        .current_dir(workspace)
        .args(["rustc", "-p", "atomkernel-arch-metal", "--bin", "atomkernel-metal", "--features", "image"])
        .args(["--release", "--target-dir"])
        .arg(target_dir)
        .args(["--config", "profile.release.panic=\"abort\"", "--", "-C", "relocation-model=static"])
        // the image's flags are the command's; a caller's must not leak into it
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if !out.status.success() {
        return Err(format!("building the image failed:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    let after = mtime(&image).ok_or_else(|| format!("cargo succeeded but {} is missing", image.display()))?;
    Ok(Built { image, rebuilt: before != Some(after), seconds: started.elapsed().as_secs_f64() })
}
