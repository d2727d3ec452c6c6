//! The detectors as boot options (`panic_on_oops=`, `softlockup_*=`, `hung_task_*=`): every
//! detector's threshold and whether it panics. The detectors are `crate::watchdog`'s and
//! `crate::hung`'s.
//!
//! **Invariant.** A `*_panic` flag is accepted only with its detector on ([`WatchdogConfig::validate`]).

use super::error::ConfigError;
use alloc::format;

/// The detectors' boot options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchdogConfig {
    /// An oops is a kernel panic (`panic_on_oops=1`).
    pub panic_on_oops: bool,
    /// Report a CPU in kernel mode that passed no place where it could reschedule for this
    /// long (`softlockup_thresh_ms=`); 0 = off.
    pub softlockup_thresh_ms: u64,
    /// A soft lockup is a kernel panic (`softlockup_panic=1`).
    pub softlockup_panic: bool,
    /// Report a task blocked in a wait this long without being switched in
    /// (`hung_task_timeout_ms=`, Linux's `hung_task_timeout_secs`); 0 = off.
    pub hung_task_timeout_ms: u64,
    /// A hung task is a kernel panic (`hung_task_panic=1`).
    pub hung_task_panic: bool,
}

impl WatchdogConfig {
    /// Every detector off, oopses contained: the library default.
    pub const OFF: WatchdogConfig = WatchdogConfig {
        panic_on_oops: false,
        softlockup_thresh_ms: 0,
        softlockup_panic: false,
        hung_task_timeout_ms: 0,
        hung_task_panic: false,
    };

    /// What the lab and the CLI boot with: a CPU stuck for 10 s or a task blocked for 60 s
    /// ends the run with an error naming it (never a silent hang); oopses are contained.
    pub const DEFAULTS: WatchdogConfig = WatchdogConfig {
        panic_on_oops: false,
        softlockup_thresh_ms: 10_000,
        softlockup_panic: true,
        hung_task_timeout_ms: 60_000,
        hung_task_panic: true,
    };

    /// The boot options this sets.
    pub const KEYS: [&'static str; 5] =
        ["panic_on_oops", "softlockup_thresh_ms", "softlockup_panic", "hung_task_timeout_ms", "hung_task_panic"];

    /// Sets option `key` if it is one of [`Self::KEYS`] (returns whether it was).
    pub(crate) fn set(&mut self, key: &str, value: &str) -> Result<bool, ConfigError> {
        let flag = || match value {
            "1" => Ok(true),
            "0" => Ok(false),
            _ => Err(ConfigError(format!("{key}={value}: use 1 or 0"))),
        };
        let ms = || {
            value
                .parse::<u64>()
                .map_err(|_| ConfigError(format!("{key}={value}: expected a whole number of milliseconds (0 = off)")))
        };
        match key {
            "panic_on_oops" => self.panic_on_oops = flag()?,
            "softlockup_thresh_ms" => self.softlockup_thresh_ms = ms()?,
            "softlockup_panic" => self.softlockup_panic = flag()?,
            "hung_task_timeout_ms" => self.hung_task_timeout_ms = ms()?,
            "hung_task_panic" => self.hung_task_panic = flag()?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Checks the combination: a `*_panic` flag needs its detector on.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.softlockup_panic && self.softlockup_thresh_ms == 0 {
            return Err(ConfigError(
                "softlockup_panic=1 needs the detector on: give softlockup_thresh_ms= too (e.g. 10000)".into(),
            ));
        }
        if self.hung_task_panic && self.hung_task_timeout_ms == 0 {
            return Err(ConfigError(
                "hung_task_panic=1 needs the detector on: give hung_task_timeout_ms= too (e.g. 60000)".into(),
            ));
        }
        Ok(())
    }
}
