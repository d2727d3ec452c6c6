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
pub fn csum(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += word as u64;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Runs one atom: checksums `page` over and over until `until()` is true. Returns the number
/// of pages processed (the atom's throughput).
pub fn run_atom(page: &[u8], mut until: impl FnMut() -> bool) -> u64 {
    let mut pages = 0u64;
    let mut acc = 0u16;
    while !until() {
        acc ^= csum(std::hint::black_box(page));
        pages += 1;
    }
    std::hint::black_box(acc);
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
