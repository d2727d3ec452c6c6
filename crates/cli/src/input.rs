//! Checks the commands share, made before any work: an output directory, an option that
//! applies only under another, and the end of a command killed by a signal.
//!
//! **Invariant.** A command's `plan` (every `<command>_cmd.rs` has one) either returns what
//! to run or an error naming the option, with nothing printed and nothing left on disk; work
//! starts only after it. An interrupted command (SIGINT, SIGTERM, SIGHUP) removes what the lab
//! made and the output directories it created ([`lab::cleanup`]) before it dies of the signal.

use kernel::{BhMode, PreemptModel};
use std::path::{Path, PathBuf};

/// An output directory made ready before the work (`trace --out`, `compare --report`): the
/// directories it had to create are removed again if the command fails, or is interrupted by
/// a signal, before [`OutDir::keep`] (they are registered with [`lab::cleanup`] as they are
/// made, so an interrupted command leaves no empty directory behind).
pub(crate) struct OutDir {
    path: PathBuf,
    created: Option<PathBuf>,
    /// The created directories' registration for the signal thread, until kept or removed.
    _registered: Option<lab::cleanup::Registered>,
}

impl OutDir {
    /// Checks, without touching the disk, that `path` can be the directory: it is one, or it
    /// can be created (its nearest existing ancestor is a directory), and none of `files` in
    /// it is a directory. `flag` names the option in the error, which says what to use.
    pub(crate) fn check(flag: &str, path: &Path, files: &[&str]) -> Result<(), String> {
        let shown = path.display();
        if path.as_os_str().is_empty() {
            return Err(format!("{flag} '': name a directory"));
        }
        if path.exists() && !path.is_dir() {
            return Err(format!("{flag} {shown}: exists and is not a directory; name a new or an existing directory"));
        }
        let parent = path.ancestors().skip(1).find(|a| a.as_os_str().is_empty() || a.exists());
        if let Some(p) = parent.filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
            return Err(format!("{flag} {shown}: {} is not a directory; name a directory", p.display()));
        }
        if let Some(f) = files.iter().map(|f| path.join(f)).find(|f| f.is_dir()) {
            return Err(format!("{flag} {shown}: {} is a directory, where the command writes a file", f.display()));
        }
        Ok(())
    }

    /// [`OutDir::check`], then creates `path` and its missing parents (before the work, so a
    /// directory that cannot be made fails the command before it starts), registering the
    /// topmost one it creates with [`lab::cleanup`].
    pub(crate) fn prepare(flag: &str, path: &Path, files: &[&str]) -> Result<OutDir, String> {
        Self::check(flag, path, files)?;
        let created =
            path.ancestors().filter(|a| !a.as_os_str().is_empty() && !a.exists()).last().map(Path::to_path_buf);
        let cannot = |e: std::io::Error| format!("{flag} {}: cannot create it: {e}", path.display());
        let registered = match &created {
            Some(top) => Some(lab::cleanup::create_dir(top, |_| std::fs::create_dir_all(path)).map_err(cannot)?),
            None => None,
        };
        Ok(OutDir { path: path.to_path_buf(), created, _registered: registered })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The command succeeded: keep the directory.
    pub(crate) fn keep(mut self) {
        self.created = None;
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        if let Some(top) = self.created.take() {
            let _ = std::fs::remove_dir_all(top);
        }
    }
}

/// `--bh-prio` sets ksoftirqd's priority under `bh=threaded`: given while no run uses that
/// option (`used`), it would change nothing, so it is an error saying so.
pub(crate) fn bh_prio_applies(given: Option<u8>, used: &[BhMode]) -> Result<(), String> {
    match given {
        Some(p) if !used.contains(&BhMode::Threaded) => Err(format!(
            "--bh-prio {p}: sets ksoftirqd's priority under bh=threaded, and no run here uses it; add threaded to --bh, or drop --bh-prio"
        )),
        _ => Ok(()),
    }
}

/// `--ptable`, `--patch-leaf`, `--patch-sync` and `--handler-parts` (`given`: each option and its value, if
/// given; a switch's value is empty) set how the
/// patch models arm their points: given while no run uses a patch model (`models`), they would
/// change nothing, so each is an error saying so.
pub(crate) fn patch_options_apply(given: &[(&str, Option<&str>)], models: &[PreemptModel]) -> Result<(), String> {
    if models.iter().any(|m| m.is_patch()) {
        return Ok(());
    }
    match given.iter().find_map(|&(flag, v)| v.map(|v| (flag, v))) {
        Some((flag, v)) => {
            let patch: Vec<&str> = PreemptModel::ALL.iter().filter(|m| m.is_patch()).map(|m| m.name()).collect();
            Err(format!(
                "{}: sets how the patch models ({}) arm their points, and no run here uses one; add one to --preempt, or drop {flag}",
                format!("{flag} {v}").trim_end(),
                patch.join(", ")
            ))
        }
        None => Ok(()),
    }
}

/// Starts the thread that ends the command on SIGINT, SIGTERM or SIGHUP: it undoes what the
/// lab made (scratch directories, the Go peer's process) and then dies of the same signal, as
/// the command would have without the handler. A signal ignored at start (a shell's
/// background job, `nohup`) stays ignored.
pub(crate) fn end_cleanly_on_signals() -> Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let watched = [SIGINT, SIGTERM, SIGHUP].into_iter().filter(|&s| !lab::cleanup::signal_ignored(s));
    let mut signals =
        signal_hook::iterator::Signals::new(watched).map_err(|e| format!("cannot watch for SIGINT: {e}"))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                lab::cleanup::undo_all();
                let _ = signal_hook::low_level::emulate_default_handler(sig);
                std::process::exit(128 + sig);
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the signal thread: {e}"))
}
