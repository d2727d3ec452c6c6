//! `--cpus N`: the number of CPUs of every kernel a command boots (the kernel's `cpus=`), one
//! type for every command that boots one, parsed once, by clap, as a number.
//!
//! **Invariant.** The range and the default are the kernel's alone: nothing here checks the
//! number, the kernel's `Config::validate` does (each command's plan runs it before any work
//! and names `--cpus` in its error, see `values::flags`), and an option not given is
//! `Config::default().cpus`, but for `compare`, which takes the host's cores
//! ([`CpusArg::or_host`], and [`COMPARE_HELP`] says so).

/// `compare`'s help for `--cpus` (its default is the host's cores).
pub(crate) const COMPARE_HELP: &str = "CPUs of every atomkernel instance and of the peers, 1..=64: one worker per CPU (bound to it), each probe on every CPU, a cross-CPU probe, and the throughput on one CPU for the scaling figure. Default: the host's cores when there are 2 or more, else 1";

/// The `--cpus` option, flattened into each command that boots a kernel.
#[derive(clap::Args, Clone, Copy, Debug)]
pub(crate) struct CpusArg {
    /// CPUs of the kernel, each a host thread: 1..=64 (more than the host's cores is allowed,
    /// only slower). Default: 1.
    #[arg(long)]
    cpus: Option<usize>,
}

impl CpusArg {
    /// The number asked for, else the kernel's default.
    pub(crate) fn get(self) -> usize {
        self.cpus.unwrap_or(kernel::Config::default().cpus)
    }

    /// The number asked for, if it was.
    pub(crate) fn given(self) -> Option<usize> {
        self.cpus
    }

    /// The number asked for, else the host's cores when there are two or more (as many as this
    /// process may use, `available_parallelism`, at most the kernel's most), else one; and why.
    pub(crate) fn or_host(self) -> (usize, String) {
        if let Some(n) = self.cpus {
            return (n, "--cpus".into());
        }
        let host = std::thread::available_parallelism().map_or(1, |n| n.get()).min(kernel::config::MAX_CPUS);
        if host >= 2 {
            (host, format!("the host's {host} cores; --cpus 1 for one CPU"))
        } else {
            (1, "the host has one core".into())
        }
    }
}
