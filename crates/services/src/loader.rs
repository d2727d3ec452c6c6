//! The loader workload: the seed's "a.out module", read from an in-memory file and relocated.
//!
//! **Mechanism.** [`build_image`] writes a real a.out object (OMAGIC, Linux/i386 `struct exec`
//! layout): a 32-byte header, text, data, text and data relocation tables (`struct
//! relocation_info`: address, 24-bit symbol number, pc-relative, length, extern), a symbol
//! table (`struct nlist`) whose undefined symbols name kernel functions, and a string table.
//! [`Loader`] loads it the way `insmod` did: read and check the header, copy text and data a
//! page per atom into the module's memory, zero bss, resolve the undefined symbols against the
//! kernel symbol table, and apply the relocations 64 per atom: a segment-relative word gets
//! the load address added; an external one the symbol's address, minus the place's own
//! address if it is pc-relative. Every read goes through `MemFile::read_at`, as reads from
//! a file would.
//!
//! **Invariant.** A load either fails with a reason (bad magic, a table past the end of the
//! file, a relocation outside its segment, an unknown symbol) or leaves every relocated word
//! equal to its addend plus its target; the loader never writes outside the module's memory.

/// The kernel symbol table's map: std's hash map on the host; on metal (no std, so no
/// `RandomState`) alloc's B-tree map, which has the same `get`/`collect`/`insert`.
#[cfg(not(feature = "hosted"))]
use alloc::collections::BTreeMap as HashMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
#[cfg(feature = "hosted")]
use std::collections::HashMap;

/// `OMAGIC`: text and data contiguous, writable.
pub(crate) const OMAGIC: u32 = 0o407;
/// Size of `struct exec`.
pub(crate) const HEADER: usize = 32;
const RELOC: usize = 8;
const NLIST: usize = 12;
/// `N_UNDF | N_EXT`: an undefined external symbol.
const N_UNDF_EXT: u8 = 0x01;
/// Segment numbers of local relocations (`N_TEXT`, `N_DATA`).
const N_TEXT: u32 = 0x04;
const N_DATA: u32 = 0x06;
/// Relocations applied per atom.
pub(crate) const RELOCS_PER_ATOM: usize = 64;
/// Bytes copied per atom.
const COPY_PER_ATOM: usize = 4096;

/// Names of the kernel functions a module may call (the kernel's exported symbols).
pub(crate) const KSYMS: [&str; 8] =
    ["printk", "kmalloc", "kfree", "schedule", "wake_up", "add_timer", "del_timer", "register_chrdev"];

/// Address of kernel symbol `i` (a fixed kernel layout).
pub(crate) fn ksym_addr(i: usize) -> u32 {
    0xc010_0000 + 0x40 * i as u32
}

/// Why a load failed. The atoms return it as data and never format it: whoever reports it
/// does (its `Display`), so no atom's path to its next point formats or allocates on an
/// error (the static latency checker follows every path, the error's too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// A read of `len` bytes at `off` past the end of the file.
    ReadPastEnd { off: usize, len: usize },
    /// The header's magic (not `OMAGIC`).
    BadMagic(u32),
    /// The header describes `need` bytes of tables; the file has `have`.
    TablesPastEnd { need: usize, have: usize },
    /// An undefined symbol the kernel does not export.
    UnknownSymbol(String),
    /// A relocation outside its segment, or not of 4 bytes.
    RelocationOutside { addr: usize },
    /// A relocation naming a symbol the table does not have.
    NoSuchSymbol(u32),
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::ReadPastEnd { off, len } => write!(f, "read of {len} bytes at {off} past the end of the image"),
            LoadError::BadMagic(m) => write!(f, "bad magic {m:#o}: not an OMAGIC a.out object"),
            LoadError::TablesPastEnd { need, have } => {
                write!(f, "header describes {need} bytes of tables; the image has {have}")
            }
            LoadError::UnknownSymbol(name) => write!(f, "unknown symbol '{name}'"),
            LoadError::RelocationOutside { addr } => {
                write!(f, "relocation at {addr:#x} is outside its segment or not 4 bytes")
            }
            LoadError::NoSuchSymbol(n) => write!(f, "relocation names symbol {n}"),
        }
    }
}

