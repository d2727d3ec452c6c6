//! `atomkernel qemu demo|torture|compare|check`: the bare-metal image (crates/arch-metal) built if
//! its sources changed, booted under `qemu-system-x86_64` once per model (per round), its
//! serial port's JSON lines read into the hosted commands' tables and `--json` rows.
//!
//! **Mechanism.** [`plan`] checks the options alone (no tool, no build): the CPU count
//! (the kernel's own check), `--icount` only under TCG, `--accel kvm` only with a usable
//! `/dev/kvm`, `--timeout`. [`run`] then finds QEMU (`$QEMU`, else the `PATH`: missing, an error
//! naming Debian's `qemu-system-x86`), asks its version, builds the image with
//! `qemu::image::build` into `target/metal` (saying on stderr whether it built), and hands a
//! [`Session`] to the subcommand, which boots through `qemu::Machine` (each boot bounded by
//! `--timeout`).
//!
//! **Invariant.** Bad input is refused before any tool runs or anything builds, with the
//! option named; a boot that does not end SUCCESS makes the command fail, with the tail of
//! its serial output; every header names the substrate (QEMU's version, TCG or KVM, the CPUs)
//! and the clock (`-icount`: instructions; else the TSC in ns).

use crate::output::outln;
use crate::values::{self, List};
use kernel::{PatchLeaf, PatchSync, PreemptModel};
use std::path::PathBuf;
use std::time::Duration;

mod check;
mod compare;
mod demo;
mod torture;

/// The options every `qemu` subcommand takes (before or after its name).
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct QemuArgs {
    #[command(subcommand)]
    command: Option<QemuCommand>,
    /// Preemption model (none, voluntary, full, lazy, cpulock, patch-int3, patch-call) or
    /// `all`: one boot per model.
    #[arg(long, global = true, default_value = "all", value_parser = values::list::<PreemptModel>())]
    preempt: List<PreemptModel>,
    /// QEMU's CPUs (`-smp N`) and the kernel's (`cpus=N`); with 2 or more the image runs its
    /// SMP scenario (`image.run=smp`). Default: 1.
    #[arg(long, global = true)]
    cpus: Option<usize>,
    /// How the patch models' patches synchronise the other CPUs (`patch_sync=`): none (one
    /// byte alone) or ipi (Linux's text_poke_bp: int3 first, a SYNC_CORE round, the final
    /// byte, another round; on bare metal each round an NMI to every other CPU). Default: the
    /// kernel's (none); only with a patch model.
    #[arg(long, global = true, value_parser = values::one::<PatchSync>())]
    patch_sync: Option<PatchSync>,
    /// Where the patch models serve an event whose interrupted function reaches no point
    /// (`patch_leaf=`): walk (up the stack, at the first caller's next point) or return (at
    /// that function's return: one unwind step, but at a return rather than a point).
    /// Default: the kernel's (walk); only with a patch model.
    #[arg(long, global = true, value_parser = values::one::<PatchLeaf>())]
    patch_leaf: Option<PatchLeaf>,
    /// QEMU's accelerator: tcg (emulation) or kvm (needs a usable /dev/kvm).
    #[arg(long, global = true, value_enum, default_value_t = Accel::Tcg)]
    accel: Accel,
    /// The exact clock: `-icount shift=0,sleep=off`, one instruction per virtual ns, so every
    /// figure counts instructions and two boots print the same (TCG only).
    #[arg(long, global = true)]
    icount: bool,
    /// Seconds a boot may take before QEMU is killed and the command fails, 1..=3600.
    #[arg(long, global = true, default_value_t = 60)]
    timeout: u64,
    /// One JSON object per row (one per line) instead of the table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand, Clone, Debug)]
enum QemuCommand {
    /// The seed's scenario on bare metal (the default): where the RT task ran and its wait,
    /// one boot per model.
    Demo,
    /// The register-integrity torture on bare metal: user and kernel calls preempted on the
    /// real interrupt return, every register and the red zone checked.
    Torture,
    /// RT probes beside the lab's workloads on bare metal (`image.run=lab`): p50/p99 per
    /// model and workload, the verdict first.
    Compare(compare::CompareArgs),
    /// The static latency bound checked against every sample (`image.run=bound-check`, under
    /// the patch models and the exact clock): interrupts at pseudo-random instructions, each
    /// violation with its `file:line`; exits 2 on a violation.
    Check(check::CheckArgs),
}

/// `--accel`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Accel {
    Tcg,
    Kvm,
}

/// What the options ask for, checked.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    models: Vec<PreemptModel>,
    cpus: usize,
    accel: qemu::Accel,
    icount: bool,
    timeout: Duration,
    json: bool,
    /// `--patch-sync`, for the patch models' boots.
    patch_sync: Option<PatchSync>,
    /// `--patch-leaf`, for the patch models' boots.
    patch_leaf: Option<PatchLeaf>,
}

