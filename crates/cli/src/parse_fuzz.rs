//! A fuzz test of the command line's parsers, with proptest: random argument lists for every
//! command, parsed by clap and checked by the command's `plan` (what runs before any work).
//! No input panics; every rejection names an option the input gave (clap's errors name the
//! argument they refuse); proptest shrinks a failure to its smallest argument list.
//!
//! The options are read from clap's own description of the commands, so an option added later
//! is fuzzed too.

use proptest::prelude::*;

/// Values at and beyond the options' edges, of the wrong type, and of other options.
const VALUES: &[&str] = &[
    "",
    " ",
    "0",
    "1",
    "-1",
    "2",
    "8",
    "16",
    "17",
    "64",
    "89",
    "99",
    "100",
    "255",
    "256",
    "600",
    "601",
    "4096",
    "10000",
    "1000000",
    "100000000",
    "100000001",
    "18446744073709551615",
    "18446744073709551616",
    "0.0001",
    "1.5",
    "99999999999999999999",
    "none,,full",
    "none,go",
    "copy=99999999999999999999",
    "0.1",
    "-0",
    "1e9",
    "NaN",
    "inf",
    "all",
    "none",
    ",",
    "none,full",
    "full",
    "lazy",
    "patch-int3",
    "bogus",
    "classic",
    "threaded",
    "classic,threaded",
    "copy",
    "packet",
    "checksum,hog",
    "copy=1",
    "copy=4096,copy=1",
    "loader=0",
    "hog=8",
    "x=1",
    "=",
    "keep",
    "-20",
    "go",
    "tokio,host-fifo",
    "long-atom",
    "torture",
    "events",
    "off",
    "callee",
    "/",
    "/dev/null",
    "/dev/null/x",
    "é",
];

/// Rust's own number parse errors, which say nothing of what to use: no message shows one.
const RUST_PARSE_ERRORS: [&str; 3] = ["invalid digit", "invalid float literal", "number too large to fit"];

/// One argument list, as indices into the commands, their options and [`VALUES`].
#[derive(Clone, Debug)]
struct Choice {
    command: usize,
    args: Vec<(usize, Value, u8)>,
}

#[derive(Clone, Debug)]
enum Value {
    Listed(usize),
    Text(String),
}

fn choice() -> impl Strategy<Value = Choice> {
    let value = prop_oneof![
        5 => (0..VALUES.len()).prop_map(Value::Listed),
        1 => "\\PC{0,10}".prop_map(Value::Text),
    ];
    (any::<usize>(), prop::collection::vec((any::<usize>(), value, any::<u8>()), 0..6))
        .prop_map(|(command, args)| Choice { command, args })
}

/// The argument list: `atomkernel COMMAND --option value ...`; now and then `--option=value`,
/// a stray value, or an option the command does not have.
fn argv(c: &Choice) -> Vec<String> {
    let cli = crate::command();
    let commands: Vec<&clap::Command> = cli.get_subcommands().collect();
    let cmd = commands[c.command % commands.len()];
    let options: Vec<(String, bool)> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(|l| (format!("--{l}"), a.get_action().takes_values())))
        .collect();
    let mut argv = vec!["atomkernel".to_string(), cmd.get_name().to_string()];
    for (opt, value, how) in &c.args {
        let v = match value {
            Value::Listed(i) => VALUES[*i].to_string(),
            Value::Text(t) => t.clone(),
        };
        let (name, takes) = options[opt % options.len()].clone();
        match how % 16 {
            0 => argv.push(v),
            1 => argv.push("--no-such-option".into()),
            2 if takes => argv.push(format!("{name}={v}")),
            _ if takes => argv.extend([name, v]),
            _ => argv.push(name),
        }
    }
    argv
}

/// Whether `msg` names one of the arguments of `argv` (after the command): an option, a value
/// in quotes, or, for a stray `-xyz`, the short option `-x` clap reads first in it.
fn names_an_argument(msg: &str, argv: &[String]) -> bool {
    argv[2..].iter().any(|a| {
        let option = a.split('=').next().unwrap_or(a);
        let short: String = a.chars().take(2).collect();
        (option.starts_with("--") && msg.contains(option))
            || msg.contains(&format!("'{a}'"))
            || (a.starts_with('-') && !a.starts_with("--") && msg.contains(&format!("'{short}'")))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn no_argument_list_panics_and_every_rejection_names_an_option(c in choice()) {
        let argv = argv(&c);
        match crate::parse_from(&argv) {
            Err(e) => {
                use clap::error::ErrorKind;
                if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                    return Ok(());
                }
                let msg = e.to_string();
                prop_assert!(names_an_argument(&msg, &argv), "{:?}: clap refused it naming no argument: {}", argv, msg);
                prop_assert!(!RUST_PARSE_ERRORS.iter().any(|r| msg.contains(r)), "{:?}: Rust's parse error, not what to use: {}", argv, msg);
            }
            Ok(cli) => {
                let Some(cmd) = cli.command else { return Ok(()) };
                if let Err(msg) = cmd.plan() {
                    let given: Vec<&str> = argv[2..].iter().map(|a| a.split('=').next().unwrap_or(a)).filter(|a| a.starts_with("--")).collect();
                    prop_assert!(
                        given.iter().any(|o| msg.contains(o)),
                        "{:?}: rejected naming none of the options given: {}", argv, msg
                    );
                }
            }
        }
    }
}
