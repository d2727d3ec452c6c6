//! The preemption-point table names each site's function and source line.

#[inline(never)]
fn two_atoms() -> u32 {
    let mut x = std::hint::black_box(1u32);
    x += 1;
    kernel::preempt_point!();
    x *= 3;
    x
}

#[test]
fn table_names_function_and_line_of_each_point() {
    assert_eq!(two_atoms(), 6);
    let rows = lab::symbols::point_table().unwrap();
    let mine: Vec<_> = rows.iter().filter(|r| r.file.ends_with("tests/points.rs")).collect();
    assert_eq!(mine.len(), 1, "{rows:#?}");
    assert_eq!(mine[0].line, 7);
    let f = mine[0].function.as_deref().unwrap_or("");
    assert!(f.ends_with("two_atoms"), "function: {f}");
    assert!(mine[0].symbol.as_deref().unwrap_or("").ends_with("two_atoms"), "{:?}", mine[0]);
    let canary = rows.iter().find(|r| r.file.ends_with("ppoint.rs")).unwrap();
    assert!(canary.function.as_deref().unwrap_or("").contains("canary"), "{canary:?}");
    assert!(rows.iter().all(|r| kernel::text::contains(r.addr)));
}
