//! The kernel text and its preemption-point sites, as the layers above the kernel see them
//! (symbol resolution, the `points` listing, tests that check where a task stopped).
//!
//! Kernel text is the program's own machine code (its executable segments); anything else
//! (libc, the dynamic loader, the vDSO) is foreign code. A site is the 5-byte instruction that
//! one [`preempt_point!`](crate::preempt_point) leaves in the text, listed at link time with
//! its source location. The arch layer finds both; this module only names them.

use crate::arch::{Arch, A};
/// One preemption-point site of the kernel text: its address ([`Site::addr`]) and its source
/// location ([`Site::info`], a [`PointInfo`]).
use alloc::vec::Vec;
pub use arch_api::Site;

/// Where a preemption-point site was written: `file`, `line`, `column` and the Rust `module`.
pub use arch_api::PointInfo;

/// True if `ip` is in the kernel text (the program's own code), false for foreign code (libc,
/// the dynamic loader, the vDSO), or before the text ranges are known (a kernel's boot, or
/// [`load_bias`], finds them).
#[inline]
pub fn contains(ip: usize) -> bool {
    A::text_contains(ip)
}

/// The program's load bias: runtime address = ELF (link-time) address + bias, for a
/// position-independent executable.
pub fn load_bias() -> usize {
    A::text_load_bias()
}

/// Every preemption-point site of the kernel text, in table order (the order of the site
/// table the patch models index).
pub fn sites() -> Vec<Site> {
    A::point_sites()
}
