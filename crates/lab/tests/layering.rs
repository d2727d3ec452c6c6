//! The layering of the services and lab crates: no module import cycle inside either.
//!
//! **Mechanism.** Reads every source file of `crates/services/src` and `crates/lab/src` (a file
//! is a module: `lib.rs` the root, `x.rs` and `x/mod.rs` module `x`), drops comments and
//! `#[cfg(test)] mod tests`, and takes every path that starts with `crate::`, `super::` or
//! `self::` (in `use` trees too: `use crate::{a, b::{c, d}}`). Each path is an edge to the
//! longest module it names; [`cycles`] finds the strongly connected components of those edges
//! (Tarjan) and the test fails naming every component of more than one module, with the
//! imports that close it.
//!
//! **Invariant.** Imports point one way: a module never reaches itself through the modules it
//! imports. `cargo test -p atomkernel-lab --test layering` runs it; the self-test proves it
//! fails on a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A crate's modules: module path (`fuzz::check`, `` for the root) → the module paths it
/// imports, each with the source line that does.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

/// Every `.rs` file under `dir`, with its module path.
fn modules(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(dir).unwrap().with_extension("");
                let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
                if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
                    parts.pop();
                }
                out.push((parts.join("::"), p));
            }
        }
    }
    out.sort();
    out
}

/// The code of a file without comments, string literals' contents and its test module.
fn code(src: &str) -> String {
    let mut out = String::new();
    let mut lines = src.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" && lines.peek().is_some_and(|l| l.trim_start().starts_with("mod tests")) {
            break;
        }
        let (mut in_str, mut prev) = (false, ' ');
        for c in line.chars() {
            if !in_str && c == '/' && prev == '/' {
                out.pop();
                break;
            }
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            }
            if !in_str || c == '"' {
                out.push(c);
            }
            prev = if prev == '\\' && c == '\\' { ' ' } else { c };
        }
        out.push('\n');
    }
    out
}

/// The paths of a `use` tree or expression starting at `s` (just after `crate::`, `super::`
/// or `self::`), each as its segments.
fn paths(s: &str) -> Vec<Vec<String>> {
    fn tree(s: &[u8], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let mut path = prefix.to_vec();
        loop {
            while *i < s.len() && s[*i].is_ascii_whitespace() {
                *i += 1;
            }
            if *i < s.len() && s[*i] == b'{' {
                *i += 1;
                loop {
                    tree(s, i, &path, out);
                    while *i < s.len() && s[*i].is_ascii_whitespace() {
                        *i += 1;
                    }
                    match s.get(*i) {
                        Some(b',') => *i += 1,
                        Some(b'}') => {
                            *i += 1;
                            return;
                        }
                        _ => return,
                    }
                    while *i < s.len() && s[*i].is_ascii_whitespace() {
                        *i += 1;
                    }
                    if s.get(*i) == Some(&b'}') {
                        *i += 1;
                        return;
                    }
                }
            }
            let start = *i;
            while *i < s.len() && (s[*i].is_ascii_alphanumeric() || s[*i] == b'_' || s[*i] == b'*') {
                *i += 1;
            }
            if *i == start {
                out.push(path);
                return;
            }
            path.push(String::from_utf8_lossy(&s[start..*i]).into_owned());
            if s[*i..].starts_with(b"::") {
                *i += 2;
            } else {
                out.push(path);
                return;
            }
        }
    }
    let mut out = Vec::new();
    tree(s.as_bytes(), &mut 0, &[], &mut out);
    out
}

