//! `--cpus N`: the number of CPUs of every kernel a command boots (`cpus=` on the kernel
//! command line), one place for its range and its help.

use kernel::config::MAX_CPUS;

/// The `--cpus` option, flattened into each command that boots a kernel.
#[derive(clap::Args, Clone, Copy, Debug)]
pub(crate) struct CpusArg {
    /// CPUs of the kernel, each a host thread: 1..=64 (more than the host's cores is allowed,
    /// only slower).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=MAX_CPUS as i64))]
    cpus: u16,
}

impl CpusArg {
    /// The number asked for.
    pub(crate) fn get(self) -> usize {
        self.cpus as usize
    }
}
