//! One bounded boot of the image: QEMU started, its serial port read, its exit awaited or
//! forced.
//!
//! **Mechanism.** [`Machine::boot`] spawns `qemu-system-x86_64 -machine q35 -cpu max -accel
//! ACCEL -m 128M -nographic -no-reboot [-smp N] [-icount shift=0,sleep=off] EXTRA -device
//! isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel IMAGE -append CMDLINE`; one thread reads
//! stdout (the serial port, `-nographic`) and stamps the image's first line, another drains
//! stderr; the caller polls the exit every 20 ms and kills QEMU once the timeout has passed.
//!
//! **Invariant.** [`Machine::boot`] returns within the timeout plus the kill: a boot QEMU did
//! not end itself is [`BootError::TimedOut`], with everything the serial port printed.

use crate::RUST_ENTRY;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// QEMU's accelerator: TCG (emulation, the default) or KVM (the host's CPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

impl Accel {
    /// The name `-accel` takes.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// A machine to boot the image on.
#[derive(Clone, Debug)]
pub struct Machine {
    pub qemu: PathBuf,
    pub image: PathBuf,
    pub accel: Accel,
    /// QEMU's CPUs (`-smp N` when more than 1).
    pub cpus: usize,
    /// `-icount shift=0,sleep=off`: one instruction per virtual ns, the TSC counting them.
    pub icount: bool,
    /// More QEMU arguments, before `-device` and `-kernel`.
    pub extra: Vec<String>,
    /// The longest a boot may take before QEMU is killed.
    pub timeout: Duration,
}

/// What one boot printed and how it ended.
#[derive(Clone, Debug)]
pub struct Boot {
    /// QEMU's exit status (`exit_codes::qemu_status` of the image's code).
    pub status: i32,
    /// Everything on the serial port.
    pub serial: String,
    /// What QEMU itself printed on stderr.
    pub stderr: String,
    /// From QEMU's start to the Rust entry's line on the serial port.
    pub to_rust: Option<Duration>,
    /// From QEMU's start to its exit.
    pub total: Duration,
}

impl Boot {
    /// Whether the image ended with SUCCESS (every check of the run held).
    pub fn succeeded(&self) -> bool {
        self.status == crate::exit_codes::qemu_status(crate::exit_codes::SUCCESS)
    }

    /// The serial port's JSON lines (those starting with `{`).
    pub fn json_lines(&self) -> impl Iterator<Item = &str> {
        self.serial.lines().map(str::trim).filter(|l| l.starts_with('{'))
    }

    /// The last `n` lines of the serial output.
    pub fn tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.serial.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// A boot that did not end by itself.
#[derive(Clone, Debug)]
pub enum BootError {
    /// QEMU could not be started.
    Spawn(String),
    /// QEMU ran past the timeout and was killed.
    TimedOut { after: Duration, serial: String, stderr: String },
    /// QEMU ended on a signal.
    Signal { signal: String, serial: String },
}

impl std::fmt::Display for BootError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootError::Spawn(e) => write!(f, "{e}"),
            BootError::TimedOut { after, serial, stderr } => {
                write!(f, "QEMU did not exit within {after:?}; killed. Serial output:\n{serial}\nstderr:\n{stderr}")
            }
            BootError::Signal { signal, serial } => {
                write!(f, "QEMU was killed by a signal ({signal}); serial:\n{serial}")
            }
        }
    }
}

impl std::error::Error for BootError {}

