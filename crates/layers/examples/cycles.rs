//! Prints the module import cycles of the crate whose sources are under the directory given
//! (`cargo run -p atomkernel-layers --example cycles -- crates/kernel/src`), largest first.
//! With `--edges`, also each import inside a cycle and the line that makes it; with `--depth`,
//! each module's depth (the longest chain of imports below it, when there is no cycle): the
//! lowest layer a module can be placed in is the one above all its imports.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let edges = args.iter().any(|a| a == "--edges");
    let depth = args.iter().any(|a| a == "--depth");
    let Some(dir) = args.iter().find(|a| !a.starts_with("--")) else {
        eprintln!("usage: cycles [--edges] [--depth] DIR (a crate's src directory, e.g. crates/kernel/src)");
        std::process::exit(2);
    };
    if !std::path::Path::new(&dir).join("lib.rs").exists() {
        eprintln!("cycles: {dir} has no lib.rs: give a crate's src directory (e.g. crates/kernel/src)");
        std::process::exit(2);
    }
    let g = layers::graph(std::path::Path::new(&dir));
    let mut c = layers::cycles(&g);
    c.sort_by_key(|s| std::cmp::Reverse(s.len()));
    println!("{} modules; import cycles of {:?} modules", g.len(), c.iter().map(Vec::len).collect::<Vec<_>>());
    for scc in &c {
        println!("  {scc:?}");
        if !edges {
            continue;
        }
        for from in scc {
            for (to, line) in g[from].iter().filter(|(to, _)| scc.contains(to)) {
                println!("    {from} -> {to}: {line}");
            }
        }
    }
    if depth && c.is_empty() {
        let mut d = std::collections::BTreeMap::new();
        for m in g.keys() {
            depth_of(&g, m, &mut d);
        }
        let mut by: Vec<(usize, &String)> = d.iter().map(|(m, n)| (*n, *m)).collect();
        by.sort();
        for (n, m) in by {
            let below: Vec<&String> = g[m].keys().filter(|t| !t.is_empty() && *t != m).collect();
            println!("{n:3} {m}: {below:?}");
        }
    }
}

/// The longest chain of imports below `m` (0 for a module that imports none), memoized in `d`.
fn depth_of<'a>(g: &'a layers::Graph, m: &'a String, d: &mut std::collections::BTreeMap<&'a String, usize>) -> usize {
    if let Some(&n) = d.get(m) {
        return n;
    }
    let n = g[m].keys().filter(|t| g.contains_key(*t) && *t != m).map(|t| depth_of(g, t, d) + 1).max().unwrap_or(0);
    d.insert(m, n);
    n
}