/// An in-memory file: bytes read at an offset.
pub struct MemFile(Vec<u8>);

impl MemFile {
    /// Copies `buf.len()` bytes at `off` into `buf`; fails past the end of the file.
    pub(crate) fn read_at(&self, off: usize, buf: &mut [u8]) -> Result<(), LoadError> {
        let end = off.checked_add(buf.len()).filter(|&e| e <= self.0.len());
        let end = end.ok_or(LoadError::ReadPastEnd { off, len: buf.len() })?;
        buf.copy_from_slice(&self.0[off..end]);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The raw bytes (for tests that corrupt an image).
    pub fn bytes_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

/// Builds an a.out object of about `kib` KiB of text+data, one relocation per 32 bytes, every
/// fourth of them external (pc-relative calls of kernel symbols, as `call printk`).
pub fn build_image(kib: usize) -> MemFile {
    let total = (kib * 1024).max(256) & !3;
    let (text, data) = ((total / 4 * 3) & !3, (total / 4) & !3);
    let mut seg = vec![0u8; text + data];
    let mut x = 0x2545_f491_u32;
    for b in seg.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let (mut trel, mut drel) = (Vec::new(), Vec::new());
    for (n, addr) in (0..text + data - 4).step_by(32).enumerate() {
        let (rel, seg_addr) = if addr < text { (&mut trel, addr) } else { (&mut drel, addr - text) };
        let word = if n % 4 == 3 && addr < text {
            // extern, pc-relative, length 2 (4 bytes): symbol n/4 mod KSYMS
            ((n / 4) % KSYMS.len()) as u32 | 1 << 24 | 2 << 25 | 1 << 27
        } else {
            (if addr < text { N_TEXT } else { N_DATA }) | 2 << 25
        };
        rel.extend_from_slice(&(seg_addr as u32).to_le_bytes());
        rel.extend_from_slice(&word.to_le_bytes());
        seg[addr..addr + 4].copy_from_slice(&((addr as u32) & 0xfff).to_le_bytes());
        // the addend
    }
    let (mut syms, mut strs) = (Vec::new(), vec![0u8; 4]);
    for name in KSYMS {
        syms.extend_from_slice(&(strs.len() as u32).to_le_bytes());
        syms.extend_from_slice(&[N_UNDF_EXT, 0, 0, 0, 0, 0, 0, 0]);
        strs.extend_from_slice(name.as_bytes());
        strs.push(0);
    }
    let strsize = strs.len() as u32;
    strs[..4].copy_from_slice(&strsize.to_le_bytes());
    let header = [
        OMAGIC | 100 << 16,
        text as u32,
        data as u32,
        4096,
        syms.len() as u32,
        0,
        trel.len() as u32,
        drel.len() as u32,
    ];
    let mut file: Vec<u8> = header.iter().flat_map(|w| w.to_le_bytes()).collect();
    for part in [&seg, &trel, &drel, &syms, &strs] {
        file.extend_from_slice(part);
    }
    MemFile(file)
}

/// The header fields the loader uses.
#[derive(Clone, Copy, Debug)]
struct Exec {
    text: usize,
    data: usize,
    bss: usize,
    syms: usize,
    entry: u32,
    trsize: usize,
    drsize: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Header,
    Copy(usize),
    Bss,
    Symbols,
    Relocate(usize),
    Done,
}

/// Loads one module from `file` at `base`, an atom per [`Loader::atom`] call.
pub struct Loader {
    file: Arc<MemFile>,
    ksyms: Arc<HashMap<&'static str, u32>>,
    base: u32,
    exec: Option<Exec>,
    /// The module's memory: text, data, bss.
    pub image: Vec<u8>,
    resolved: Vec<u32>,
    stage: Stage,
    /// Relocations applied so far.
    pub relocations: u64,
}

/// The kernel's symbol table: name to address.
pub fn kernel_symbols() -> HashMap<&'static str, u32> {
    KSYMS.iter().enumerate().map(|(i, &n)| (n, ksym_addr(i))).collect()
}

impl Loader {
    pub fn new(file: Arc<MemFile>, ksyms: Arc<HashMap<&'static str, u32>>, base: u32) -> Self {
        let (image, resolved) = (Vec::new(), Vec::new());
        Loader { file, ksyms, base, exec: None, image, resolved, stage: Stage::Header, relocations: 0 }
    }