impl Machine {
    /// QEMU's arguments for a boot with `cmdline`.
    pub fn args(&self, cmdline: &str) -> Vec<String> {
        let mut a: Vec<String> =
            ["-machine", "q35", "-cpu", "max", "-accel", self.accel.name()].map(String::from).into();
        a.extend(["-m", "128M", "-nographic", "-no-reboot"].map(String::from));
        if self.cpus > 1 {
            a.extend(["-smp".into(), self.cpus.to_string()]);
        }
        if self.icount {
            a.extend(["-icount", "shift=0,sleep=off"].map(String::from));
        }
        a.extend(self.extra.iter().cloned());
        a.extend(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel"].map(String::from));
        a.push(self.image.display().to_string());
        a.extend(["-append".into(), cmdline.into()]);
        a
    }

    /// Boots the image with `cmdline` and waits for QEMU's exit, at most [`Machine::timeout`].
    pub fn boot(&self, cmdline: &str) -> Result<Boot, BootError> {
        let started = Instant::now();
        let mut child = Command::new(&self.qemu)
            .args(self.args(cmdline))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| BootError::Spawn(format!("cannot start {}: {e}", self.qemu.display())))?;
        let serial = Arc::new(Mutex::new((String::new(), None::<Duration>)));
        let reader = read_serial(child.stdout.take().expect("piped"), Arc::clone(&serial), started);
        let mut stderr_pipe = child.stderr.take().expect("piped");
        let errs = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr_pipe.read_to_string(&mut s);
            s
        });
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if started.elapsed() <= self.timeout => std::thread::sleep(Duration::from_millis(20)),
                // past the timeout, or waiting failed: end it (the wait below reaps it)
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = reader.join();
                    let stderr = errs.join().unwrap_or_default();
                    let serial = std::mem::take(&mut lock(&serial).0);
                    return Err(BootError::TimedOut { after: self.timeout, serial, stderr });
                }
            }
        };
        let total = started.elapsed();
        let _ = reader.join();
        let stderr = errs.join().unwrap_or_default();
        let (serial, to_rust) = std::mem::take(&mut *lock(&serial));
        match status.code() {
            Some(status) => Ok(Boot { status, serial, stderr, to_rust, total }),
            None => Err(BootError::Signal { signal: format!("{status:?}"), serial }),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads QEMU's stdout into `serial` until it closes, stamping the first [`RUST_ENTRY`].
fn read_serial(
    mut out: impl Read + Send + 'static,
    serial: Arc<Mutex<(String, Option<Duration>)>>,
    started: Instant,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut s = lock(&serial);
            s.0.push_str(&String::from_utf8_lossy(&buf[..n]));
            if s.1.is_none() && s.0.contains(RUST_ENTRY) {
                s.1 = Some(started.elapsed());
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(qemu: &str) -> Machine {
        Machine {
            qemu: qemu.into(),
            image: "/img".into(),
            accel: Accel::Tcg,
            cpus: 2,
            icount: true,
            extra: vec![],
            timeout: Duration::from_millis(300),
        }
    }

    #[test]
    fn the_arguments_ask_for_the_cpus_the_clock_and_the_exit_device() {
        let a = machine("q").args("preempt=full cpus=2").join(" ");
        assert!(a.starts_with("-machine q35 -cpu max -accel tcg -m 128M -nographic -no-reboot -smp 2"), "{a}");
        assert!(a.contains("-icount shift=0,sleep=off -device isa-debug-exit,iobase=0xf4,iosize=0x04"), "{a}");
        assert!(a.ends_with("-kernel /img -append preempt=full cpus=2"), "{a}");
        let one = Machine { cpus: 1, icount: false, ..machine("q") }.args("x").join(" ");
        assert!(!one.contains("-smp") && !one.contains("-icount"), "{one}");
    }

    /// A "QEMU" that never exits is killed at the timeout and its output kept.
    #[test]
    fn a_boot_that_does_not_end_is_killed_at_the_timeout() {
        let dir = std::env::temp_dir().join(format!("atomkernel-qemu-hang-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("qemu-hangs");
        std::fs::write(&fake, "#!/bin/sh\necho atomkernel-metal: Rust entry\nexec sleep 30\n").unwrap();
        std::process::Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
        let r = machine(fake.to_str().unwrap()).boot("x");
        std::fs::remove_dir_all(&dir).unwrap();
        match r {
            Err(BootError::TimedOut { serial, .. }) => assert!(serial.contains(RUST_ENTRY), "{serial}"),
            other => panic!("not killed: {other:?}"),
        }
    }

    #[test]
    fn a_boot_reports_the_status_and_the_serial_lines() {
        let dir = std::env::temp_dir().join(format!("atomkernel-qemu-ok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("qemu-ok");
        std::fs::write(&fake, "#!/bin/sh\necho 'boot line'\necho '{\"test\":\"a\"}'\nexit 33\n").unwrap();
        std::process::Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
        let b = machine(fake.to_str().unwrap()).boot("x").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(b.succeeded(), "33 = SUCCESS: {}", b.status);
        assert_eq!(b.json_lines().collect::<Vec<_>>(), ["{\"test\":\"a\"}"]);
        assert_eq!(b.tail(1), "{\"test\":\"a\"}");
    }
}
