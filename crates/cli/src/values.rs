//! The command line's named values: models, bottom-half options, point tables, patch
//! synchronisations, atom kinds, peers and workloads, each parsed by clap from the names of the
//! type that owns it (the kernel's `PreemptModel::ALL`, the lab's `Peer`, the services'
//! `WORKLOADS`, ...), never from a list kept here; and the translation of a lower layer's
//! `field=value` error into the option that sets the field.
//!
//! **Mechanism.** A type the CLI takes by name implements [`Named`]: its values, each one's
//! name, and its owner's parser (whose error says what to use). [`one`] is clap's value parser
//! for one name, [`list`] for a comma list of names or `all` (a repeated name kept once, in
//! the order first named; an empty item beside a name, or `all` or the word for none inside a
//! list, is an error; a list with no name is the command's to allow or refuse). A bad name is
//! clap's error, one line naming the option and what to use; `main` prints it as `atomkernel:
//! ...` and exits 2 before anything runs. The owners validate what they own (the kernel's
//! `Config` its boot options, the CPUs and `bh_prio` among them; the lab the settings of its
//! runs; the services the scenario's shape and the packet device) and name their own field
//! (`cpus=65 is out of range`, `threads=0: use 1..=16 probes`); each command's table of
//! fields and options, through [`flags`], puts the option in its place.
//!
//! **Invariant.** The set of names an option accepts is the owner's set: a model, peer or
//! workload added there is accepted here, listed in `--help`, with no change to this file.
//! No lower layer spells an option: a message names one because a command mapped the field.

use clap::builder::{PossibleValue, TypedValueParser};
use clap::error::ErrorKind;
use kernel::{BhMode, PatchLeaf, PatchSync, PreemptModel, PtableMode};
use lab::go_peer;
use lab::peers::Peer;
use services::scenario::AtomKind;
use services::workloads::Workload;
use std::marker::PhantomData;

/// A type an option takes by name.
pub(crate) trait Named: Copy + PartialEq + Send + Sync + 'static {
    /// Every value a name can give, in the order a list keeps.
    fn every() -> Vec<Self>;
    /// What `all` means (every value this build can run).
    fn all() -> Vec<Self> {
        Self::every()
    }
    fn name(self) -> &'static str;
    /// The value called `s`, or the error for option `flag` (which names the option, the
    /// value and what to use).
    fn parse(flag: &str, s: &str) -> Result<Self, String>;
}

impl Named for PreemptModel {
    fn every() -> Vec<Self> {
        PreemptModel::ALL.to_vec()
    }
    fn name(self) -> &'static str {
        PreemptModel::name(self)
    }
    fn parse(flag: &str, s: &str) -> Result<Self, String> {
        s.parse().map_err(|e| format!("{flag}: {e}"))
    }
}

impl Named for BhMode {
    fn every() -> Vec<Self> {
        BhMode::ALL.to_vec()
    }
    fn name(self) -> &'static str {
        BhMode::name(self)
    }
    fn parse(_: &str, s: &str) -> Result<Self, String> {
        s.parse().map_err(|e| format!("--{e}"))
    }
}

impl Named for PtableMode {
    fn every() -> Vec<Self> {
        PtableMode::ALL.to_vec()
    }
    fn name(self) -> &'static str {
        PtableMode::name(self)
    }
    fn parse(_: &str, s: &str) -> Result<Self, String> {
        s.parse().map_err(|e| format!("--{e}"))
    }
}

impl Named for PatchLeaf {
    fn every() -> Vec<Self> {
        PatchLeaf::ALL.to_vec()
    }
    fn name(self) -> &'static str {
        PatchLeaf::name(self)
    }
    fn parse(flag: &str, s: &str) -> Result<Self, String> {
        PatchLeaf::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
            let names: Vec<&str> = PatchLeaf::ALL.iter().map(|m| m.name()).collect();
            format!("{flag} {s}: unknown leaf handling (where an event in a function without points is served); choose one of {}", names.join(", "))
        })
    }
}

