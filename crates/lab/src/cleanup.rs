//! What a command killed by a signal must still undo: the lab's scratch directories and the
//! child processes it started (the Go peer's).
//!
//! **Mechanism.** Whoever creates a scratch directory or starts a child registers it here,
//! under one lock, in the same critical section as the creation (`Registry::create_dir`,
//! `Registry::spawn`); dropping the returned guard unregisters it (the directory's owner
//! removes it). [`undo_all`], called by the command line's signal thread, takes the lock, kills
//! every registered child, removes every registered directory and keeps the lock, so nothing
//! can be created or started after it has looked: the caller then ends the process.
//!
//! **Invariant.** A directory or child exists only while it is registered, or before its
//! creator returned (under the lock), so an interrupted command leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// The registered directories and children.
#[derive(Default)]
struct Registry {
    next: u64,
    dirs: Vec<(u64, PathBuf)>,
    children: Vec<(u64, Weak<Mutex<Child>>)>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { next: 0, dirs: Vec::new(), children: Vec::new() });

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Unregisters its entry when dropped.
pub struct Registered(u64);

impl Drop for Registered {
    fn drop(&mut self) {
        let mut r = registry();
        r.dirs.retain(|(id, _)| *id != self.0);
        r.children.retain(|(id, _)| *id != self.0);
    }
}

impl Registry {
    fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
}

/// Creates `dir` with `make` and registers it, both under the lock.
pub fn create_dir(dir: &Path, make: impl FnOnce(&Path) -> std::io::Result<()>) -> std::io::Result<Registered> {
    let mut r = registry();
    make(dir)?;
    let id = r.id();
    r.dirs.push((id, dir.to_path_buf()));
    Ok(Registered(id))
}

/// Spawns `cmd` and registers the child, both under the lock; the child is shared with the
/// caller, who waits for it.
pub fn spawn(cmd: &mut Command) -> std::io::Result<(Arc<Mutex<Child>>, Registered)> {
    let mut r = registry();
    let child = Arc::new(Mutex::new(cmd.spawn()?));
    let id = r.id();
    r.children.push((id, Arc::downgrade(&child)));
    Ok((child, Registered(id)))
}

/// Kills every registered child and removes every registered directory, then holds the lock
/// until the process ends (the caller's next step), so nothing new is created.
pub fn undo_all() {
    let r = registry();
    for (_, c) in &r.children {
        if let Some(c) = c.upgrade() {
            let mut c = c.lock().unwrap_or_else(|e| e.into_inner());
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    for (_, d) in &r.dirs {
        let _ = std::fs::remove_dir_all(d);
    }
    std::mem::forget(r);
}

/// Whether the process was started with the host signal `sig` ignored (a shell's background
/// job ignores SIGINT): the command line then leaves it ignored.
pub fn signal_ignored(sig: i32) -> bool {
    hostlab::signals::is_ignored(sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_unregisters_its_directory() {
        let dir = std::env::temp_dir().join(format!("atomkernel-cleanup-test-{}", std::process::id()));
        let g = create_dir(&dir, |d| std::fs::create_dir(d)).unwrap();
        assert!(registry().dirs.iter().any(|(_, d)| *d == dir));
        drop(g);
        assert!(!registry().dirs.iter().any(|(_, d)| *d == dir));
        std::fs::remove_dir(&dir).unwrap();
    }
}
