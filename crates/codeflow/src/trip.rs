//! The trip count of a counted loop: the first step at which a register stepped by a constant
//! from a constant meets its exit condition, in modular arithmetic of the compared width.
//!
//! **Mechanism.** The value tested after `k` steps is `u0 + k*s mod 2^w`. An equality exit
//! solves the congruence `k*s ≡ c - u0 (mod 2^w)` (the odd part of `s` is inverted by Newton's
//! iteration); an inequality exit is an interval of values (a signed compare is an unsigned one
//! with both sign bits flipped), reached by steps toward it without wrapping.
//!
//! **Invariant.** [`first_exit`] returns the smallest such `k`, or `None` when the sequence
//! never meets the condition or meets it only after wrapping around (which is not attempted):
//! never a `k` larger than a real first exit is missed, never a smaller one claimed.

use crate::induct::Cond;

fn mask(width: u32) -> u64 {
    if width >= 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    }
}

/// The inverse of odd `a` modulo `2^64` (so modulo any smaller power of two).
fn inverse(a: u64) -> u64 {
    let mut x = a; // correct to 3 bits; each round doubles them
    for _ in 0..6 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
    }
    x
}

/// The smallest `k >= 0` with `u0 + k*s ≡ c (mod 2^width)`.
fn solve_eq(u0: u64, s: u64, c: u64, width: u32) -> Option<u64> {
    let d = c.wrapping_sub(u0) & mask(width);
    if s == 0 {
        return (d == 0).then_some(0);
    }
    let tz = s.trailing_zeros();
    if d & mask(tz) != 0 {
        return None;
    }
    Some(((d >> tz).wrapping_mul(inverse(s >> tz))) & mask(width - tz))
}

/// The smallest `k >= 0` with `u0 + k*s` in `lo..=hi`, stepping toward the interval without
/// wrapping (`s` a `width`-bit two's-complement step).
fn first_in(u0: u64, s: u64, width: u32, lo: u64, hi: u64) -> Option<u64> {
    if (lo..=hi).contains(&u0) {
        return Some(0);
    }
    let signed = ((s << (64 - width)) as i64 >> (64 - width)) as i128;
    let (u0, lo, hi) = (u0 as i128, lo as i128, hi as i128);
    let k = match signed {
        d if d > 0 && lo > u0 => (lo - u0 + d - 1) / d,
        d if d < 0 && hi < u0 => (u0 - hi + (-d) - 1) / (-d),
        _ => return None,
    };
    let v = u0 + k * signed;
    ((lo..=hi).contains(&v)).then_some(k as u64)
}

/// The smallest number of steps `k` after which `cmp r, c` meets `exit`, where `r` is `u0`
/// stepped `k` times by `delta`, all in `width` (32 or 64) bits; `None` if never (without
/// wrapping, for an inequality).
pub(crate) fn first_exit(u0: u64, delta: i64, width: u32, c: u64, exit: Cond) -> Option<u64> {
    let m = mask(width);
    let (u0, s, c) = (u0 & m, delta as u64 & m, c & m);
    let flip = if matches!(exit, Cond::L | Cond::Ge | Cond::Le | Cond::G) { 1u64 << (width - 1) } else { 0 };
    let (u0, c) = (u0 ^ flip, c ^ flip);
    let (lo, hi) = match exit {
        Cond::E => return solve_eq(u0, s, c, width),
        Cond::Ne if u0 != c => return Some(0),
        Cond::Ne => return (s != 0).then_some(1),
        Cond::Other => return None,
        Cond::B | Cond::L if c == 0 => return None,
        Cond::B | Cond::L => (0, c - 1),
        Cond::Be | Cond::Le => (0, c),
        Cond::A | Cond::G if c == m => return None,
        Cond::A | Cond::G => (c + 1, m),
        Cond::Ae | Cond::Ge => (c, m),
    };
    first_in(u0, s, width, lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first exit by brute force over a few thousand steps.
    fn brute(u0: u64, delta: i64, width: u32, c: u64, exit: Cond) -> Option<u64> {
        let m = mask(width);
        let holds = |v: u64| {
            let sx = |x: u64| ((x << (64 - width)) as i64) >> (64 - width);
            match exit {
                Cond::E => v == c & m,
                Cond::Ne => v != c & m,
                Cond::B => v < c & m,
                Cond::Ae => v >= c & m,
                Cond::Be => v <= c & m,
                Cond::A => v > c & m,
                Cond::L => sx(v) < sx(c),
                Cond::Ge => sx(v) >= sx(c),
                Cond::Le => sx(v) <= sx(c),
                Cond::G => sx(v) > sx(c),
                Cond::Other => false,
            }
        };
        (0..4096u64).find(|&k| holds(u0.wrapping_add((delta as u64).wrapping_mul(k)) & m))
    }

    /// Does the sequence pass the end of the (sign-flipped) range within `k` steps?
    fn wraps(u0: i64, delta: i64, width: u32, k: u64, exit: Cond) -> bool {
        let flip = if matches!(exit, Cond::L | Cond::Ge | Cond::Le | Cond::G) { 1u64 << (width - 1) } else { 0 };
        let start = ((u0 as u64 & mask(width)) ^ flip) as i128;
        !(0..=mask(width) as i128).contains(&(start + k as i128 * delta as i128))
    }

    const CONDS: [Cond; 10] =
        [Cond::E, Cond::Ne, Cond::B, Cond::Ae, Cond::Be, Cond::A, Cond::L, Cond::Ge, Cond::Le, Cond::G];

    #[test]
    fn matches_brute_force_whenever_it_answers() {
        for width in [32, 64] {
            for u0 in [-9i64, -1, 0, 1, 3, 10] {
                for delta in [-4i64, -3, -1, 0, 1, 2, 4] {
                    for c in [-5i64, -1, 0, 1, 10, 11] {
                        for exit in CONDS {
                            let got = first_exit(u0 as u64, delta, width, c as u64, exit);
                            let want = brute(u0 as u64, delta, width, c as u64, exit);
                            match (got, want) {
                                (Some(k), w) if k < 4096 => assert_eq!(w, Some(k), "{u0} {delta} {width} {c} {exit:?}"),
                                (Some(_), w) => assert_eq!(w, None, "{u0} {delta} {width} {c} {exit:?}"),
                                // Not claimed: only an exit reached by wrapping around.
                                (None, Some(k)) => assert!(wraps(u0, delta, width, k, exit), "missed {k}"),
                                (None, None) => {}
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn equality_after_many_steps_and_wraps() {
        // 0, 3, 6, ... meets 10 only modulo 2^32: k = 10 * 3^-1 mod 2^32.
        let k = first_exit(0, 3, 32, 10, Cond::E).unwrap();
        assert_eq!((k as u128 * 3) % (1 << 32), 10);
        assert_eq!(first_exit(0, 4, 32, 10, Cond::E), None, "even steps never meet an odd gap");
        assert_eq!(first_exit(10, -1, 32, 0, Cond::E), Some(10));
    }
}
