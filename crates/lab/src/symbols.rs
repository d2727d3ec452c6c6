//! The program's own symbols: which function holds a code address.
//!
//! **Mechanism.** Reads the ELF symbol table of `/proc/self/exe` once with the `object` crate,
//! keeps the function symbols sorted by address, and maps a runtime address back through the
//! load bias (`kernel::text::load_bias`) to the function containing it, demangled. Where the
//! program has debug information, `source_function` goes further with `addr2line`: the
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
        let bias = kernel::text::load_bias();
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
    pub(crate) fn function_at(&self, addr: usize) -> Option<&str> {
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
    pub(crate) fn source_function(&self, addr: usize) -> Option<String> {
        let loader = self.loader.as_ref()?;
        let probe = addr.checked_sub(kernel::text::load_bias())? as u64;
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
    let mut rows: Vec<PointRow> = kernel::text::sites()
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

/// A resolved code place: function and source line.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Place {
    /// What happened there, if it is not a preemption point (`syscall entry`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub what: Option<String>,
    /// The source function (through inlining), or the ELF symbol.
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.what, &self.function) {
            (Some(w), Some(func)) => write!(f, "{w} in {func}")?,
            (Some(w), None) => f.write_str(w)?,
            (None, func) => f.write_str(func.as_deref().unwrap_or("?"))?,
        }
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, " at {file}:{line}"),
            (Some(file), None) => write!(f, " in {file}"),
            _ => Ok(()),
        }
    }
}

/// Functions whose frames are the tracing and kernel-entry plumbing around a place rather than
/// the place itself: a tracer reports the first frame outside them (and outside the Rust
/// standard library, whose sources are under `/rustc/`).
const PLUMBING: [&str; 6] =
    ["arch::", "hostlab::", "kernel::trace::", "kernel::preempt::", "kernel::syscall::", "<kernel::preempt::"];

type Frame = (Option<String>, Option<String>, Option<u32>);

fn is_std(f: &Frame) -> bool {
    f.1.as_deref().is_some_and(|file| file.starts_with("/rustc/"))
}

fn is_plumbing(f: &Frame) -> bool {
    is_std(f) || f.0.as_deref().is_none_or(|n| PLUMBING.iter().any(|p| n.starts_with(p)))
}

/// Maps code addresses to [`Place`]s: DWARF through inlining where there is debug information,
/// the ELF symbol table otherwise.
pub struct Resolver {
    syms: Option<Symbols>,
    loader: Option<addr2line::Loader>,
    /// Preemption-point sites: address -> (file, line) of the `preempt_point!`.
    sites: std::collections::HashMap<usize, (&'static str, u32)>,
}

impl Resolver {
    /// Loads the running program's symbols and debug information (either may be missing).
    pub fn load() -> Resolver {
        let sites = kernel::text::sites().into_iter().map(|s| (s.addr, (s.info.file, s.info.line))).collect();
        Resolver { syms: Symbols::load().ok(), loader: addr2line::Loader::new("/proc/self/exe").ok(), sites }
    }

    /// Every source frame at `addr`, innermost first: (function, file, line).
    fn frames(&self, addr: usize) -> Vec<Frame> {
        let (Some(loader), Some(probe)) = (&self.loader, addr.checked_sub(kernel::text::load_bias())) else {
            return Vec::new();
        };
        let Ok(mut frames) = loader.find_frames(probe as u64) else { return Vec::new() };
        let mut out = Vec::new();
        while let Ok(Some(f)) = frames.next() {
            let function = f.function.and_then(|n| n.demangle().ok().map(|s| s.into_owned()));
            let (file, line) = f.location.map_or((None, None), |l| (l.file.map(short_path), l.line));
            out.push((function, file, line));
        }
        out
    }

    /// The innermost place at `addr` outside the standard library (what a profiler sample is
    /// charged to: `csum`, not the slice iterator inlined into it).
    pub(crate) fn innermost(&self, addr: usize) -> Place {
        let frames = self.frames(addr);
        match frames.iter().find(|f| !is_std(f)).or(frames.first()).cloned() {
            Some((function, file, line)) => Place { what: None, function, file, line },
            None => Place {
                what: None,
                // Outside the program's symbols: libc, the vDSO, the dynamic loader.
                function: self.symbol(addr).or_else(|| Some(format!("code outside the program ({addr:#x})"))),
                file: None,
                line: None,
            },
        }
    }