/// The import graph of the crate whose sources are under `dir`.
fn graph(dir: &Path) -> Graph {
    let mods = modules(dir);
    let known: BTreeSet<String> = mods.iter().map(|(m, _)| m.clone()).collect();
    let mut g = Graph::new();
    for (m, file) in &mods {
        let src = code(&std::fs::read_to_string(file).unwrap());
        let edges = g.entry(m.clone()).or_default();
        let here: Vec<&str> = if m.is_empty() { vec![] } else { m.split("::").collect() };
        for line in src.lines() {
            for (kw, base) in [
                ("crate::", vec![]),
                ("super::", here[..here.len().saturating_sub(1)].to_vec()),
                ("self::", here.clone()),
            ] {
                let mut from = 0;
                while let Some(at) = line[from..].find(kw).map(|a| a + from) {
                    let before = line[..at].chars().last();
                    let after = &line[at + kw.len()..];
                    from = at + kw.len();
                    if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                        continue;
                    }
                    for p in paths(after) {
                        let mut full: Vec<String> = base.iter().map(|s| s.to_string()).collect();
                        for seg in p {
                            match seg.as_str() {
                                "super" => drop(full.pop()),
                                "self" => {}
                                _ => full.push(seg),
                            }
                        }
                        let target = (0..=full.len())
                            .rev()
                            .map(|n| full[..n].join("::"))
                            .find(|t| known.contains(t))
                            .unwrap_or_default();
                        if target != *m {
                            edges.entry(target).or_insert_with(|| line.trim().to_string());
                        }
                    }
                }
            }
        }
    }
    g
}

/// The strongly connected components of `g` with more than one module (Tarjan).
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flat_map(|e| e.keys()) {
            if !t.index.contains_key(w.as_str()) {
                visit(t, w);
                let lw = t.low[w.as_str()];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w.as_str()) {
                let iw = t.index[w.as_str()];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t =
        T { g, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), out: Vec::new() };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// Each cycle, with the imports between its modules.
fn describe(g: &Graph, cycles: &[Vec<String>]) -> String {
    let mut s = String::new();
    for c in cycles {
        s += &format!("cycle among {c:?}:\n");
        for a in c {
            for (b, line) in g.get(a).into_iter().flatten().filter(|(b, _)| c.contains(b)) {
                s += &format!("  {a} -> {b}: {line}\n");
            }
        }
    }
    s
}

fn crate_src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name).join("src")
}

#[test]
fn services_and_lab_have_no_import_cycle() {
    for name in ["services", "lab"] {
        let g = graph(&crate_src(name));
        assert!(g.len() > 3, "{name}: read {} modules", g.len());
        let c = cycles(&g);
        assert!(c.is_empty(), "crates/{name}: module import cycles:\n{}", describe(&g, &c));
    }
}

#[test]
fn the_check_sees_every_form_of_import_and_fails_on_a_cycle() {
    let dir = std::env::temp_dir().join(format!("atomkernel-layering-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("x")).unwrap();
    let write = |f: &str, s: &str| std::fs::write(dir.join(f), s).unwrap();
    write("lib.rs", "//! doc naming [`crate::b`]\npub mod a;\npub mod b;\npub mod x;\n");
    write("a.rs", "use crate::{b::{self, B}, x::y};\n// crate::x in a comment\nfn f() -> b::B { B }\n");
    write("b.rs", "pub struct B;\nconst S: &str = \"crate::a\";\n#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n");
    write("x/mod.rs", "pub mod y;\n");
    write("x/y.rs", "fn g() { let _ = super::super::b::B; }\n");
    let g = graph(&dir);
    let edges = |m: &str| g[m].keys().cloned().collect::<Vec<_>>();
    assert_eq!(edges("a"), ["b", "x::y"]);
    assert!(edges("b").is_empty(), "strings, comments and the test module are not imports");
    assert_eq!(edges("x::y"), ["b"], "super::super:: climbs two modules");
    assert!(cycles(&g).is_empty());
    write("b.rs", "pub struct B;\nfn h() { crate::x::y::g() }\n");
    write("x/y.rs", "use crate::a;\n");
    let g = graph(&dir);
    let c = cycles(&g);
    assert_eq!(c, vec![vec!["a".to_string(), "b".into(), "x::y".into()]], "{}", describe(&g, &c));
    assert!(describe(&g, &c).contains("x::y -> a: use crate::a;"), "{}", describe(&g, &c));
    let _ = std::fs::remove_dir_all(&dir);
}