/// Checks the options before any tool runs or anything builds.
pub(crate) fn plan(a: &QemuArgs) -> Result<Plan, String> {
    let models = a.preempt.0.clone();
    if models.is_empty() {
        return Err("--preempt: name at least one model, or all".into());
    }
    let cpus = a.cpus.unwrap_or(1);
    values::boot(&kernel::Config { cpus, ..kernel::Config::default() })?;
    let given = [("--patch-sync", a.patch_sync.map(|p| p.name())), ("--patch-leaf", a.patch_leaf.map(|p| p.name()))];
    crate::input::patch_options_apply(&given, &models)?;
    if !(1..=3600).contains(&a.timeout) {
        return Err(format!("--timeout {}: use 1..=3600 seconds", a.timeout));
    }
    let accel = match a.accel {
        Accel::Tcg => qemu::Accel::Tcg,
        Accel::Kvm => qemu::Accel::Kvm,
    };
    if a.icount && accel == qemu::Accel::Kvm {
        return Err("--icount with --accel kvm: KVM runs the guest's instructions on the host CPU and cannot count them; use --accel tcg".into());
    }
    if accel == qemu::Accel::Kvm {
        qemu::check_kvm()?;
    }
    match &a.command {
        Some(QemuCommand::Compare(c)) => compare::check(c)?,
        Some(QemuCommand::Check(_)) if cpus > 1 => {
            return Err(format!("--cpus {cpus}: qemu check runs on one CPU; use --cpus 1"))
        }
        Some(QemuCommand::Check(_)) if accel == qemu::Accel::Kvm => {
            return Err(
                "--accel kvm: qemu check counts instructions (-icount), which only TCG can; use --accel tcg".into()
            )
        }
        _ => {}
    }
    let (models, icount) = match &a.command {
        // the check needs the exact clock: always -icount
        Some(QemuCommand::Check(c)) => (check::plan(c, &models)?, true),
        _ => (models, a.icount),
    };
    let timeout = Duration::from_secs(a.timeout);
    let (patch_sync, patch_leaf) = (a.patch_sync, a.patch_leaf);
    Ok(Plan { models, cpus, accel, icount, timeout, json: a.json, patch_sync, patch_leaf })
}

pub(crate) fn run(a: &QemuArgs) -> Result<(), String> {
    let plan = plan(a)?;
    let session = Session::start(plan)?;
    match &a.command {
        None | Some(QemuCommand::Demo) => demo::run(&session),
        Some(QemuCommand::Torture) => torture::run(&session),
        Some(QemuCommand::Compare(c)) => compare::run(&session, c),
        Some(QemuCommand::Check(c)) => match check::run(&session, c, &session.plan.models)? {
            true => Ok(()),
            false => Err("the bound check found samples over their static bound (listed above)".into()),
        },
    }
}

/// A checked plan with QEMU found and the image built.
pub(crate) struct Session {
    plan: Plan,
    qemu: PathBuf,
    version: String,
    image: PathBuf,
}

impl Session {
    fn start(plan: Plan) -> Result<Session, String> {
        let qemu = qemu::find_qemu()?;
        let version = qemu::version(&qemu)?;
        let target_dir = qemu::workspace().join("target").join("metal");
        eprintln!("atomkernel qemu: the image, in {} (cargo rebuilds it if a source changed)", target_dir.display());
        let built = qemu::image::build(&qemu::workspace(), &target_dir)?;
        if built.rebuilt {
            eprintln!("atomkernel qemu: built the image in {:.1} s", built.seconds);
        } else {
            eprintln!("atomkernel qemu: the image is up to date");
        }
        Ok(Session { plan, qemu, version, image: built.image })
    }

    /// The machine every boot of this session runs on.
    fn machine(&self) -> qemu::Machine {
        qemu::Machine {
            qemu: self.qemu.clone(),
            image: self.image.clone(),
            accel: self.plan.accel,
            cpus: self.plan.cpus,
            icount: self.plan.icount,
            extra: vec![],
            timeout: self.plan.timeout,
        }
    }

    /// Boots with `cmdline`; a boot killed at the timeout is an error with its serial tail.
    fn boot(&self, cmdline: &str) -> Result<qemu::Boot, String> {
        self.machine().boot(cmdline).map_err(|e| match e {
            qemu::BootError::TimedOut { after, serial, .. } => format!(
                "`{cmdline}`: QEMU did not exit within {} s (--timeout); killed. The serial output's end:\n{}",
                after.as_secs(),
                tail(&serial, 20)
            ),
            e => format!("`{cmdline}`: {e}"),
        })
    }

