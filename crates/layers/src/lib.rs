//! The import graph of a crate's modules, and the checks the layering test runs on it.
//!
//! **Mechanism.** [`graph`] reads every source file under a crate's `src` (a file is a module:
//! `lib.rs` the root, `x.rs` and `x/mod.rs` module `x`), drops comments, string contents and
//! `#[cfg(test)] mod tests`, and takes every path that starts with `crate::`, `super::`,
//! `self::` or a child module the file declares (in `use` trees too: `use crate::{a, b::{c,
//! d}}`). Each path is an edge to the longest module it names. [`cycles`] finds the strongly
//! connected components (Tarjan); [`Layers`] reads a layer table and names every import that
//! goes up it.
//!
//! **Invariant.** Pure reading of source text: it never builds the crate it checks, so a
//! violation is reported with the import line that makes it, whatever else is broken.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A crate's modules: module path (`fuzz::check`, `` for the root) → the module paths it
/// imports, each with the source line that does.
pub type Graph = BTreeMap<String, BTreeMap<String, String>>;

/// Every `.rs` file under `dir`, with its module path.
pub fn modules(dir: &Path) -> Vec<(String, PathBuf)> {
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
pub fn code(src: &str) -> String {
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
pub fn paths(s: &str) -> Vec<Vec<String>> {
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

/// The child modules a file declares (`mod x;`, `pub mod x;`, `pub(crate) mod x;`).
pub fn children(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("pub(crate) ").or_else(|| l.strip_prefix("pub ")).unwrap_or(l);
            let name = rest.strip_prefix("mod ")?.strip_suffix(';')?;
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_').then(|| name.to_string())
        })
        .collect()
}

/// The import graph of the crate whose sources are under `dir`.
pub fn graph(dir: &Path) -> Graph {
    let mods = modules(dir);
    let known: BTreeSet<String> = mods.iter().map(|(m, _)| m.clone()).collect();
    let mut g = Graph::new();
    for (m, file) in &mods {
        let src = code(&std::fs::read_to_string(file).unwrap());
        let edges = g.entry(m.clone()).or_default();
        let here: Vec<&str> = if m.is_empty() { vec![] } else { m.split("::").collect() };
        for line in src.lines() {
            let mut kws: Vec<(String, Vec<&str>)> = vec![
                ("crate::".into(), vec![]),
                ("super::".into(), here[..here.len().saturating_sub(1)].to_vec()),
                ("self::".into(), here.clone()),
            ];
            // A path may also start at a child module this file declares (`mod entry;` then
            // `entry::schedule()` or `use entry::X`): relative to this module.
            kws.extend(children(&src).into_iter().map(|c| (format!("{c}::"), here.clone())));
            for (kw, base) in kws {
                let kw = kw.as_str();
                let child = !kw.ends_with("crate::") && !kw.starts_with("super") && !kw.starts_with("self");
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
                        if child {
                            full.push(kw.trim_end_matches("::").to_string());
                        }
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
pub fn cycles(g: &Graph) -> Vec<Vec<String>> {
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
pub fn describe(g: &Graph, cycles: &[Vec<String>]) -> String {
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

/// A crate's layers, lowest first: which layer each module is in. A module the table does not
/// name is in the layer of its nearest named ancestor; the root is named `crate`.
#[derive(Debug)]
pub struct Layers {
    /// Each layer's name, lowest first.
    pub names: Vec<String>,
    of: BTreeMap<String, usize>,
}

/// An import that goes up the layers: from, to, and the line that makes it.
pub type Upward = (String, String, String);

impl Layers {
    /// Reads the markdown table between the lines `begin` and `end` of `doc`: one row per
    /// layer, lowest first, `| name | `module` `module` ... | what |`.
    pub fn parse(doc: &str, begin: &str, end: &str) -> Result<Layers, String> {
        let start = doc.find(begin).ok_or(format!("no line {begin:?}"))? + begin.len();
        let stop = doc[start..].find(end).ok_or(format!("no line {end:?}"))? + start;
        let mut layers = Layers { names: Vec::new(), of: BTreeMap::new() };
        for row in doc[start..stop].lines().map(str::trim).filter(|l| l.starts_with('|')) {
            let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
            if cells.len() < 2 || cells[0] == "layer" || cells[0].starts_with("---") {
                continue;
            }
            let n = layers.names.len();
            layers.names.push(cells[0].to_string());
            for m in cells[1].split('`').skip(1).step_by(2) {
                if layers.of.insert(m.to_string(), n).is_some() {
                    return Err(format!("module `{m}` is in two layers"));
                }
            }
        }
        Ok(layers)
    }

    /// The layer of module `m` (`""` is the root), if the table places it.
    pub fn layer_of(&self, m: &str) -> Option<usize> {
        let mut m = if m.is_empty() { "crate" } else { m };
        loop {
            if let Some(&l) = self.of.get(m) {
                return Some(l);
            }
            m = m.rsplit_once("::")?.0;
        }
    }

    /// Every import of `g` from a module to one in a higher layer.
    pub fn upward(&self, g: &Graph) -> Vec<Upward> {
        let mut out = Vec::new();
        for (from, edges) in g {
            for (to, line) in edges {
                if let (Some(a), Some(b)) = (self.layer_of(from), self.layer_of(to)) {
                    if b > a {
                        out.push((from.clone(), to.clone(), line.clone()));
                    }
                }
            }
        }
        out
    }
}
