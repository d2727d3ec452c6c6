//! The lab's workloads: kernel services built of atoms, in one registry.
//!
//! **Mechanism.** [`WORKLOADS`] is the table: each entry has a name, what one system call does,
//! the unit its throughput counts, a size option (default and range) and a constructor. A
//! workload is a state machine of atoms ([`Atoms`]): `begin` starts one call, `atom` runs one
//! atom and says whether more follow, `finish` returns the units the call completed. The same
//! atoms run in three places: inside atomkernel as a system call with a preemption point after
//! every atom ([`kernel_call`]), on a host thread ([`host_call`]), and in a tokio task that
//! yields between atoms. Adding a workload (the packet path, later) is one table entry and one
//! `Atoms` type.
//!
//! **Invariant.** An atom is bounded work that never sleeps and holds nothing across its end,
//! so every point between two atoms is a safe place to give the CPU away.

use super::loader::{self, Loader};
use crate::atoms::{csum, PAGE};
use std::sync::Arc;

/// One call's worth of work, atom by atom.
pub trait Atoms: Send {
    /// Starts a call (no work yet).
    fn begin(&mut self);
    /// Runs one atom; `false` when the call is complete.
    fn atom(&mut self) -> bool;
    /// Units of work the completed call did (its throughput count).
    fn finish(&mut self) -> u64;
}

/// A registered workload.
pub struct WorkloadInfo {
    /// Name on the command line and in reports.
    pub name: &'static str,
    /// What one system call does.
    pub description: &'static str,
    /// What the throughput counts.
    pub unit: &'static str,
    /// What `--size NAME=N` sets.
    pub size_meaning: &'static str,
    pub size_default: usize,
    pub size_min: usize,
    pub size_max: usize,
    make: fn(usize) -> Box<dyn Atoms>,
}

/// Every workload, in report order.
pub static WORKLOADS: [WorkloadInfo; 4] = [
    WorkloadInfo {
        name: "loader",
        description: "loads an a.out module from an in-memory file: header, copy a page per atom, bss, symbols, 64 relocations per atom",
        unit: "modules",
        size_meaning: "KiB of text+data in the module (one relocation per 32 bytes)",
        size_default: 64,
        size_min: 1,
        size_max: 16384,
        make: |kib| Box::new(LoaderAtoms::new(kib)),
    },
    WorkloadInfo {
        name: "copy",
        description: "copies pages between two buffers, one 4 KiB page per atom",
        unit: "pages",
        size_meaning: "pages copied per system call",
        size_default: 64,
        size_min: 1,
        size_max: 4096,
        make: |n| Box::new(CopyAtoms::new(n)),
    },
    WorkloadInfo {
        name: "checksum",
        description: "Internet checksum (RFC 1071) of pages, one 4 KiB page per atom",
        unit: "pages",
        size_meaning: "pages checksummed per system call",
        size_default: 64,
        size_min: 1,
        size_max: 4096,
        make: |n| Box::new(CsumAtoms { pages: n, done: 0, page: vec![0x5a; PAGE], acc: 0 }),
    },
    WorkloadInfo {
        name: "hog",
        description: "pure computation (no memory traffic): 2048 rounds of an integer hash per atom",
        unit: "atoms",
        size_meaning: "compute atoms per system call",
        size_default: 64,
        size_min: 1,
        size_max: 4096,
        make: |n| Box::new(HogAtoms { atoms: n, done: 0, x: 0x9e37_79b9_7f4a_7c15 }),
    },
];

/// A workload chosen with its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    pub index: usize,
    pub size: usize,
}

impl Workload {
    pub fn info(&self) -> &'static WorkloadInfo {
        &WORKLOADS[self.index]
    }

    pub fn name(&self) -> &'static str {
        self.info().name
    }

    /// A fresh instance of the workload's atoms.
    pub fn make(&self) -> Box<dyn Atoms> {
        (self.info().make)(self.size)
    }

    /// Every workload at its default size.
    pub fn all() -> Vec<Workload> {
        (0..WORKLOADS.len()).map(|index| Workload { index, size: WORKLOADS[index].size_default }).collect()
    }
}

/// The registered names, for error messages.
pub fn names() -> String {
    WORKLOADS.iter().map(|w| w.name).collect::<Vec<_>>().join(", ")
}

/// Parses `--workload`: a comma list of names or `all`; sizes come from `sizes` (`--size
/// NAME=N,...`, empty for the defaults).
pub fn parse(list: &str, sizes: &str) -> Result<Vec<Workload>, String> {
    let mut chosen = Vec::new();
    let names_in = if list.trim() == "all" { names() } else { list.to_string() };
    for name in names_in.split(',').map(str::trim) {
        let index = find(name).map_err(|e| format!("--workload: {e}, or all"))?;
        if !chosen.iter().any(|w: &Workload| w.index == index) {
            chosen.push(Workload { index, size: WORKLOADS[index].size_default });
        }
    }
    for pair in sizes.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, n) = pair.split_once('=').ok_or_else(|| format!("--size {pair}: write NAME=N, e.g. loader=256"))?;
        let index = find(name.trim()).map_err(|e| format!("--size: {e}"))?;
        let info = &WORKLOADS[index];
        let n: usize = n.trim().parse().map_err(|_| format!("--size {pair}: {n} is not a whole number"))?;
        if !(info.size_min..=info.size_max).contains(&n) {
            return Err(format!(
                "--size {pair}: {} takes {}..={} ({})",
                info.name, info.size_min, info.size_max, info.size_meaning
            ));
        }
        let w = chosen.iter_mut().find(|w| w.index == index);
        w.ok_or_else(|| format!("--size {pair}: {} is not among the chosen workloads (--workload)", info.name))?.size =
            n;
    }
    Ok(chosen)
}