impl Named for PatchSync {
    fn every() -> Vec<Self> {
        PatchSync::ALL.to_vec()
    }
    fn name(self) -> &'static str {
        PatchSync::name(self)
    }
    fn parse(flag: &str, s: &str) -> Result<Self, String> {
        PatchSync::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
            format!("{flag} {s}: unknown patch synchronisation; choose one of none (one byte alone) or ipi (text_poke_bp's rounds)")
        })
    }
}

impl Named for AtomKind {
    fn every() -> Vec<Self> {
        AtomKind::ALL.to_vec()
    }
    fn name(self) -> &'static str {
        AtomKind::name(self)
    }
    fn parse(flag: &str, s: &str) -> Result<Self, String> {
        AtomKind::parse(s).map_err(|e| format!("{flag}: {e}"))
    }
}

impl Named for Peer {
    /// Every peer, built or not, so that naming one this build lacks says how to build it.
    fn every() -> Vec<Self> {
        vec![Peer::HostFifo, Peer::Tokio, Peer::Go]
    }
    fn all() -> Vec<Self> {
        Peer::ALL.to_vec()
    }
    fn name(self) -> &'static str {
        Peer::name(self)
    }
    fn parse(flag: &str, s: &str) -> Result<Self, String> {
        match Self::every().into_iter().find(|p| p.name() == s) {
            Some(Peer::Go) if !go_peer::BUILT => Err(format!("{flag} go: {}", go_peer::not_built())),
            Some(p) => Ok(p),
            None => {
                let names: Vec<&str> = Self::every().iter().map(|p| p.name()).collect();
                Err(format!("{flag}: unknown peer '{s}': choose {}, all or none", names.join(", ")))
            }
        }
    }
}

impl Named for Workload {
    fn every() -> Vec<Self> {
        Workload::all()
    }
    fn name(self) -> &'static str {
        Workload::name(&self)
    }
    fn parse(flag: &str, s: &str) -> Result<Self, String> {
        Workload::named(s).map_err(|e| format!("{flag}: {e}"))
    }
}

/// An option's help ending with its default, for an option that is an `Option` (so that a
/// command can tell it was given) whose default is its owner's: `[default: 3]`, as clap writes
/// it for the others.
pub(crate) fn defaulted(help: &str, default: impl std::fmt::Display) -> String {
    format!("{help} [default: {default}]")
}

/// The option's name for messages: `--long`.
fn flag(arg: Option<&clap::Arg>) -> String {
    arg.and_then(|a| a.get_long()).map_or_else(|| "the value".into(), |l| format!("--{l}"))
}

fn text(value: &std::ffi::OsStr) -> &str {
    value.to_str().unwrap_or("")
}

fn refuse(cmd: &clap::Command, msg: String) -> clap::Error {
    clap::Error::raw(ErrorKind::ValueValidation, format!("{msg}\n")).with_cmd(cmd)
}

/// clap's value parser for one name of `T`.
#[derive(Clone)]
pub(crate) struct One<T>(PhantomData<T>);

/// [`One`]: `value_parser = values::one::<PreemptModel>()`.
pub(crate) fn one<T: Named>() -> One<T> {
    One(PhantomData)
}

impl<T: Named> TypedValueParser for One<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        T::parse(&flag(arg), text(value).trim()).map_err(|m| refuse(cmd, m))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(T::every().into_iter().map(|v| PossibleValue::new(v.name()))))
    }
}

/// A number an option takes, parsed as clap would, with an error that says what to use (not
/// Rust's "invalid digit found in string").
pub(crate) trait Number: std::str::FromStr + Clone + Send + Sync + 'static {
    /// What is wrong with `s`, which did not parse, and what to use instead.
    fn refusal(s: &str) -> String;
}

macro_rules! whole_numbers {
    ($($t:ty),*) => {$(
        impl Number for $t {
            fn refusal(s: &str) -> String {
                let digits = !s.is_empty() && s.trim_start_matches('-').bytes().all(|b| b.is_ascii_digit());
                match (digits, s.starts_with('-')) {
                    (true, true) => "is below 0: use a whole number, 0 or more".into(),
                    (true, false) => format!("is too large: use a whole number, at most {}", <$t>::MAX),
                    _ => "is not a whole number: use one, digits only".into(),
                }
            }
        }
    )*};
}
whole_numbers!(u8, u16, u32, u64, usize);