    /// Starts loading the module again, at `base`, reusing the module memory.
    pub fn restart(&mut self, base: u32) {
        (self.base, self.exec, self.stage) = (base, None, Stage::Header);
    }

    /// Runs one atom of the load. Returns `Ok(false)` when the module is loaded.
    pub fn atom(&mut self) -> Result<bool, LoadError> {
        self.stage = match self.stage {
            Stage::Header => self.read_header()?,
            Stage::Copy(off) => self.copy(off)?,
            Stage::Bss => self.zero_bss(),
            Stage::Symbols => self.resolve_symbols()?,
            Stage::Relocate(i) => self.relocate(i)?,
            Stage::Done => Stage::Done,
        };
        Ok(self.stage != Stage::Done)
    }

    /// Loads the whole module (no preemption points: for tests and tools).
    pub fn load(mut self) -> Result<Self, LoadError> {
        while self.atom()? {}
        Ok(self)
    }

    /// The relocated entry point.
    pub fn entry(&self) -> u32 {
        self.exec.map_or(0, |e| e.entry.wrapping_add(self.base))
    }

    fn exec(&self) -> Exec {
        self.exec.expect("the header is read first")
    }

    fn read_header(&mut self) -> Result<Stage, LoadError> {
        let mut h = [0u8; HEADER];
        self.file.read_at(0, &mut h)?;
        let w = |i: usize| u32_at(&h, 4 * i);
        if w(0) & 0xffff != OMAGIC {
            return Err(LoadError::BadMagic(w(0) & 0xffff));
        }
        let exec = Exec {
            text: w(1) as usize,
            data: w(2) as usize,
            bss: w(3) as usize,
            syms: w(4) as usize,
            entry: w(5),
            trsize: w(6) as usize,
            drsize: w(7) as usize,
        };
        let need = HEADER + exec.text + exec.data + exec.trsize + exec.drsize + exec.syms;
        if need > self.file.len()
            || !exec.trsize.is_multiple_of(RELOC)
            || !exec.drsize.is_multiple_of(RELOC)
            || !exec.syms.is_multiple_of(NLIST)
        {
            return Err(LoadError::TablesPastEnd { need, have: self.file.len() });
        }
        self.image.clear();
        self.image.resize(exec.text + exec.data + exec.bss, 0);
        self.exec = Some(exec);
        Ok(Stage::Copy(0))
    }

    fn copy(&mut self, off: usize) -> Result<Stage, LoadError> {
        let e = self.exec();
        let end = (off + COPY_PER_ATOM).min(e.text + e.data);
        self.file.read_at(HEADER + off, &mut self.image[off..end])?;
        Ok(if end == e.text + e.data { Stage::Bss } else { Stage::Copy(end) })
    }

    fn zero_bss(&mut self) -> Stage {
        let e = self.exec();
        self.image[e.text + e.data..].fill(0);
        Stage::Symbols
    }

    fn resolve_symbols(&mut self) -> Result<Stage, LoadError> {
        let e = self.exec();
        let symoff = HEADER + e.text + e.data + e.trsize + e.drsize;
        let mut syms = vec![0u8; e.syms];
        self.file.read_at(symoff, &mut syms)?;
        let mut strsize = [0u8; 4];
        self.file.read_at(symoff + e.syms, &mut strsize)?;
        let mut strs = vec![0u8; u32::from_le_bytes(strsize) as usize];
        self.file.read_at(symoff + e.syms, &mut strs)?;
        self.resolved.clear();
        for s in syms.chunks(NLIST) {
            let strx = u32_at(s, 0) as usize;
            let name = strs.get(strx..).and_then(|r| r.split(|&b| b == 0).next()).unwrap_or(&[]);
            let name = core::str::from_utf8(name).unwrap_or("?");
            let value = if s[4] == N_UNDF_EXT {
                *self.ksyms.get(name).ok_or_else(|| LoadError::UnknownSymbol(name.into()))?
            } else {
                u32_at(s, 8).wrapping_add(self.base)
            };
            self.resolved.push(value);
        }
        Ok(Stage::Relocate(0))
    }

