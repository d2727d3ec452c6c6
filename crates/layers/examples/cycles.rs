//! Prints the module import cycles of the crate whose sources are under the directory given
//! (`cargo run -p atomkernel-layers --example cycles -- crates/kernel/src`), largest first.

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: cycles DIR (a crate's src directory, e.g. crates/kernel/src)");
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
    }
}
