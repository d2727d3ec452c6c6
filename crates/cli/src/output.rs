//! The command's report on stdout: a reader that goes away (`atomkernel ... | head`) ends the
//! command as a closed pipe ends any Unix tool, after the lab's cleanup, not with a panic.
//!
//! **Mechanism.** Rust's runtime ignores SIGPIPE, so a write to a closed pipe fails with
//! `EPIPE` and `println!` panics with a backtrace. [`outln!`] and [`out!`] write through
//! [`write()`] instead: on `BrokenPipe` it undoes what the lab made (scratch directories, the
//! Go peer's process, as the SIGINT path does) and exits with 141, the status of a tool killed
//! by SIGPIPE (128 + 13); any other write error is said on stderr, exit 1.
//!
//! **Invariant.** The command writes its report to stdout only through these macros.

use std::io::{self, Write};

/// Writes `args` (and a newline) to stdout; a failed write ends the command (see the module
/// docs).
pub(crate) fn write(args: std::fmt::Arguments<'_>, newline: bool) {
    let mut out = io::stdout().lock();
    let r = out.write_fmt(args).and_then(|()| if newline { out.write_all(b"\n") } else { Ok(()) });
    if let Err(e) = r {
        gone(&e);
    }
}

/// The end of a command whose stdout failed.
fn gone(e: &io::Error) -> ! {
    lab::cleanup::undo_all();
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(128 + 13);
    }
    eprintln!("atomkernel: cannot write the report to stdout: {e}");
    std::process::exit(1)
}

/// `println!` for the report (see the module docs).
macro_rules! outln {
    () => {
        $crate::output::write(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*), true)
    };
}

/// `print!` for the report (see the module docs).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*), false)
    };
}

pub(crate) use {out, outln};
