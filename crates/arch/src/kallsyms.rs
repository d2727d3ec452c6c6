//! `kallsyms`: code addresses back to `function+offset/size` and `file:line`, for reports.
//!
//! **Mechanism.** On first use, the running program's symbol table and DWARF line tables are
//! opened with `addr2line` (`/proc/self/exe`, read once and kept). A look-up takes a runtime
//! address back through the load bias ([`crate::text::load_bias`]), names the ELF symbol
//! containing it with the offset into it (Linux's `%pS`: `schedule+0x2a/0x90`, the size from
//! the function's FDE, [`crate::unwind::function_of`]), and gives the innermost source
//! location outside the Rust standard library (a loop inlined from `core` is charged to the
//! kernel code that wrote it).
//!
//! **Invariant.** Answers only from the program's own tables, never a guess from a nearby
//! symbol; an address outside them is printed raw. Allocates and reads files: never call it
//! from a signal handler or interrupt context (reports record raw addresses there and are
//! symbolized later, in task context or on the host side).

pub use arch_api::Symbol;
use std::sync::Mutex;

/// The program's tables, opened on first use (`None` inside: the program has none). The
/// loader is not `Sync`, so look-ups take turns; only host-side code symbolizes (see the
/// invariant), so no CPU thread ever waits here.
static LOADER: Mutex<Option<Option<addr2line::Loader>>> = Mutex::new(None);

/// Describes `addr`. `is_return_address` says it is the instruction after a call (a backtrace
/// entry above the first): the look-up then uses `addr - 1`, which is still inside the call.
pub fn lookup(addr: usize, is_return_address: bool) -> Symbol {
    let pc = if is_return_address { addr.saturating_sub(1) } else { addr };
    let mut sym = Symbol { addr, ..Symbol::default() };
    let mut guard = LOADER.lock().unwrap_or_else(|e| e.into_inner());
    let loader = guard.get_or_insert_with(|| addr2line::Loader::new("/proc/self/exe").ok());
    let (Some(loader), Some(probe)) = (loader.as_ref(), pc.checked_sub(crate::text::load_bias())) else { return sym };
    if let Some(s) = loader.find_symbol_info(probe as u64) {
        sym.function = Some(format!("{:#}", rustc_demangle::demangle(s.name())));
        sym.offset = (probe as u64).saturating_sub(s.address()) as usize;
        sym.size = crate::unwind::function_of(pc).map_or(0, |(lo, hi)| hi - lo);
    }
    let mut places = Vec::new();
    if let Ok(mut frames) = loader.find_frames(probe as u64) {
        while let Ok(Some(fr)) = frames.next() {
            if let Some(l) = fr.location {
                places.push((l.file.map(short_path), l.line));
            }
        }
    }
    let is_std = |p: &(Option<String>, Option<u32>)| p.0.as_deref().is_some_and(|f| f.starts_with("/rustc/"));
    if let Some((file, line)) = places.iter().find(|p| !is_std(p)).or(places.first()).cloned() {
        sym.file = file;
        sym.line = line;
    }
    sym
}

/// A source path from the workspace root when it is under it (`crates/...`), else as given.
fn short_path(p: &str) -> String {
    match p.find("crates/") {
        Some(i) => p[i..].to_string(),
        None => p.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_function_is_named_with_its_offset_and_source_line() {
        crate::unwind::prepare().unwrap(); // the function's size comes from its FDE
        let here = crate::cpu::current_ip();
        let s = super::lookup(here, false);
        let name = s.function.clone().unwrap_or_default();
        assert!(name.contains("a_function_is_named_with_its_offset_and_source_line"), "{s}");
        assert!(s.offset > 0 && s.offset < s.size, "{s}");
        // The innermost source frame: `current_ip`, inlined here from cpu.rs.
        assert_eq!(s.file.as_deref(), Some("crates/arch/src/cpu.rs"), "{s}");
        assert!(super::lookup(16, false).function.is_none());
    }
}
