//! Boot configuration: the kernel command line.
//!
//! **Invariant.** A [`Config`] that exists has been validated: every field is in range and
//! names something this build can run. Bad input is an [`ConfigError`] that says what was
//! wrong and what to do.

/// `Display` (its name) and `FromStr` (by name, or a [`ConfigError`] that names the key, the
/// value and every choice) for a boot option's closed set of values: a type with `ALL` and
/// `name()`.
macro_rules! named_choice {
    ($ty:ty, $key:literal, $what:literal) => {
        impl core::fmt::Display for $ty {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl core::str::FromStr for $ty {
            type Err = $crate::config::ConfigError;
            fn from_str(s: &str) -> Result<Self, $crate::config::ConfigError> {
                Self::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
                    let names: alloc::vec::Vec<&str> = Self::ALL.iter().map(|m| m.name()).collect();
                    let (key, what) = ($key, $what);
                    $crate::config::ConfigError(alloc::format!(
                        "{key}={s}: unknown {what}; choose one of {}",
                        names.join(", ")
                    ))
                })
            }
        }
    };
}

mod error;
mod model;
mod patch;
mod trace;
mod watchdog;

use crate::arch::{Arch, A};
use alloc::{format, string::String, string::ToString, vec::Vec};
use core::str::FromStr;

/// How the patch models' patches synchronise the other CPUs (`patch_sync=none|ipi`).
pub use arch_api::PatchSync;
pub use error::ConfigError;
pub use model::PreemptModel;
use patch::parse_patch_sync;
pub use patch::{PatchLeaf, PtableMode};
pub use trace::{TraceOptions, BUILT};
pub(crate) use trace::{EVENTS, PREEMPTOFF, PROFILE, WAKEUP_RT};
pub use watchdog::WatchdogConfig;

/// Where bottom halves (softirqs, tasklets) run against tasks (`bh=`): the 1996 mail's
/// "extended bottom half priority notion".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BhMode {
    /// At `irq_exit`, ahead of any task; work past the budget goes to a SCHED_NORMAL
    /// `ksoftirqd` (Linux without `threadirqs`).
    Classic,
    /// All softirq work in `ksoftirqd`, SCHED_FIFO at `bh_prio` (PREEMPT_RT): an RT task above
    /// that priority runs before bottom halves.
    Threaded,
}

impl BhMode {
    /// Every mode, in the order reports list them.
    pub const ALL: [BhMode; 2] = [BhMode::Classic, BhMode::Threaded];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            BhMode::Classic => "classic",
            BhMode::Threaded => "threaded",
        }
    }
}

named_choice!(BhMode, "bh", "bottom-half mode");

/// A kernel instance's boot configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Number of CPUs (`cpus=`, 1..=64), each a host thread.
    pub cpus: usize,
    /// Tick rate in Hz (Linux's `HZ`), 1..=10000.
    pub hz: u32,
    /// The preemption model.
    pub preempt: PreemptModel,
    /// Usable bytes of each task's stack.
    pub stack_size: usize,
    /// SCHED_RR time slice in ticks.
    pub rr_timeslice_ticks: u32,
    /// Host CPUs to pin the CPU threads to (`pin=0,1`: CPU 0 on host CPU 0, CPU 1 on host
    /// CPU 1); CPUs past the list's end are not pinned.
    pub pin: Vec<usize>,
    /// Copy printk output to stderr as it is written.
    pub console: bool,
    /// Where bottom halves run (`bh=classic|threaded`).
    pub bh: BhMode,
    /// SCHED_FIFO priority of `ksoftirqd` under `bh=threaded` (`bh_prio=`, 1..=99).
    pub bh_prio: u8,
    /// Tracers to run (`trace=`, `trace_buf=`); all off by default.
    pub trace: TraceOptions,
    /// Report a CPU that has sat idle this many milliseconds while tasks still live, every one
    /// asleep (`hung_timeout_ms=`, Linux's `hung_task_timeout_secs` for the whole CPU); 0 = off.
    pub hung_timeout_ms: u64,
    /// The patch models' point table (`ptable=exact|function`).
    pub ptable: PtableMode,
    /// Where the patch models serve an event whose interrupted function reaches no point
    /// (`patch_leaf=walk|return`).
    pub patch_leaf: PatchLeaf,
    /// How the patch models' per-event patches synchronise the other CPUs
    /// (`patch_sync=none|ipi`: one byte alone, or `text_poke_bp`'s int3-first protocol with a
    /// serializing round after each step).
    pub patch_sync: PatchSync,
    /// Time the patch handler's parts (`patch_parts=on`): the look-ups, the unwinding, the
    /// arming and the redirect, each a lap of the cycle counter added to `PatchStats`. Off by
    /// default: the laps cost the handler about a tenth of its instructions, and its total
    /// (`arm_ns`) is timed either way.
    pub patch_parts: bool,
    /// The detectors and what an oops does (`panic_on_oops=`, `softlockup_thresh_ms=`,
    /// `softlockup_panic=`, `hung_task_timeout_ms=`, `hung_task_panic=`).
    pub watchdog: WatchdogConfig,
}