impl Number for f64 {
    fn refusal(_: &str) -> String {
        "is not a number: use one, such as 0.5".into()
    }
}

/// clap's value parser for a [`Number`] of type `T`.
#[derive(Clone)]
pub(crate) struct NumberParser<T>(PhantomData<T>);

impl<T: Number> TypedValueParser for NumberParser<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let s = text(value).trim();
        s.parse().map_err(|_| {
            let default = arg.and_then(|a| a.get_default_values().first()).and_then(|d| d.to_str());
            let example = default.map_or(String::new(), |d| format!(" (default: {d})"));
            refuse(cmd, format!("{} {s} {}{example}", flag(arg), T::refusal(s)))
        })
    }
}

/// `a` with a [`NumberParser`] in place of clap's own parser when it takes a whole number or
/// an `f64` (the same type, a better error); any other option unchanged.
pub(crate) fn numbers(a: clap::Arg) -> clap::Arg {
    use std::any::TypeId;
    fn with<T: Number>(a: clap::Arg) -> clap::Arg {
        a.value_parser(NumberParser::<T>(PhantomData))
    }
    let t = a.get_value_parser().type_id();
    match () {
        _ if t == TypeId::of::<u8>() => with::<u8>(a),
        _ if t == TypeId::of::<u16>() => with::<u16>(a),
        _ if t == TypeId::of::<u32>() => with::<u32>(a),
        _ if t == TypeId::of::<u64>() => with::<u64>(a),
        _ if t == TypeId::of::<usize>() => with::<usize>(a),
        _ if t == TypeId::of::<f64>() => with::<f64>(a),
        _ => a,
    }
}

/// A comma list of names of `T` (`all` for every one): one option's value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct List<T>(pub(crate) Vec<T>);

/// clap's value parser for a [`List`] of `T`; `none_word` (the peers' `none`) gives the empty
/// list.
#[derive(Clone)]
pub(crate) struct ListParser<T> {
    none_word: Option<&'static str>,
    kind: PhantomData<T>,
}

/// [`ListParser`] without a word for no value.
pub(crate) fn list<T: Named>() -> ListParser<T> {
    ListParser { none_word: None, kind: PhantomData }
}

/// [`ListParser`] where `word` (or nothing) means no value.
pub(crate) fn list_or<T: Named>(word: &'static str) -> ListParser<T> {
    ListParser { none_word: Some(word), kind: PhantomData }
}

/// Parses a comma list of names, or `all`, for option `flag`.
pub(crate) fn parse_list<T: Named>(flag: &str, arg: &str, none_word: Option<&str>) -> Result<Vec<T>, String> {
    let arg = arg.trim();
    if arg == "all" {
        return Ok(T::all());
    }
    if none_word.is_some_and(|w| w == arg) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let items: Vec<&str> = arg.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
    if items.is_empty() {
        return Ok(out);
    }
    let words = std::iter::once("all").chain(none_word);
    for name in arg.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(format!(
                "{flag} {arg}: an empty item (two commas together, or one at an end); write {}",
                items.join(",")
            ));
        }
        if let Some(w) = words.clone().find(|w| *w == name) {
            return Err(format!(
                "{flag} {arg}: {w} stands alone, not in a list; give {flag} {w}, or name the ones you want"
            ));
        }
        let v = T::parse(flag, name).map_err(|e| if none_word.is_some() { e } else { format!("{e}, or all") })?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

impl<T: Named> TypedValueParser for ListParser<T> {
    type Value = List<T>;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<List<T>, clap::Error> {
        parse_list(&flag(arg), text(value), self.none_word).map(List).map_err(|m| refuse(cmd, m))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        let names = T::every().into_iter().map(|v| PossibleValue::new(v.name()));
        let words = std::iter::once("all").chain(self.none_word).map(PossibleValue::new);
        Some(Box::new(names.chain(words)))
    }
}

