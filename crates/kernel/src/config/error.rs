//! The error of a boot option: what was wrong, in words a user can act on.
//!
//! **Invariant.** Every option's parser (this directory's files) returns it; it imports nothing.

use alloc::string::String;
use core::fmt;

/// What was wrong with a configuration, in words a user can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl core::error::Error for ConfigError {}
