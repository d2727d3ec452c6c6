//! The lab's workloads: kernel services built of atoms, in one registry.
//!
//! **Mechanism.** [`WORKLOADS`] is the table: each entry has a name, what one system call does,
//! the unit its throughput counts, a size option (default and range) and a constructor. A
//! workload is a state machine of atoms ([`Atoms`]): `begin` starts one call, `atom` runs one
//! atom and says whether more follow, `finish` returns the units the call completed. The same
//! atoms run in three places: inside atomkernel as a system call with a preemption point after
//! every atom ([`kernel_call`]), on a host thread ([`host_call`]), and in a tokio task that
//! yields between atoms. Adding a workload is one table entry and one `Atoms` type. The
//! `packet` workload is the receive path of [`crate::packet`] (wire thread, ring, IRQ,
//! `NET_RX_SOFTIRQ`, socket queue): its worker's system calls read packets from the socket
//! queue, so it runs only inside atomkernel ([`WorkloadInfo::bottom_half`]); its device is
//! opened in the worker task ([`Atoms::open`]) and checked when the run ends ([`Atoms::close`]).
//! Built for the bare-metal image (feature `metal`), the registry has every workload but
//! `packet`, whose device needs a host thread for its wire; [`Workload::named`] refuses it
//! there with that reason ([`HOSTED_ONLY`]).
//!
//! **Invariant.** An atom is bounded work that never sleeps and holds nothing across its end,
//! so every point between two atoms is a safe place to give the CPU away. Only `begin` may
//! sleep (the packet workload's blocking receive), before the first atom, holding nothing.

use crate::atoms::{csum, PAGE};
use crate::loader::{self, Loader};
#[cfg(feature = "hosted")]
use crate::packet::{PacketConfig, PacketDevice};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::hint::black_box;

/// One call's worth of work, atom by atom.
pub trait Atoms: Send {
    /// Sets up what the calls need, in the task that will make them, before the first call
    /// (the packet workload opens its device and starts the wire here).
    fn open(&mut self) -> Result<(), String> {
        Ok(())
    }
    /// Tears down after the last call and checks what only the end can show.
    fn close(&mut self) -> Result<(), String> {
        Ok(())
    }
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
    /// What the size counts.
    pub size_meaning: &'static str,
    pub size_default: usize,
    pub size_min: usize,
    pub size_max: usize,
    /// Runs through atomkernel's bottom halves: only the kernel's models run it (a host thread
    /// or a tokio runtime has no softirq), and by default under every `bh=` option.
    pub bottom_half: bool,
    make: fn(usize) -> Box<dyn Atoms>,
}

