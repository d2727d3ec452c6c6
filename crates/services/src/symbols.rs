//! The program's own symbols: which function holds a code address.
//!
//! **Mechanism.** Reads the ELF symbol table of `/proc/self/exe` once with the `object` crate,
//! keeps the function symbols sorted by address, and maps a runtime address back through the
//! load bias (`arch::text::load_bias`) to the function containing it, demangled. Where the
//! program has debug information, [`source_function`] goes further with `addr2line`: the
//! innermost *source* function at the address, through inlining (a point in a closure that was
//! inlined into `syscall()` is named after the closure, not after `syscall`).
//!
//! **Invariant.** A look-up answers only from symbols whose `[address, address + size)` holds
//! the address; anything else is `None`, never a guess from the nearest symbol.

use object::{Object, ObjectSymbol, SymbolKind};

/// Function symbols of the running program, sorted by runtime address.
pub struct Symbols {
    funcs: Vec<(usize, usize, String)>,
}

impl Symbols {
    /// Loads the running program's function symbols.
    pub fn load() -> Result<Symbols, String> {
        let data = std::fs::read("/proc/self/exe").map_err(|e| format!("cannot read /proc/self/exe: {e}"))?;
        let file = object::File::parse(&*data).map_err(|e| format!("cannot parse the program's ELF: {e}"))?;
        let bias = arch::text::load_bias();
        let mut funcs: Vec<(usize, usize, String)> = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.size() > 0)
            .filter_map(|s| {
                let name = s.name().ok()?;
                let lo = s.address() as usize + bias;
                Some((lo, lo + s.size() as usize, format!("{:#}", rustc_demangle::demangle(name))))
            })
            .collect();
        funcs.sort_unstable_by_key(|f| f.0);
        Ok(Symbols { funcs })
    }

    /// The function whose code contains `addr`.
    pub fn function_at(&self, addr: usize) -> Option<&str> {
        let i = self.funcs.partition_point(|f| f.0 <= addr).checked_sub(1)?;
        let (lo, hi, name) = &self.funcs[i];
        (addr >= *lo && addr < *hi).then_some(name.as_str())
    }
}

/// The innermost source-level function at `addr` (through inlined frames), from the DWARF
/// debug information of the running program; `None` without debug information.
pub struct SourceFunctions {
    loader: Option<addr2line::Loader>,
}

impl SourceFunctions {
    /// Opens the running program's debug information (absent: every look-up answers `None`).
    pub fn load() -> SourceFunctions {
        SourceFunctions { loader: addr2line::Loader::new("/proc/self/exe").ok() }
    }

    /// The innermost function at runtime address `addr`.
    pub fn source_function(&self, addr: usize) -> Option<String> {
        let loader = self.loader.as_ref()?;
        let probe = addr.checked_sub(arch::text::load_bias())? as u64;
        let mut frames = loader.find_frames(probe).ok()?;
        let frame = frames.next().ok()??;
        Some(frame.function?.demangle().ok()?.into_owned())
    }
}

/// One row of the preemption-point table.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PointRow {
    /// Runtime address of the site.
    pub addr: usize,
    /// The source function it is written in (through inlining), from debug information, or
    /// else the machine-code function holding it, from the symbol table.
    pub function: Option<String>,
    /// The machine-code function holding it (the ELF symbol), if the symbols say.
    pub symbol: Option<String>,
    /// Source file, line and column of the `preempt_point!`.
    pub file: &'static str,
    pub line: u32,
    pub column: u32,
}

/// Every preemption point of the program with its function and source location.
pub fn point_table() -> Result<Vec<PointRow>, String> {
    let syms = Symbols::load()?;
    let source = SourceFunctions::load();
    let mut rows: Vec<PointRow> = arch::ppoint::sites()
        .into_iter()
        .map(|s| PointRow {
            addr: s.addr,
            function: source.source_function(s.addr).or_else(|| syms.function_at(s.addr).map(String::from)),
            symbol: syms.function_at(s.addr).map(String::from),
            file: s.info.file,
            line: s.info.line,
            column: s.info.column,
        })
        .collect();
    rows.sort_by_key(|r| r.addr);
    Ok(rows)
}
