//! `--cpus N`: the number of CPUs of every kernel a command boots (`cpus=` on the kernel
//! command line), one place for its help. Its range is the kernel's (`Config::validate`, which
//! each command's plan runs before any work, naming `--cpus` through `values::boot`).

/// The `--cpus` option, flattened into each command that boots a kernel.
#[derive(clap::Args, Clone, Copy, Debug)]
pub(crate) struct CpusArg {
    /// CPUs of the kernel, each a host thread: 1..=64 (more than the host's cores is allowed,
    /// only slower).
    #[arg(long, default_value_t = 1)]
    cpus: usize,
}

impl CpusArg {
    /// The number asked for.
    pub(crate) fn get(self) -> usize {
        self.cpus
    }
}
