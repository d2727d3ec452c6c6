//! Atoms: kernel work of a set length, split by preemption points.
//!
//! **Mechanism.** An atom is a stretch of real kernel work (here: an Internet checksum over a
//! page, repeated) that runs until its length has elapsed; a preemption point
//! ([`kernel::preempt_point!`]) separates atoms. What happens at a point is the preemption
//! model's business: under `none` nothing (the task keeps the CPU to `ret_from_syscall`).
//!
//! **Invariant.** An atom never sleeps and holds nothing across a point, so every point is a
//! place where the task could give the CPU away safely.

/// A 4 KiB page of data for atoms to chew on.
pub const PAGE: usize = 4096;

/// RFC 1071 ones'-complement checksum of `data` (the work inside an atom).
///
/// Written so that the static latency checker can bound it: one counted loop over the words
/// and a fixed number of folds (four fold any 64-bit sum into 16 bits) instead of a loop that
/// folds until the carry is gone.
pub fn csum(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let pairs = data.chunks_exact(2);
    if let [last] = pairs.remainder() {
        sum += (*last as u64) << 8;
    }
    for pair in pairs {
        sum += u16::from_be_bytes([pair[0], pair[1]]) as u64;
    }
    for _ in 0..4 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The most pages one atom checksums, whatever `until` says: the bound that makes an atom's
/// length static (the static latency checker sees a counted loop), far above what any atom
/// of the scenario or the lab reaches before its time is up.
pub const MAX_PAGES_PER_ATOM: u64 = 1 << 26;

/// Runs one atom: checksums `page` over and over until `until()` is true (or
/// [`MAX_PAGES_PER_ATOM`] pages are done). Returns the number of pages processed (the atom's
/// throughput).
pub fn run_atom(page: &[u8], mut until: impl FnMut() -> bool) -> u64 {
    let mut pages = 0u64;
    let mut acc = 0u16;
    while pages < MAX_PAGES_PER_ATOM && !until() {
        acc ^= csum(core::hint::black_box(page));
        pages += 1;
    }
    core::hint::black_box(acc);
    pages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csum_matches_rfc1071_example() {
        // RFC 1071's example words 0x0001 0xf203 0xf4f5 0xf6f7 sum to 0xddf2 (folded).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(csum(&data), !0xddf2);
        assert_eq!(csum(&[0xff, 0xff]), 0);
    }

    #[test]
    fn run_atom_counts_pages() {
        let page = [7u8; PAGE];
        let mut n = 0;
        assert_eq!(
            run_atom(&page, || {
                n += 1;
                n > 3
            }),
            3
        );
    }
}
