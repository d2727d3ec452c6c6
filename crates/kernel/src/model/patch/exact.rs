//! The seed's table, exactly: for an interrupted kernel instruction pointer, the preemption
//! points first reached on every path forward, computed from the machine code.
//!
//! **Mechanism.** Once per process, [`build`] hands every function of the kernel text (the
//! FDEs of `.eh_frame`), its bytes (`Arch::text_bytes`), the read-only data for jump tables
//! (`Arch::text_read_only`) and the site addresses to `codeflow::analyze`, and keeps only the
//! packed [`ExactTable`] (ranges of instructions sharing a next-point set and a "may return
//! before a point" flag). The patch models' interrupt exit asks it ([`ExactTable::lookup`]:
//! constant time, no allocation, no lock) which sites to arm and whether to redirect the
//! return; a function the analysis left unresolved falls back to the per-function table
//! ([`super::ptable`]).
//!
//! **Invariant.** Site indices in the table are positions in `Arch::site_addrs()`, the
//! sorted list the patcher arms by index.

use crate::arch::{Arch, A};
use crate::sync::OnceLock;
use alloc::{format, string::String, string::ToString, vec::Vec};
use codeflow::{Analysis, ExactTable, Function};

/// The exact table and what building it cost.
#[derive(Debug)]
pub struct Exact {
    /// The table the interrupt exit reads.
    pub table: ExactTable,
    /// Nanoseconds the analysis and the packing took.
    pub build_ns: u64,
    /// Functions decoded, analysed (with points or reaching some), unresolved among those.
    pub functions: (usize, usize, usize),
    /// Points in the program.
    pub points: usize,
}

/// The whole-program analysis of the running program's text (allocates; a few hundred ms in
/// a debug build). The kernel keeps only its table; tools and tests ask for it afresh.
pub fn analyze() -> Result<Analysis, String> {
    A::patch_prepare().map_err(|e| e.to_string())?;
    A::unwind_prepare()?;
    let funcs: Vec<Function<'static>> = A::functions_in_text()
        .into_iter()
        .filter_map(|(s, e)| Some(Function { start: s as u64, bytes: A::text_bytes(s, e)? }))
        .collect();
    let sites: Vec<u64> = A::site_addrs().iter().map(|&a| a as u64).collect();
    let data = |addr: u64, len: usize| A::text_read_only(addr as usize, len);
    Ok(codeflow::analyze(&funcs, &sites, &data))
}

static EXACT: OnceLock<Result<Exact, String>> = OnceLock::new();

/// The program's exact table, built on first use (outside interrupt context: it allocates);
/// afterwards [`get`] is signal-safe.
pub fn build() -> Result<&'static Exact, String> {
    EXACT
        .get_or_init(|| {
            let t0 = A::now_ns();
            let a = analyze()?;
            let table = ExactTable::build(&a);
            Ok(Exact { table, build_ns: A::now_ns() - t0, functions: a.counts(), points: a.sites().len() })
        })
        .as_ref()
        .map_err(|e| format!("cannot build the exact preemption-point table: {e}"))
}

/// The exact table, if [`build`] has run successfully.
pub fn get() -> Option<&'static Exact> {
    EXACT.get().and_then(|t| t.as_ref().ok())
}