    /// The kernel command line of a boot of `model` (the SMP scenario on 2 CPUs or more).
    fn cmdline(&self, model: PreemptModel, image_run: Option<&str>) -> String {
        let mut c = format!("preempt={model}");
        if self.plan.cpus > 1 {
            c += &format!(" cpus={}", self.plan.cpus);
        }
        if let Some(run) = image_run.or(if self.plan.cpus > 1 { Some("smp") } else { None }) {
            c += &format!(" image.run={run}");
        }
        c + &self.patch_options(model)
    }

    /// ` patch_sync=X patch_leaf=Y` for a patch model's boot, each when its option was given.
    fn patch_options(&self, model: PreemptModel) -> String {
        if !model.is_patch() {
            return String::new();
        }
        let sync = self.plan.patch_sync.map(|p| format!(" patch_sync={}", p.name()));
        let leaf = self.plan.patch_leaf.map(|p| format!(" patch_leaf={}", p.name()));
        sync.unwrap_or_default() + &leaf.unwrap_or_default()
    }

    /// The substrate and the clock, one line: `QEMU 7.2.22 TCG, 1 CPU; clock: ...`.
    fn header(&self) -> String {
        let p = &self.plan;
        let accel = if p.accel == qemu::Accel::Kvm { "KVM" } else { "TCG" };
        format!(
            "substrate: QEMU {} {accel}, {} CPU{}, bare metal (crates/arch-metal){}; clock: {}",
            self.version,
            p.cpus,
            if p.cpus == 1 { "" } else { "s" },
            self.patch_header(),
            self.clock_text()
        )
    }

    /// `, patch models with patch_sync=X patch_leaf=Y`, each when its option was given.
    fn patch_header(&self) -> String {
        let p = &self.plan;
        let given: Vec<String> =
            [("patch_sync", p.patch_sync.map(|s| s.name())), ("patch_leaf", p.patch_leaf.map(|l| l.name()))]
                .into_iter()
                .filter_map(|(k, v)| Some(format!("{k}={}", v?)))
                .collect();
        if given.is_empty() {
            String::new()
        } else {
            format!(", patch models with {}", given.join(" "))
        }
    }

    fn clock_text(&self) -> &'static str {
        if self.plan.icount {
            "-icount shift=0: figures in instructions (one per virtual ns), no run-to-run noise"
        } else {
            "TSC ns (calibrated against the PIT), varying run to run"
        }
    }

    /// The unit of the figures: instructions under `-icount`, else ns.
    fn unit(&self) -> &'static str {
        if self.plan.icount {
            "instr"
        } else {
            "ns"
        }
    }

    /// Prints `row`'s fields after [`Self::json_head`]'s, one JSON object on one line.
    fn print_json_row(&self, row: &impl serde::Serialize) -> Result<(), String> {
        let mut o = self.json_head();
        if let serde_json::Value::Object(r) = serde_json::to_value(row).map_err(|e| e.to_string())? {
            o.extend(r);
        }
        outln!("{}", serde_json::Value::Object(o));
        Ok(())
    }

    /// The fields every JSON row starts with: the substrate and the clock.
    fn json_head(&self) -> serde_json::Map<String, serde_json::Value> {
        let p = &self.plan;
        let v = serde_json::json!({"substrate": "qemu", "qemu": self.version, "accel": p.accel.name(),
            "clock": if p.icount { "icount" } else { "tsc" }, "cpus": p.cpus});
        let mut o = v.as_object().cloned().unwrap_or_default();
        if let Some(ps) = p.patch_sync {
            o.insert("patch_sync".into(), ps.name().into());
        }
        if let Some(pl) = p.patch_leaf {
            o.insert("patch_leaf".into(), pl.name().into());
        }
        o
    }
}

/// A failed boot as an error: its status and the serial output's last lines.
fn failed(cmdline: &str, b: &qemu::Boot) -> String {
    format!(
        "`{cmdline}`: the image ended with status {} (not SUCCESS); the serial output's end:\n{}",
        b.status,
        b.tail(20)
    )
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The serial port's JSON line whose `test` is `name`, parsed as `T` (the first, or all).
fn lines_of<T: serde::de::DeserializeOwned>(b: &qemu::Boot, name: &str) -> Result<Vec<T>, String> {
    let mut out = Vec::new();
    for l in b.json_lines() {
        let v: serde_json::Value = match serde_json::from_str(l) {
            Ok(v) => v,
            Err(_) => continue, // a line the serial port interleaved: not a result
        };
        if v["test"] == name {
            out.push(serde_json::from_value(v).map_err(|e| format!("the image's `{name}` line {l}: {e}"))?);
        }
    }
    Ok(out)
}

/// A number with thousands separators (`2,257`).
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
