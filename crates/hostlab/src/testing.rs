//! A test that cannot run here (no Go, no browser, one host CPU) says so where the summary of
//! a test run shows it, not only on its captured stderr.
//!
//! **Mechanism.** [`skip`] writes `skipped: BINARY::TEST: WHY` to stderr and, when the
//! environment variable [`SKIPS_ENV`] names a file, appends the same line to it in one
//! `write` of an `O_APPEND` file (test binaries and their threads may skip at once).
//! `.ci/run` sets it to a file under `target/`, empties it first and prints it at the end.
//! The test's name is its thread's, which the test harness names after the test.
//!
//! **Invariant.** Every test that returns early because the host lacks something calls
//! [`skip`] first, so a skip is never counted as a silent pass.

use std::io::Write;

/// The environment variable naming the file [`skip`] appends to.
pub const SKIPS_ENV: &str = "ATOMKERNEL_SKIPS";

/// Says that the calling test skips itself, and why (see the module's description).
pub fn skip(why: &str) {
    let line = line(why);
    eprint!("{line}");
    if let Some(path) = std::env::var_os(SKIPS_ENV) {
        if let Err(e) = append(std::path::Path::new(&path), &line) {
            eprintln!("skip: cannot append to {} ({SKIPS_ENV}): {e}", std::path::Path::new(&path).display());
        }
    }
}

/// `skipped: BINARY::TEST: WHY` and a newline.
fn line(why: &str) -> String {
    let exe = std::env::current_exe().ok();
    let binary = exe.as_deref().and_then(|p| p.file_stem()).and_then(|s| s.to_str()).unwrap_or("?");
    // The harness builds `NAME-HASH`.
    let binary = binary.rsplit_once('-').map_or(binary, |(name, _)| name);
    let test = std::thread::current().name().unwrap_or("?").to_string();
    format!("skipped: {binary}::{test}: {why}\n")
}

/// Appends `line` to `path` in one write.
fn append(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new().create(true).append(true).open(path)?.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_is_one_line_naming_the_test_and_why() {
        let path = std::env::temp_dir().join(format!("atomkernel-skips-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        append(&path, &line("no Go")).unwrap();
        append(&path, &line("no browser")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let lines: Vec<&str> = text.lines().collect();
        let me = "skipped: hostlab::testing::tests::a_skip_is_one_line_naming_the_test_and_why";
        assert_eq!(lines, [format!("{me}: no Go"), format!("{me}: no browser")], "{text}");
    }
}
