//! The preemption model as a boot option (`preempt=`): its names and its place in reports.
//! What each model does is `crate::model`'s.
//!
//! **Invariant.** [`PreemptModel::ALL`] lists every variant once, in report order, and
//! [`PreemptModel::name`] is the one spelling the command line, the reports and the parser use.

use super::error::ConfigError;
use alloc::{format, vec::Vec};
use core::fmt;
use core::str::FromStr;

/// The preemption model (`preempt=` on Linux's command line).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PreemptModel {
    /// Kernel code is preempted only at `ret_from_syscall`.
    None,
    /// `cond_resched()` at every preemption point.
    Voluntary,
    /// Preemption on return from interrupt whenever `preempt_count` is zero.
    Full,
    /// As `full` for RT wakeups; fair wakeups wait for the tick (PREEMPT_LAZY).
    Lazy,
    /// The 1996 proposal's CPU locking: each atom requests the CPU.
    Cpulock,
    /// The 1996 "crazy idea", with a breakpoint patched at the next point.
    PatchInt3,
    /// The 1996 "crazy idea", with a `call rt_reschedule` patched at the next point.
    PatchCall,
}

impl PreemptModel {
    /// Every model, in the order reports list them.
    pub const ALL: [PreemptModel; 7] = [
        PreemptModel::None,
        PreemptModel::Voluntary,
        PreemptModel::Full,
        PreemptModel::Lazy,
        PreemptModel::Cpulock,
        PreemptModel::PatchInt3,
        PreemptModel::PatchCall,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            PreemptModel::None => "none",
            PreemptModel::Voluntary => "voluntary",
            PreemptModel::Full => "full",
            PreemptModel::Lazy => "lazy",
            PreemptModel::Cpulock => "cpulock",
            PreemptModel::PatchInt3 => "patch-int3",
            PreemptModel::PatchCall => "patch-call",
        }
    }

    pub(crate) fn index(self) -> u8 {
        Self::ALL.iter().position(|&m| m == self).unwrap_or(0) as u8
    }

    pub(crate) fn from_index(i: u8) -> PreemptModel {
        Self::ALL.get(i as usize).copied().unwrap_or(PreemptModel::None)
    }
}

impl fmt::Display for PreemptModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PreemptModel {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Self::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|m| m.name()).collect();
            ConfigError(format!("unknown preemption model '{s}': choose one of {}", names.join(", ")))
        })
    }
}
