//! The tracers as a boot option (`trace=`, `trace_buf=`): which run and how much they keep.
//! The tracers themselves are `crate::trace`'s.
//!
//! **Invariant.** Parsed and checked here once; [`TraceOptions::flags`] is the one encoding the
//! tracers' hot-path test reads.

use super::error::ConfigError;
use alloc::{format, vec::Vec};

/// True when this build has tracing compiled in (the kernel crate's `trace` feature).
pub const BUILT: bool = cfg!(feature = "trace");

pub(crate) const EVENTS: u8 = 1;
pub(crate) const PREEMPTOFF: u8 = 2;
pub(crate) const WAKEUP_RT: u8 = 4;
pub(crate) const PROFILE: u8 = 8;

/// Which tracers a kernel instance runs (`trace=events,preemptoff,wakeup_rt,profile` or
/// `trace=all`; `trace_buf=N` events per CPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceOptions {
    /// The event ring (switch, wakeup, irq, softirq, points, patching, model switches).
    pub events: bool,
    /// The `preemptoff`/`irqsoff` tracer: the longest stretch the CPU could not be taken.
    pub preemptoff: bool,
    /// The `wakeup_rt` tracer: the worst RT wake-up latencies and what ran meanwhile.
    pub wakeup_rt: bool,
    /// The sampling profiler: the interrupted IP at every tick.
    pub profile: bool,
    /// Events per CPU ring (also the profile's sample capacity).
    pub buf_entries: usize,
}

impl TraceOptions {
    /// Every tracer off (the default).
    pub const OFF: TraceOptions =
        TraceOptions { events: false, preemptoff: false, wakeup_rt: false, profile: false, buf_entries: 1 << 16 };
    /// The tracer names `trace=` accepts.
    pub const NAMES: [&'static str; 4] = ["events", "preemptoff", "wakeup_rt", "profile"];

    /// Parses a `trace=` value: a comma list of [`Self::NAMES`], `all`, or `off`.
    pub fn parse(value: &str, buf_entries: usize) -> Result<TraceOptions, ConfigError> {
        let mut o = TraceOptions { buf_entries, ..TraceOptions::OFF };
        for name in value.split(',').map(str::trim) {
            match name {
                "all" => o = TraceOptions { events: true, preemptoff: true, wakeup_rt: true, profile: true, ..o },
                "off" | "none" => {}
                "events" => o.events = true,
                "preemptoff" | "irqsoff" | "preemptirqsoff" => o.preemptoff = true,
                "wakeup_rt" => o.wakeup_rt = true,
                "profile" => o.profile = true,
                _ => {
                    return Err(ConfigError(format!(
                        "trace={value}: unknown tracer '{name}': choose from {}, all, off",
                        Self::NAMES.join(", ")
                    )))
                }
            }
        }
        Ok(o)
    }

    /// True if any tracer is on.
    pub fn any(&self) -> bool {
        self.flags() != 0
    }

    pub(crate) fn flags(&self) -> u8 {
        (self.events as u8 * EVENTS)
            | (self.preemptoff as u8 * PREEMPTOFF)
            | (self.wakeup_rt as u8 * WAKEUP_RT)
            | (self.profile as u8 * PROFILE)
    }

    /// Checks the options against this build.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.any() && !BUILT {
            return Err(ConfigError(
                "trace=: this build has no tracing (the kernel crate was built without its `trace` feature)".into(),
            ));
        }
        if !(64..=1 << 24).contains(&self.buf_entries) {
            return Err(ConfigError(format!("trace_buf={}: use 64..=16777216 events per CPU", self.buf_entries)));
        }
        Ok(())
    }
}

impl core::fmt::Display for TraceOptions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let on = [self.events, self.preemptoff, self.wakeup_rt, self.profile];
        let names: Vec<&str> = Self::NAMES.iter().zip(on).filter(|(_, on)| *on).map(|(n, _)| *n).collect();
        f.write_str(if names.is_empty() { "off" } else { "" })?;
        f.write_str(&names.join(","))
    }
}
