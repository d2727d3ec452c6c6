//! The layering of atomkernel's crates: the kernel core's layers (docs/ARCHITECTURE.md), its
//! import cycles, its one door to the machine and its sealed models; no import cycle in the
//! services and the lab.
//!
//! **Mechanism.** `layers::graph` reads a crate's import graph from its sources (every path
//! from `crate::`, `super::`, `self::` or a declared child module, to the longest module it
//! names); `layers::cycles` finds its strongly connected components; `layers::Layers` reads
//! the kernel's layer table between `<!-- kernel layers -->` markers in docs/ARCHITECTURE.md.
//! Each test fails naming the imports that break its rule.
//!
//! **Invariant.** Imports point one way: a module never reaches itself through the modules it
//! imports (in the kernel: never up its layers either).
//! `cargo test -p atomkernel-layers` runs it; the self-tests prove it fails on a cycle and on
//! an import that goes up.

use layers::{cycles, describe, graph};
use std::path::{Path, PathBuf};

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

/// The kernel core's layer table, from docs/ARCHITECTURE.md.
fn kernel_layers() -> layers::Layers {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/ARCHITECTURE.md")).unwrap();
    layers::Layers::parse(&doc, "<!-- kernel layers -->", "<!-- end kernel layers -->").unwrap()
}

#[test]
fn every_kernel_module_has_a_layer_and_no_import_goes_up() {
    let g = graph(&crate_src("kernel"));
    let l = kernel_layers();
    assert!(l.names.len() >= 3 && g.len() > 30, "read {} layers, {} modules", l.names.len(), g.len());
    let unplaced: Vec<&String> = g.keys().filter(|m| l.layer_of(m).is_none()).collect();
    assert!(unplaced.is_empty(), "modules in no layer of docs/ARCHITECTURE.md's table: {unplaced:?}");
    let up = l.upward(&g);
    let text: Vec<String> = up
        .iter()
        .map(|(a, b, line)| {
            let (la, lb) = (l.layer_of(a).unwrap(), l.layer_of(b).unwrap());
            format!("  {a} ({}) -> {b} ({}): {line}", l.names[la], l.names[lb])
        })
        .collect();
    assert!(up.is_empty(), "imports that go up the kernel's layers:\n{}", text.join("\n"));
}

#[test]
fn the_kernel_has_no_import_cycle() {
    let g = graph(&crate_src("kernel"));
    let c = cycles(&g);
    assert!(c.is_empty(), "the kernel's modules import each other in a cycle:\n{}", describe(&g, &c));
}

/// The source of the kernel core without comments, by file.
fn kernel_code() -> Vec<(PathBuf, String)> {
    layers::modules(&crate_src("kernel"))
        .into_iter()
        .map(|(_, f)| {
            let code = layers::code(&std::fs::read_to_string(&f).unwrap());
            (f, code)
        })
        .collect()
}

#[test]
fn the_core_reaches_the_machine_only_through_its_arch_module() {
    for (f, code) in kernel_code() {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name == "arch.rs" || name == "lib.rs" {
            continue;
        }
        assert!(!code.contains("arch_hosted"), "{}: names the hosted arch crate", f.display());
        // An arch type's own functions, reached through its alias, would bind the core to one
        // arch: every one the core uses is an item of the Arch trait (`A::...`).
        for ty in ["TaskContext::", "Timer::", "IrqRaiser::", "CpuRegistration::", "AllSitesClaim::", "DeviceTimer::"] {
            assert!(!code.contains(ty), "{}: calls {ty}..., not an Arch item", f.display());
        }
        assert!(!code.contains("std::"), "{}: the core is no_std", f.display());
    }
    let lib = std::fs::read_to_string(crate_src("kernel").join("lib.rs")).unwrap();
    assert!(lib.contains("#![no_std]") && lib.contains("#![forbid(unsafe_code)]"));
}

#[test]
fn no_file_outside_model_names_a_model() {
    for (f, code) in kernel_code() {
        if f.components().any(|c| c.as_os_str() == "model") {
            continue;
        }
        for m in ["none", "voluntary", "full", "lazy", "cpulock", "patch"] {
            for form in [format!("model::{m}::"), format!("model.{m}."), format!("model::{m};")] {
                assert!(!code.contains(&form), "{}: names the model's `{form}`", f.display());
            }
        }
    }
}

#[test]
fn the_layer_check_names_an_import_that_goes_up() {
    let doc = "x\n<!-- l -->\n| layer | modules | what |\n| --- | --- | --- |\n| low | `a` `x::y` | |\n\
               | high | `b` `crate` | |\n<!-- end l -->\n";
    let l = layers::Layers::parse(doc, "<!-- l -->", "<!-- end l -->").unwrap();
    assert_eq!(l.names, ["low", "high"]);
    assert_eq!(
        (l.layer_of("a"), l.layer_of("x::y::z"), l.layer_of(""), l.layer_of("x")),
        (Some(0), Some(0), Some(1), None)
    );
    let mut g = layers::Graph::new();
    g.entry("b".into()).or_default().insert("a".into(), "use crate::a;".into());
    assert!(l.upward(&g).is_empty(), "down is allowed");
    g.entry("x::y".into()).or_default().insert("b".into(), "use crate::b;".into());
    assert_eq!(l.upward(&g), [("x::y".to_string(), "b".to_string(), "use crate::b;".to_string())]);
    assert!(layers::Layers::parse("| a | `m` |", "<!-- l -->", "<!-- end l -->").is_err(), "no table, an error");
}
