//! The patch models' boot options: which point table the interrupt exit reads (`ptable=`),
//! where an event is served when the interrupted function reaches no point (`patch_leaf=`),
//! and how a patch synchronises the other CPUs (`patch_sync=`).
//!
//! **Invariant.** Each option is parsed here once, by name; an unknown name is a
//! [`ConfigError`] that lists the known ones.

use super::error::ConfigError;
use alloc::format;
use arch_api::PatchSync;

/// Which point table the patch models' interrupt exit reads (`ptable=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PtableMode {
    /// The exact table from the machine code: the points first reached on every path forward
    /// from the interrupted instruction, and the return redirected only if a path returns
    /// before one (`model/patch/exact.rs`).
    Exact,
    /// The per-function table: every point of the interrupted function, and its return
    /// redirected (`model/patch/ptable.rs`).
    Function,
}

impl PtableMode {
    /// Every mode, in the order reports list them.
    pub const ALL: [PtableMode; 2] = [PtableMode::Exact, PtableMode::Function];

    /// Its place in [`PtableMode::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            PtableMode::Exact => "exact",
            PtableMode::Function => "function",
        }
    }
}

named_choice!(PtableMode, "ptable", "point table");

/// Parses a `patch_sync=` value.
pub(super) fn parse_patch_sync(s: &str) -> Result<PatchSync, ConfigError> {
    PatchSync::ALL
        .into_iter()
        .find(|m| m.name() == s)
        .ok_or_else(|| ConfigError(format!("patch_sync={s}: unknown patch synchronisation; choose one of none, ipi")))
}

/// Where the patch models serve an RT event whose interrupted function reaches no point on
/// any path forward (a leaf such as a copy or a checksum helper, or foreign code)
/// (`patch_leaf=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatchLeaf {
    /// Walk up the stack to the first caller whose look-up names points and arm those: the
    /// event is served at a preemption point (every frame walked costs the handler a look-up
    /// and an unwind step).
    Walk,
    /// Redirect the interrupted function's return and serve the event there, as a return is
    /// served when some path of a function with points returns before one: one unwind step,
    /// whatever the depth, and the RT task runs no later than under `walk` (every path from
    /// the interrupted instruction to the caller's points passes that return).
    Return,
}

impl PatchLeaf {
    /// Every choice, in the order reports list them.
    pub const ALL: [PatchLeaf; 2] = [PatchLeaf::Walk, PatchLeaf::Return];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            PatchLeaf::Walk => "walk",
            PatchLeaf::Return => "return",
        }
    }
}

named_choice!(PatchLeaf, "patch_leaf", "leaf handling");