    /// The place a tracer names for `addr`: the first frame outside the tracing and entry
    /// plumbing (the caller of `preempt_disable()`, of `syscall()`, ...). `src`, when given,
    /// is the source location a `#[track_caller]` API saw, and wins for file and line.
    pub fn caller_place(&self, addr: usize, src: Option<(&str, u32)>) -> Place {
        let frames = if addr == 0 { Vec::new() } else { self.frames(addr) };
        // Without a caller's location, a place that is all plumbing (an IP inside the arch
        // layer's own code, say) is named by its innermost frame, or its ELF symbol.
        let fallback = || frames.iter().find(|f| !is_std(f)).or(frames.first());
        let outside = frames.iter().find(|f| !is_plumbing(f)).or_else(|| src.is_none().then(fallback).flatten());
        let mut place = match outside {
            Some((function, file, line)) => {
                Place { what: None, function: function.clone(), file: file.clone(), line: *line }
            }
            None if src.is_none() => Place { what: None, function: self.symbol(addr), file: None, line: None },
            None => Place::default(),
        };
        if let Some(&(file, line)) = self.sites.get(&addr) {
            place.file = Some(short_path(file));
            place.line = Some(line);
        }
        if let Some((file, line)) = src {
            place.file = Some(short_path(file));
            place.line = Some(line);
        }
        place
    }

    fn symbol(&self, addr: usize) -> Option<String> {
        self.syms.as_ref()?.function_at(addr).map(String::from)
    }
}

/// The innermost place outside the standard library of each address in the ELF file at
/// `path` (a static executable, its addresses as linked: the bare-metal image), from its debug
/// information; `None` where it has none.
pub fn places_in_file(path: &std::path::Path, addrs: &[u64]) -> Vec<Option<Place>> {
    let Ok(loader) = addr2line::Loader::new(path) else { return vec![None; addrs.len()] };
    let place = |addr: u64| -> Option<Place> {
        let mut frames = loader.find_frames(addr).ok()?;
        let mut all = Vec::new();
        while let Ok(Some(f)) = frames.next() {
            let function = f.function.and_then(|n| n.demangle().ok().map(|s| s.into_owned()));
            let (file, line) = f.location.map_or((None, None), |l| (l.file.map(short_path), l.line));
            all.push((function, file, line));
        }
        let (function, file, line) = all.iter().find(|f| !is_std(f)).or(all.first()).cloned()?;
        Some(Place { what: None, function, file, line })
    };
    addrs.iter().map(|&a| place(a)).collect()
}

/// A source path from the workspace root when it is under it (`crates/...`), else as given: a
/// library's path (Rust's `/rustc/<hash>/library/...`, even where it holds a `crates/`
/// directory, as `stdarch` does; a dependency under Cargo's `registry/src/` or `git/checkouts/`)
/// stays absolute, so [`is_project_file`] can tell the project's code from the rest.
fn short_path(p: &str) -> String {
    let root = env!("CARGO_MANIFEST_DIR").strip_suffix("/crates/lab").unwrap_or("/nonexistent");
    if let Some(rel) = p.strip_prefix(root).and_then(|r| r.strip_prefix('/')) {
        return rel.to_string();
    }
    let library = ["/rustc/", "/registry/src/", "/git/checkouts/"];
    match p.find("crates/") {
        Some(i) if !library.iter().any(|l| p.contains(l)) => p[i..].to_string(),
        _ => p.to_string(),
    }
}

/// True if `file` (as [`Place`] and `points_check::Loc` give it) is the project's own source:
/// a path under the workspace, which [`short_path`] makes relative. Rust's library, libc and
/// the dependencies keep absolute paths (or have no file at all).
pub(crate) fn is_project_file(file: &str) -> bool {
    !file.is_empty() && !file.starts_with('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An address outside the program's symbols is named as such, with the address, never "?";
    /// one inside names its (innermost, perhaps inlined) function and source line.
    #[test]
    fn innermost_names_code_outside_the_program_by_its_address() {
        let r = Resolver::load();
        assert_eq!(r.innermost(0x1000).to_string(), "code outside the program (0x1000)");
        let inside = r.innermost(short_path as fn(&str) -> String as usize).to_string();
        assert!(inside.contains("crates/lab/src/symbols.rs:"), "named with its file and line: {inside}");
    }
}