/// The workloads of `list` at the sizes `sizes` gives (`--size NAME=N,...`, empty for the
/// defaults); each size checked by the workload ([`Workload::with_size`]).
pub(crate) fn sized(list: &[Workload], sizes: &str) -> Result<Vec<Workload>, String> {
    let mut chosen = list.to_vec();
    let mut given: Vec<(&str, &str)> = Vec::new();
    for pair in sizes.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, n) = pair.split_once('=').ok_or_else(|| format!("--size {pair}: write NAME=N, e.g. loader=256"))?;
        let w = Workload::named(name.trim()).map_err(|e| format!("--size: {e}"))?;
        if let Some((_, first)) = given.iter().find(|(g, _)| *g == w.name()) {
            return Err(format!("--size {pair}: {} is given a size twice ({first} first); give it once", w.name()));
        }
        given.push((w.name(), pair));
        let n = n.trim();
        let n: usize = n.parse().map_err(|_| {
            let info = w.info();
            let what = if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                "is too large"
            } else {
                "is not a whole number"
            };
            format!(
                "--size {pair}: {n} {what}: {} takes {}..={} ({})",
                info.name, info.size_min, info.size_max, info.size_meaning
            )
        })?;
        let sized = w.with_size(n).map_err(|e| format!("--size {pair}: {e}"))?;
        let slot = chosen.iter_mut().find(|c| c.index == w.index);
        *slot.ok_or_else(|| format!("--size {pair}: {} is not among the chosen workloads (--workload)", w.name()))? =
            sized;
    }
    Ok(chosen)
}

