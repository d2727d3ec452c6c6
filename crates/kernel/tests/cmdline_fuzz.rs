//! A fuzz test of the boot command line (`Config::from_cmdline`), with proptest: no input
//! panics, every rejection names the option (the key, or the word that is not `key=value`),
//! and what is accepted is a valid configuration.
//!
//! The words are drawn from the known keys (and some unknown ones) with values at and beyond
//! their edges, plus arbitrary text; proptest shrinks a failure to its smallest command line.

use kernel::Config;
use proptest::prelude::*;

/// The boot options, and a few that do not exist.
const KEYS: &[&str] = &[
    "preempt",
    "hz",
    "cpus",
    "stack_size",
    "rr_timeslice",
    "pin",
    "console",
    "bh",
    "bh_prio",
    "trace",
    "trace_buf",
    "hung_timeout_ms",
    "patch_parts",
    "bogus",
    "",
    "PREEMPT",
];

/// Values at the edges of the options' ranges, of the wrong type, and of other options.
const VALUES: &[&str] = &[
    "",
    "0",
    "1",
    "-1",
    "2",
    "63",
    "64",
    "99",
    "100",
    "250",
    "1000",
    "10000",
    "10001",
    "32768",
    "67108864",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "1e3",
    "0x10",
    "none",
    "full",
    "voluntary",
    "patch-int3",
    "classic",
    "threaded",
    "all",
    "off",
    "on",
    "yes",
    "events,profile",
    "events,,x",
    ",",
    "=",
    "é",
    "0,1",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (prop::sample::select(KEYS), prop::sample::select(VALUES)).prop_map(|(k, v)| format!("{k}={v}")),
        1 => prop::sample::select(KEYS).prop_map(str::to_string),
        1 => "[a-z_=,0-9-]{0,12}",
        1 => "\\PC{0,8}",
    ]
}

/// The key a word sets (its text before `=`, or the whole word).
fn key(word: &str) -> &str {
    word.split_once('=').map_or(word, |(k, _)| k)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn every_rejection_names_an_option_and_every_acceptance_is_valid(words in prop::collection::vec(word(), 0..5)) {
        let line = words.join(" ");
        match Config::from_cmdline(&line) {
            Ok(c) => {
                prop_assert_eq!(c.validate(), Ok(()));
                for w in line.split_whitespace() {
                    for key in ["console=", "patch_parts="] {
                        if let Some(v) = w.strip_prefix(key) {
                            prop_assert!(["0", "1", "on", "off"].contains(&v), "{}{} accepted", key, v);
                        }
                    }
                }
            }
            Err(e) => {
                let named = line.split_whitespace().any(|w| {
                    let k = key(w);
                    if k.is_empty() { e.0.contains(&format!("'{w}'")) } else { e.0.contains(&format!("{k}=")) || e.0.contains(&format!("'{k}'")) }
                });
                prop_assert!(named, "{:?} rejected without naming the option: {}", line, e.0);
            }
        }
    }

    #[test]
    fn no_text_panics(line in "\\PC{0,64}") {
        let _ = Config::from_cmdline(&line);
    }
}