/// Most CPUs an instance may have (a CPU mask is one 64-bit word).
pub const MAX_CPUS: usize = 64;

fn pin_list(cpus: &[usize]) -> String {
    cpus.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

/// `ksoftirqd`'s default priority under `bh=threaded`: PREEMPT_RT's threaded-IRQ priority.
pub const DEFAULT_BH_PRIO: u8 = 50;

impl Default for Config {
    fn default() -> Self {
        Config {
            cpus: 1,
            hz: 1000,
            preempt: PreemptModel::None,
            stack_size: 256 * 1024,
            rr_timeslice_ticks: 100,
            pin: Vec::new(),
            console: false,
            bh: BhMode::Classic,
            bh_prio: DEFAULT_BH_PRIO,
            trace: TraceOptions::OFF,
            hung_timeout_ms: 0,
            ptable: PtableMode::Exact,
            patch_leaf: PatchLeaf::Walk,
            patch_sync: PatchSync::None,
            patch_parts: false,
            watchdog: WatchdogConfig::OFF,
        }
    }
}

impl Config {
    /// Checks every field; the error names the field, the bad value and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        if !(1..=MAX_CPUS).contains(&self.cpus) {
            return err(format!(
                "cpus={} is out of range: use 1..={MAX_CPUS} (more than the host's cores is allowed, only slower)",
                self.cpus
            ));
        }
        if self.hz == 0 || self.hz > 10_000 {
            return err(format!(
                "hz={} is out of range: the tick rate must be 1..=10000 (Linux uses 100..1000)",
                self.hz
            ));
        }
        if self.stack_size < 32 * 1024 || self.stack_size > 64 << 20 {
            return err(format!("stack_size={} is out of range: use 32 KiB..64 MiB", self.stack_size));
        }
        if self.rr_timeslice_ticks == 0 {
            return err("rr_timeslice=0 is invalid: an RR slice must be at least one tick".into());
        }
        if !(1..=99).contains(&self.bh_prio) {
            return err(format!(
                "bh_prio={} is out of range: ksoftirqd's SCHED_FIFO priority must be 1..=99 (default {DEFAULT_BH_PRIO})",
                self.bh_prio
            ));
        }
        self.trace.validate()?;
        self.watchdog.validate()?;
        if self.pin.len() > self.cpus {
            return err(format!(
                "pin={}: names {} host CPUs for cpus={}; give at most one per CPU",
                pin_list(&self.pin),
                self.pin.len(),
                self.cpus
            ));
        }
        let host = A::allowed_host_cpus();
        if let Some(c) = self.pin.iter().find(|c| !host.contains(c)) {
            return err(format!(
                "pin={}: host CPU {c} is not available to this process (available: {})",
                pin_list(&self.pin),
                pin_list(&host)
            ));
        }
        Ok(())
    }

    /// Parses a kernel command line such as `"preempt=none hz=250"` over the defaults.
    pub fn from_cmdline(cmdline: &str) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        for word in cmdline.split_whitespace() {
            let (key, value) = word
                .split_once('=')
                .filter(|(key, _)| !key.is_empty())
                .ok_or_else(|| ConfigError(format!("'{word}' is not key=value (e.g. preempt=none)")))?;
            c.set(key, value)?;
        }
        c.validate()?;
        Ok(c)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        fn num<T: FromStr>(key: &str, v: &str) -> Result<T, ConfigError> {
            v.parse().map_err(|_| ConfigError(format!("{key}={v}: expected a whole number")))
        }
        fn switch(key: &str, v: &str) -> Result<bool, ConfigError> {
            match v {
                "1" | "on" => Ok(true),
                "0" | "off" => Ok(false),
                _ => Err(ConfigError(format!("{key}={v}: use 1 or on, 0 or off"))),
            }
        }
        match key {
            "preempt" => self.preempt = value.parse().map_err(|e| ConfigError(format!("preempt={value}: {e}")))?,
            "hz" => self.hz = num(key, value)?,
            "cpus" => self.cpus = num(key, value)?,
            "stack_size" => self.stack_size = num(key, value)?,
            "rr_timeslice" => self.rr_timeslice_ticks = num(key, value)?,
            "pin" => {
                self.pin = value
                    .split(',')
                    .map(|v| v.parse())
                    .collect::<Result<_, _>>()
                    .map_err(|_| ConfigError(format!("pin={value}: expected host CPU numbers separated by commas (pin=0,1)")))?
            }
            "console" => self.console = switch(key, value)?,
            "bh" => self.bh = value.parse()?,
            "bh_prio" => {
                self.bh_prio = value.parse().map_err(|_| {
                    ConfigError(format!("bh_prio={value}: expected a SCHED_FIFO priority 1..=99"))
                })?
            }
            "trace" => self.trace = TraceOptions::parse(value, self.trace.buf_entries)?,
            "trace_buf" => self.trace.buf_entries = num(key, value)?,
            "hung_timeout_ms" => self.hung_timeout_ms = num(key, value)?,
            "ptable" => self.ptable = value.parse()?,
            "patch_leaf" => self.patch_leaf = value.parse()?,
            "patch_sync" => self.patch_sync = parse_patch_sync(value)?,
            "patch_parts" => self.patch_parts = switch(key, value)?,
            _ if self.watchdog.set(key, value)? => {}
            _ => {
                return Err(ConfigError(format!(
                    "unknown boot option '{key}': known options are preempt, hz, cpus, stack_size, rr_timeslice, pin, console, bh, bh_prio, trace, trace_buf, hung_timeout_ms, ptable, patch_leaf, patch_sync, patch_parts, {}",
                    WatchdogConfig::KEYS.join(", ")
                )))
            }
        }
        Ok(())
    }

    /// This configuration with the detectors the lab and the CLI boot with
    /// ([`WatchdogConfig::DEFAULTS`]) unless the caller set any of them: a
    /// kernel that can no longer make progress then ends its run with an error naming the
    /// stuck CPU's task or the blocked task, never a silent hang.
    pub fn with_watchdog_defaults(mut self) -> Config {
        if self.watchdog == WatchdogConfig::OFF {
            self.watchdog = WatchdogConfig::DEFAULTS;
        }
        self
    }

    /// Nanoseconds per tick.
    pub fn tick_ns(&self) -> u64 {
        1_000_000_000 / self.hz as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2021::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        assert_eq!(Config::from_cmdline("").unwrap(), Config::default());
    }

    #[test]
    fn bad_configurations_are_rejected_with_clear_messages() {
        let e = |s: &str| Config::from_cmdline(s).unwrap_err().0;
        assert!(e("preempt=fastest").contains("unknown preemption model 'fastest'"));
        assert!(e("preempt=fastest").contains("none, voluntary, full"));
        assert!(e("hz=0").contains("hz=0 is out of range"));
        assert!(e("hz=abc").contains("expected a whole number"));
        assert!(e("cpus=0").contains("cpus=0 is out of range: use 1..=64"));
        assert!(e("cpus=65").contains("cpus=65 is out of range: use 1..=64"));
        assert!(e("cpus=2 pin=0,0,0").contains("pin=0,0,0: names 3 host CPUs for cpus=2"));
        assert!(e("pin=100000").contains("host CPU 100000 is not available"));
        assert!(e("pin=a,b").contains("pin=a,b: expected host CPU numbers"));
        assert!(e("rr_timeslice=0").contains("at least one tick"));
        assert!(e("bogus=1").contains("unknown boot option 'bogus'"));
        assert!(e("preempt").contains("is not key=value"));
        assert!(e("=none").contains("'=none' is not key=value"));
        assert!(e("preempt=fastest").starts_with("preempt=fastest: "));
        assert!(e("console=yes").contains("console=yes: use 1 or on, 0 or off"));
        assert!(e("stack_size=100").contains("out of range"));
        assert!(e("bh=fast").contains("bh=fast: unknown bottom-half mode; choose one of classic, threaded"));
        assert!(e("bh_prio=0").contains("bh_prio=0 is out of range"));
        assert!(e("bh_prio=100").contains("bh_prio=100 is out of range"));
        assert!(e("bh_prio=x").contains("bh_prio=x: expected a SCHED_FIFO priority"));
        assert!(e("ptable=bogus").contains("ptable=bogus: unknown point table; choose one of exact, function"));
    }

    #[test]
    fn bh_options_parse() {
        let c = Config::from_cmdline("bh=threaded bh_prio=30").unwrap();
        assert_eq!((c.bh, c.bh_prio), (BhMode::Threaded, 30));
        assert_eq!(Config::default().bh, BhMode::Classic);
        for m in BhMode::ALL {
            assert_eq!(m.name().parse::<BhMode>().unwrap(), m);
        }
    }

    #[test]
    fn ptable_parses_and_defaults_to_exact() {
        assert_eq!(Config::default().ptable, PtableMode::Exact);
        assert_eq!(Config::from_cmdline("ptable=function").unwrap().ptable, PtableMode::Function);
        for (i, m) in PtableMode::ALL.into_iter().enumerate() {
            assert_eq!(m.name().parse::<PtableMode>().unwrap(), m);
            assert_eq!(m.index(), i, "the patch tables are kept by index");
        }
    }

    #[test]
    fn patch_leaf_parses_defaults_to_walk_and_refuses_bad_input() {
        assert_eq!(Config::default().patch_leaf, PatchLeaf::Walk);
        for m in PatchLeaf::ALL {
            assert_eq!(Config::from_cmdline(&format!("patch_leaf={m}")).unwrap().patch_leaf, m);
        }
        let e = Config::from_cmdline("patch_leaf=up").unwrap_err().to_string();
        assert!(e.contains("patch_leaf=up: unknown leaf handling; choose one of walk, return"), "{e}");
    }

    #[test]
    fn patch_sync_parses_defaults_to_none_and_refuses_bad_input() {
        assert_eq!(Config::default().patch_sync, PatchSync::None);
        for m in PatchSync::ALL {
            assert_eq!(Config::from_cmdline(&format!("patch_sync={}", m.name())).unwrap().patch_sync, m);
        }
        assert!(!Config::default().patch_parts);
        assert!(Config::from_cmdline("patch_parts=on").unwrap().patch_parts);
        assert!(!Config::from_cmdline("patch_parts=0").unwrap().patch_parts);
        let e = Config::from_cmdline("patch_parts=yes").unwrap_err().to_string();
        assert!(e.contains("patch_parts=yes: use 1 or on, 0 or off"), "{e}");
        let e = Config::from_cmdline("patch_sync=sometimes").unwrap_err().to_string();
        assert!(e.contains("patch_sync=sometimes: unknown patch synchronisation; choose one of none, ipi"), "{e}");
    }

    #[test]
    fn watchdog_options_parse_and_refuse_bad_input() {
        let c = Config::from_cmdline(
            "panic_on_oops=1 softlockup_thresh_ms=500 softlockup_panic=1 hung_task_timeout_ms=900 hung_task_panic=1",
        )
        .unwrap();
        let w = c.watchdog;
        assert!(w.panic_on_oops && w.softlockup_panic && w.hung_task_panic);
        assert_eq!((w.softlockup_thresh_ms, w.hung_task_timeout_ms), (500, 900));
        assert_eq!(Config::default().watchdog, WatchdogConfig::OFF);
        assert_eq!(Config::default().with_watchdog_defaults().watchdog, WatchdogConfig::DEFAULTS);
        assert_eq!(c.clone().with_watchdog_defaults().watchdog, w, "options given are kept");
        let e = |s: &str| Config::from_cmdline(s).unwrap_err().0;
        assert!(e("panic_on_oops=yes").starts_with("panic_on_oops=yes: use 1 or 0"));
        assert!(
            e("softlockup_thresh_ms=-1").contains("softlockup_thresh_ms=-1: expected a whole number of milliseconds")
        );
        assert!(e("softlockup_panic=1").contains("softlockup_panic=1 needs the detector on"));
        assert!(e("hung_task_panic=1").contains("hung_task_panic=1 needs the detector on"));
        assert!(e("bogus=1").contains("hung_task_timeout_ms, hung_task_panic"));
    }

    #[test]
    fn cmdline_sets_fields() {
        let c = Config::from_cmdline("preempt=none hz=250 rr_timeslice=5").unwrap();
        assert_eq!((c.hz, c.rr_timeslice_ticks, c.preempt), (250, 5, PreemptModel::None));
        assert_eq!(c.tick_ns(), 4_000_000);
    }
}