/// A lower layer's error with each `field=` it names (the field of a configuration, as the
/// kernel's `Config`, the lab's and the services' checks write it) put as the option that sets
/// the field: `field=value` becomes `--option value` (`cpus=65 is out of range` becomes `--cpus
/// 65 is out of range`), `field=true` the switch `--option` (`migrate=true needs cpus=2`
/// becomes `--migrate needs --cpus 2`), and a `field=` with no value (before a space, `:`, `,`,
/// `)` or the end: the field named, not a value of it) `--option`. A field matches only as a
/// whole word (`prio=` does not match inside `bh_prio=`); the first pair of `fields` that
/// matches wins.
pub(crate) fn flags(error: impl ToString, fields: &[(&str, &str)]) -> String {
    let e = error.to_string();
    let mut out = String::with_capacity(e.len() + 16);
    let mut rest = e.as_str();
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '.';
    'text: while let Some(c) = rest.chars().next() {
        if !out.chars().next_back().is_some_and(word) {
            for (field, flag) in fields {
                let Some(after) = rest.strip_prefix(field).and_then(|r| r.strip_prefix('=')) else { continue };
                out.push_str(flag);
                rest = match after.strip_prefix("true") {
                    Some(r) if !r.starts_with(word) => r,
                    _ => after,
                };
                if rest.starts_with(|c: char| !(c.is_whitespace() || matches!(c, ':' | ',' | ')'))) {
                    out.push(' ');
                }
                continue 'text;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The fields every command that boots a kernel sets by option.
pub(crate) const BOOT_FLAGS: [(&str, &str); 2] = [("cpus", "--cpus"), ("bh_prio", "--bh-prio")];

/// Checks a boot configuration the way the kernel will ([`kernel::Config::validate`]), before
/// any work, naming the option that set a bad field.
pub(crate) fn boot(config: &kernel::Config) -> Result<(), String> {
    config.validate().map_err(|e| flags(e, &BOOT_FLAGS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_and_peer_lists_parse() {
        let models = |s| parse_list::<PreemptModel>("--preempt", s, None);
        let peers = |s| parse_list::<Peer>("--peers", s, Some("none"));
        assert_eq!(models("all").unwrap(), PreemptModel::ALL.to_vec());
        assert_eq!(models("none, none").unwrap(), vec![PreemptModel::None]);
        assert!(models("none,fastest").unwrap_err().contains("unknown preemption model 'fastest'"));
        assert_eq!(peers("all").unwrap(), Peer::ALL.to_vec());
        assert_eq!(peers("none").unwrap(), vec![]);
        assert_eq!(peers("tokio, tokio").unwrap(), vec![Peer::Tokio]);
        assert_eq!(peers("").unwrap(), vec![]);
        let e = peers("none,go").unwrap_err();
        assert!(e.contains("--peers none,go: none stands alone, not in a list; give --peers none"), "{e}");
        let e = models("none,,full").unwrap_err();
        assert!(e.contains("--preempt none,,full: an empty item") && e.contains("write none,full"), "{e}");
        assert_eq!(models(" , ").unwrap(), vec![], "no name at all: the command's to allow or refuse");
        assert!(models(",full").unwrap_err().contains("--preempt ,full: an empty item"));
        assert!(models("all,none").unwrap_err().contains("all stands alone"));
        let e = peers("erlang").unwrap_err();
        assert!(e.contains("unknown peer 'erlang': choose host-fifo, tokio, go, all or none"), "{e}");
    }

    #[test]
    fn bh_lists_parse() {
        let bh = |s| parse_list::<BhMode>("--bh", s, None);
        assert_eq!(bh("all").unwrap(), BhMode::ALL.to_vec());
        assert_eq!(bh("threaded, threaded").unwrap(), vec![BhMode::Threaded]);
        assert!(bh("hard")
            .unwrap_err()
            .contains("--bh=hard: unknown bottom-half mode; choose one of classic, threaded, or all"));
    }

    #[test]
    fn go_not_built_names_the_fix() {
        if go_peer::BUILT {
            hostlab::testing::skip("the error for --peers go without Go: this build has the Go peer");
            return;
        }
        let e = parse_list::<Peer>("--peers", "tokio,go", Some("none")).unwrap_err();
        assert!(e.starts_with("--peers go: the Go runtime peer (peer:go) is not built"), "{e}");
        assert!(e.contains("apt-get install golang-go"), "{e}");
    }

    #[test]
    fn lists_and_sizes_parse_with_clear_errors() {
        let parse = |list: &str, sizes: &str| {
            let list = parse_list::<Workload>("--workload", list, None)?;
            sized(&list, sizes)
        };
        assert_eq!(parse("all", "").unwrap(), Workload::all());
        let w = parse("copy, loader,copy", "loader=8").unwrap();
        assert_eq!(w.iter().map(|w| (w.name(), w.size)).collect::<Vec<_>>(), [("copy", 64), ("loader", 8)]);
        let e = parse("compile", "").unwrap_err();
        assert!(e.contains("unknown workload 'compile'") && e.contains("loader, copy, checksum, hog, packet"), "{e}");
        assert!(parse("copy", "copy=0").unwrap_err().contains("copy takes 1..=4096"));
        let e = parse("copy", "copy=99999999999999999999").unwrap_err();
        assert!(e.contains("99999999999999999999 is too large: copy takes 1..=4096"), "{e}");
        let e = parse("copy", "copy=1.5").unwrap_err();
        assert!(e.contains("1.5 is not a whole number: copy takes 1..=4096"), "{e}");
        assert!(parse("copy", "copy").unwrap_err().contains("write NAME=N"));
        assert!(parse("copy", "disk=3").unwrap_err().contains("unknown workload 'disk'"));
        assert!(parse("copy", "hog=3").unwrap_err().contains("hog is not among the chosen workloads"));
        let e = parse("copy", "copy=4096,copy=1").unwrap_err();
        assert!(e.contains("--size copy=1: copy is given a size twice (copy=4096 first)"), "{e}");
    }

    #[test]
    fn a_fields_error_names_its_option() {
        let e = flags("cpus=65 is out of range: use 1..=64", &BOOT_FLAGS);
        assert_eq!(e, "--cpus 65 is out of range: use 1..=64");
        let fields = [("prio", "--prio"), ("migrate", "--migrate"), ("cpus", "--cpus"), ("seconds", "--duration")];
        let e = flags("bh_prio=5 with prio=3; migrate=true needs cpus=2, or seconds= (seconds=)", &fields);
        assert_eq!(e, "bh_prio=5 with --prio 3; --migrate needs --cpus 2, or --duration (--duration)");
        assert_eq!(flags("migrate=trueish: prio=", &fields), "--migrate trueish: --prio");
    }
}
