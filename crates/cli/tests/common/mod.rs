//! Running the `atomkernel` binary the way a user does.

use std::process::Command;

/// Runs `atomkernel ARGS` and returns (exit code, stdout, stderr).
pub(crate) fn atomkernel(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_atomkernel")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}