/// Every workload of this build, in report order (on metal: all but [`HOSTED_ONLY`]'s).
pub static WORKLOADS: &[WorkloadInfo] = &[
    WorkloadInfo {
        name: "loader",
        description: "loads an a.out module from an in-memory file: header, copy a page per atom, bss, symbols, 64 relocations per atom",
        unit: "modules",
        size_meaning: "KiB of text+data in the module (one relocation per 32 bytes)",
        size_default: 64,
        size_min: 1,
        size_max: 16384,
        bottom_half: false,
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
        bottom_half: false,
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
        bottom_half: false,
        make: |n| Box::new(CsumAtoms { pages: n, done: 0, page: Box::new([0x5a; PAGE]), acc: 0 }),
    },
    WorkloadInfo {
        name: "hog",
        description: "pure computation (no memory traffic): 2048 rounds of an integer hash per atom",
        unit: "atoms",
        size_meaning: "compute atoms per system call",
        size_default: 64,
        size_min: 1,
        size_max: 4096,
        bottom_half: false,
        make: |n| Box::new(HogAtoms { atoms: n, done: 0, x: 0x9e37_79b9_7f4a_7c15 }),
    },
    #[cfg(feature = "hosted")]
    WorkloadInfo {
        name: "packet",
        description: "receives packets of the packet device (wire, ring, IRQ, NET_RX softirq checksums into a socket queue): sleeps until one is queued, then copies up to 8 packets out per atom",
        unit: "packets",
        size_meaning: "packets received per system call at most (recvmmsg's vlen, MSG_WAITFORONE)",
        size_default: 64,
        size_min: 1,
        size_max: 4096,
        bottom_half: true,
        make: |n| Box::new(PacketAtoms { per_call: n, dev: None, got: 0, acc: 0 }),
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

/// Workloads only the hosted build has, with the reason (refused by name on metal).
pub const HOSTED_ONLY: &[(&str, &str)] =
    &[("packet", "its packet device's wire is a host thread: only the hosted build (feature `hosted`) runs it")];

/// The registered names, for error messages.
pub fn names() -> String {
    WORKLOADS.iter().map(|w| w.name).collect::<Vec<_>>().join(", ")
}

impl Workload {
    /// The registered workload called `name`, at its default size; an unknown name is an error
    /// that lists the registered ones.
    pub fn named(name: &str) -> Result<Workload, String> {
        if let Some((_, why)) =
            HOSTED_ONLY.iter().find(|(n, _)| *n == name && !WORKLOADS.iter().any(|w| w.name == name))
        {
            return Err(format!("workload '{name}' is not in this build: {why}; choose one of {}", names()));
        }
        let index = WORKLOADS
            .iter()
            .position(|w| w.name == name)
            .ok_or_else(|| format!("unknown workload '{name}': choose one of {}", names()))?;
        Ok(Workload { index, size: WORKLOADS[index].size_default })
    }

    /// The workload at `size` (its unit: [`WorkloadInfo::size_meaning`]), if the size is within
    /// the workload's range; the error says the range.
    pub fn with_size(self, size: usize) -> Result<Workload, String> {
        let info = self.info();
        if !(info.size_min..=info.size_max).contains(&size) {
            return Err(format!("{} takes {}..={} ({})", info.name, info.size_min, info.size_max, info.size_meaning));
        }
        Ok(Workload { size, ..self })
    }
}

/// One call inside atomkernel: a system call of the workload's atoms, a preemption point after
/// each. Returns the units done. Kept out of line: the static latency checker then
/// sees the callers' loops call a function with points; inlined into them, a workload with no
/// atom to do shows its loop as point-free, though every call ends in `ret_from_syscall`,
/// which reschedules when due.
#[inline(never)]
pub fn kernel_call(w: &mut dyn Atoms) -> u64 {
    kernel::syscall(|| {
        w.begin();
        while w.atom() {
            kernel::preempt_point!();
        }
        // The last atom's point: every atom is followed by one, so no path from an atom runs
        // on into `finish` (an indirect call, unbounded for the static bound) before a point.
        kernel::preempt_point!();
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

/// Packets one atom of the `packet` workload copies out of the socket queue at most.
#[cfg(feature = "hosted")]
pub(crate) const PACKETS_PER_ATOM: usize = 8;

/// The `packet` workload: a `recvmmsg(MSG_WAITFORONE)` on the packet device's socket queue.
#[cfg(feature = "hosted")]
struct PacketAtoms {
    per_call: usize,
    dev: Option<PacketDevice>,
    got: usize,
    acc: u64,
}

#[cfg(feature = "hosted")]
impl Atoms for PacketAtoms {
    fn open(&mut self) -> Result<(), String> {
        let dev = PacketDevice::open(PacketConfig::default())?;
        dev.start();
        self.dev = Some(dev);
        Ok(())
    }

    fn close(&mut self) -> Result<(), String> {
        let Some(dev) = self.dev.take() else { return Ok(()) };
        dev.stop_wire();
        let s = dev.stats();
        if s.out_of_order != 0 || s.csum_errors != 0 {
            return Err(format!("packet: packets lost, duplicated or corrupted: {s:?}"));
        }
        Ok(())
    }

    /// Sleeps (in the call, as a blocking receive does) until the softirq has queued a packet.
    fn begin(&mut self) {
        self.got = 0;
        if let Some(dev) = &self.dev {
            dev.wait_readable();
        }
    }

    /// Copies up to [`PACKETS_PER_ATOM`] packets out; never sleeps. The call ends when it has
    /// `per_call` packets or the queue ran dry.
    fn atom(&mut self) -> bool {
        let Some(dev) = &self.dev else { return false };
        let mut took = 0;
        while took < PACKETS_PER_ATOM && self.got < self.per_call {
            let Some(p) = dev.try_recv() else { break };
            self.acc ^= p.seq ^ u64::from(p.csum);
            took += 1;
            self.got += 1;
        }
        took == PACKETS_PER_ATOM && self.got < self.per_call
    }

    fn finish(&mut self) -> u64 {
        black_box(self.acc);
        self.got as u64
    }
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
        black_box(&self.loader.image);
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
        self.dst[r.clone()].copy_from_slice(black_box(&self.src[r]));
        self.done += 1;
        self.done < self.pages
    }

    fn finish(&mut self) -> u64 {
        black_box(&self.dst);
        self.pages as u64
    }
}

struct CsumAtoms {
    pages: usize,
    done: usize,
    /// One page, its length in the type: each atom's loop has a count the static latency
    /// checker reads from the code (a `Vec`'s length is only known at run time).
    page: Box<[u8; PAGE]>,
    acc: u16,
}

impl Atoms for CsumAtoms {
    fn begin(&mut self) {
        self.done = 0;
    }

    fn atom(&mut self) -> bool {
        let page: &[u8; PAGE] = black_box(&self.page); // the length stays the type's
        self.acc ^= csum(page);
        self.done += 1;
        self.done < self.pages
    }

    fn finish(&mut self) -> u64 {
        black_box(self.acc);
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
        let mut x = black_box(self.x);
        for _ in 0..2048 {
            x = (x ^ (x >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9).rotate_left(17);
        }
        self.x = x;
        self.done += 1;
        self.done < self.atoms
    }

    fn finish(&mut self) -> u64 {
        black_box(self.x);
        self.atoms as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_completes_a_call_of_its_size() {
        for mut w in Workload::all().into_iter().filter(|w| !w.info().bottom_half) {
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
    fn names_and_sizes_are_checked_with_clear_errors() {
        let e = Workload::named("compile").unwrap_err();
        assert!(e.contains("unknown workload 'compile'") && e.contains("loader, copy, checksum, hog, packet"), "{e}");
        let copy = Workload::named("copy").unwrap();
        assert!(copy.with_size(0).unwrap_err().contains("copy takes 1..=4096"));
        assert_eq!(copy.with_size(8).unwrap().size, 8);
    }
}