    /// Applies relocations `i..i + 64` of the text table followed by the data table.
    fn relocate(&mut self, first: usize) -> Result<Stage, LoadError> {
        let e = self.exec();
        let (nt, nd) = (e.trsize / RELOC, e.drsize / RELOC);
        let last = (first + RELOCS_PER_ATOM).min(nt + nd);
        let mut table = [0u8; RELOCS_PER_ATOM * RELOC];
        let table = &mut table[..(last - first) * RELOC];
        let troff = HEADER + e.text + e.data;
        // the two tables are contiguous in the file
        self.file.read_at(troff + first * RELOC, table)?;
        // A loop of at most RELOCS_PER_ATOM rounds, in the code too: the static latency
        // checker bounds it by that constant exit (`chunks` of a run-time length would leave
        // its count to a register written by a `min` in the body).
        for k in 0..RELOCS_PER_ATOM {
            if first + k == last {
                break;
            }
            let r = &table[k * RELOC..(k + 1) * RELOC];
            self.apply(u32_at(r, 0) as usize, u32_at(r, 4), first + k >= nt)?;
        }
        self.relocations += (last - first) as u64;
        Ok(if last == nt + nd { Stage::Done } else { Stage::Relocate(last) })
    }

    fn apply(&mut self, addr: usize, info: u32, in_data: bool) -> Result<(), LoadError> {
        let e = self.exec();
        let (seg_lo, seg_len) = if in_data { (e.text, e.data) } else { (0, e.text) };
        if addr + 4 > seg_len || (info >> 25) & 3 != 2 {
            return Err(LoadError::RelocationOutside { addr });
        }
        let at = seg_lo + addr;
        let (symnum, pcrel, ext) = (info & 0xff_ffff, info >> 24 & 1 == 1, info >> 27 & 1 == 1);
        let target =
            if ext { *self.resolved.get(symnum as usize).ok_or(LoadError::NoSuchSymbol(symnum))? } else { self.base };
        let place = self.base.wrapping_add(at as u32);
        let word = u32_at(&self.image, at).wrapping_add(target).wrapping_sub(if pcrel { place } else { 0 });
        self.image[at..at + 4].copy_from_slice(&word.to_le_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relocated_words_are_addend_plus_target() {
        let (file, ks) = (Arc::new(build_image(16)), Arc::new(kernel_symbols()));
        let base = 0x0040_0000;
        let m = Loader::new(file, ks, base).load().unwrap();
        assert_eq!(m.entry(), base);
        // relocation 0: text word at 0, local: addend 0 + base
        assert_eq!(u32_at(&m.image, 0), base);
        // relocation 1 at 32: local, addend 32
        assert_eq!(u32_at(&m.image, 32), base + 32);
        // relocation 3 at 96: extern pc-relative call of KSYMS[0]: addend + sym - place
        assert_eq!(u32_at(&m.image, 96), 96u32.wrapping_add(ksym_addr(0)).wrapping_sub(base + 96));
        let text: usize = 16 * 1024 / 4 * 3;
        assert_eq!(m.relocations as usize, (text + 16 * 1024 / 4 - 4).div_ceil(32));
        assert_eq!(m.image.len(), 16 * 1024 + 4096, "text + data + bss");
    }

    #[test]
    fn bad_images_are_refused() {
        let ks = Arc::new(kernel_symbols());
        let load = |f: MemFile, ks: &Arc<HashMap<&'static str, u32>>| {
            Loader::new(Arc::new(f), ks.clone(), 0).load().err().map(|e| e.to_string()).unwrap_or_default()
        };
        let mut f = build_image(4);
        f.bytes_mut()[0] = 0;
        assert!(load(f, &ks).contains("bad magic"));
        let mut f = build_image(4);
        f.bytes_mut().truncate(HEADER + 100);
        assert!(load(f, &ks).contains("the image has"));
        assert!(load(build_image(4), &Arc::new(HashMap::new())).contains("unknown symbol 'printk'"));
    }
}