fn find(name: &str) -> Result<usize, String> {
    WORKLOADS
        .iter()
        .position(|w| w.name == name)
        .ok_or_else(|| format!("unknown workload '{name}': choose one of {}", names()))
}

/// One call inside atomkernel: a system call of the workload's atoms, a preemption point after
/// each. Returns the units done.
pub fn kernel_call(w: &mut dyn Atoms) -> u64 {
    kernel::syscall(|| {
        w.begin();
        while w.atom() {
            crate::preemption_point!();
        }
        w.finish()
    })
}

/// One call on a host thread: the same atoms, back to back (the host kernel preempts the
/// thread wherever it likes).
pub fn host_call(w: &mut dyn Atoms) -> u64 {
    w.begin();
    while w.atom() {}
    w.finish()
}

struct LoaderAtoms {
    loader: Loader,
    loads: u32,
}

impl LoaderAtoms {
    fn new(kib: usize) -> LoaderAtoms {
        let (file, ks) = (Arc::new(loader::build_image(kib)), Arc::new(loader::kernel_symbols()));
        LoaderAtoms { loader: Loader::new(file, ks, 0), loads: 0 }
    }
}

impl Atoms for LoaderAtoms {
    fn begin(&mut self) {
        self.loads = self.loads.wrapping_add(1);
        self.loader.restart(0x0040_0000 + (self.loads % 64) * 0x0010_0000);
    }

    fn atom(&mut self) -> bool {
        self.loader.atom().expect("the lab's own image loads")
    }

    fn finish(&mut self) -> u64 {
        std::hint::black_box(&self.loader.image);
        1
    }
}

struct CopyAtoms {
    pages: usize,
    done: usize,
    src: Vec<u8>,
    dst: Vec<u8>,
}

impl CopyAtoms {
    fn new(pages: usize) -> CopyAtoms {
        let src = (0..pages * PAGE).map(|i| i as u8).collect();
        CopyAtoms { pages, done: 0, src, dst: vec![0; pages * PAGE] }
    }
}

impl Atoms for CopyAtoms {
    fn begin(&mut self) {
        self.done = 0;
    }

    fn atom(&mut self) -> bool {
        let r = self.done * PAGE..(self.done + 1) * PAGE;
        self.dst[r.clone()].copy_from_slice(std::hint::black_box(&self.src[r]));
        self.done += 1;
        self.done < self.pages
    }

    fn finish(&mut self) -> u64 {
        std::hint::black_box(&self.dst);
        self.pages as u64
    }
}

struct CsumAtoms {
    pages: usize,
    done: usize,
    page: Vec<u8>,
    acc: u16,
}

impl Atoms for CsumAtoms {
    fn begin(&mut self) {
        self.done = 0;
    }

    fn atom(&mut self) -> bool {
        self.acc ^= csum(std::hint::black_box(&self.page));
        self.done += 1;
        self.done < self.pages
    }

    fn finish(&mut self) -> u64 {
        std::hint::black_box(self.acc);
        self.pages as u64
    }
}

struct HogAtoms {
    atoms: usize,
    done: usize,
    x: u64,
}

impl Atoms for HogAtoms {
    fn begin(&mut self) {
        self.done = 0;
    }

    fn atom(&mut self) -> bool {
        let mut x = std::hint::black_box(self.x);
        for _ in 0..2048 {
            x = (x ^ (x >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9).rotate_left(17);
        }
        self.x = x;
        self.done += 1;
        self.done < self.atoms
    }

    fn finish(&mut self) -> u64 {
        std::hint::black_box(self.x);
        self.atoms as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_completes_a_call_of_its_size() {
        for mut w in Workload::all() {
            w.size = w.info().size_min.max(2);
            let mut a = w.make();
            a.begin();
            let mut atoms = 1;
            while a.atom() {
                atoms += 1;
            }
            assert!(a.finish() > 0, "{}", w.name());
            assert!(atoms >= 2, "{}: {atoms} atoms", w.name());
        }
    }

    #[test]
    fn lists_and_sizes_parse_with_clear_errors() {
        assert_eq!(parse("all", "").unwrap(), Workload::all());
        let w = parse("copy, loader,copy", "loader=8").unwrap();
        assert_eq!(w.iter().map(|w| (w.name(), w.size)).collect::<Vec<_>>(), [("copy", 64), ("loader", 8)]);
        let e = parse("compile", "").unwrap_err();
        assert!(e.contains("unknown workload 'compile'") && e.contains("loader, copy, checksum, hog"), "{e}");
        assert!(parse("copy", "copy=0").unwrap_err().contains("copy takes 1..=4096"));
        assert!(parse("copy", "copy").unwrap_err().contains("write NAME=N"));
        assert!(parse("copy", "disk=3").unwrap_err().contains("unknown workload 'disk'"));
        assert!(parse("copy", "hog=3").unwrap_err().contains("hog is not among the chosen workloads"));
    }
}
