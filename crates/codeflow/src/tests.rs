//! Hand-written machine code of known shape: exact next-point sets and checker verdicts.

use crate::{analyze, Analysis, ExactTable, Function, Lookup, NextPoints, Reason, Unseen};
use alloc::collections::BTreeMap;
use std::prelude::rust_2021::*;

/// A tiny x86-64 assembler with labels, enough for the shapes below.
#[derive(Default)]
struct Asm {
    base: u64,
    b: Vec<u8>,
    labels: BTreeMap<&'static str, u64>,
    /// (position of a rel field, its width, label, end of the instruction).
    fix: Vec<(usize, usize, &'static str, u64)>,
    sites: Vec<u64>,
    funcs: Vec<(u64, u64)>,
    open: Option<u64>,
}

impl Asm {
    fn new(base: u64) -> Asm {
        Asm { base, ..Asm::default() }
    }
    fn here(&self) -> u64 {
        self.base + self.b.len() as u64
    }
    fn label(&mut self, l: &'static str) -> &mut Self {
        let h = self.here();
        self.labels.insert(l, h);
        self
    }
    fn func(&mut self, l: &'static str) -> &mut Self {
        self.end_func();
        self.open = Some(self.here());
        self.label(l)
    }
    fn end_func(&mut self) {
        if let Some(s) = self.open.take() {
            self.funcs.push((s, self.here()));
        }
    }
    fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.b.extend_from_slice(bytes);
        self
    }
    fn rel(&mut self, op: &[u8], width: usize, l: &'static str) -> &mut Self {
        self.raw(op);
        let pos = self.b.len();
        self.b.extend(core::iter::repeat_n(0, width));
        let end = self.here();
        self.fix.push((pos, width, l, end));
        self
    }
    fn point(&mut self, l: &'static str) -> &mut Self {
        let h = self.here();
        self.sites.push(h);
        self.label(l).raw(&[0x3d, 0, 0, 0, 0])
    }
    fn nop(&mut self) -> &mut Self {
        self.raw(&[0x90])
    }
    fn ret(&mut self) -> &mut Self {
        self.raw(&[0xc3])
    }
    fn test_edi(&mut self) -> &mut Self {
        self.raw(&[0x85, 0xff])
    }
    fn dec_edi(&mut self) -> &mut Self {
        self.raw(&[0xff, 0xcf])
    }
    /// `cmp byte [rdi], 0`: a loop exit that hangs on memory.
    fn cmp_mem(&mut self) -> &mut Self {
        self.raw(&[0x80, 0x3f, 0x00])
    }
    fn je(&mut self, l: &'static str) -> &mut Self {
        self.rel(&[0x74], 1, l)
    }
    fn jne(&mut self, l: &'static str) -> &mut Self {
        self.rel(&[0x75], 1, l)
    }
    fn jmp(&mut self, l: &'static str) -> &mut Self {
        self.rel(&[0xeb], 1, l)
    }
    fn call(&mut self, l: &'static str) -> &mut Self {
        self.rel(&[0xe8], 4, l)
    }
    fn finish(mut self) -> Program {
        self.end_func();
        for &(pos, width, l, end) in &self.fix {
            let d = self.labels[l] as i64 - end as i64;
            self.b[pos..pos + width].copy_from_slice(&d.to_le_bytes()[..width]);
        }
        Program { asm: self, data: BTreeMap::new() }
    }
}

struct Program {
    asm: Asm,
    /// Read-only data (jump tables) by address.
    data: BTreeMap<u64, Vec<u8>>,
}

impl Program {
    fn at(&self, l: &str) -> u64 {
        self.asm.labels[l]
    }
    fn analyze(&self) -> Analysis {
        let funcs: Vec<Function<'_>> = self
            .asm
            .funcs
            .iter()
            .map(|&(s, e)| Function {
                start: s,
                bytes: &self.asm.b[(s - self.asm.base) as usize..(e - self.asm.base) as usize],
            })
            .collect();
        // any bytes inside one blob, as a section reader gives them
        let read = |addr: u64, len: usize| {
            let (&at, d) = self.data.range(..=addr).next_back()?;
            d.get((addr - at) as usize..(addr - at) as usize + len)
        };
        analyze(&funcs, &self.asm.sites, &read)
    }
    /// The site indices of the named points.
    fn idx(&self, names: &[&str]) -> Vec<u32> {
        let mut v: Vec<u32> =
            names.iter().map(|n| self.asm.sites.iter().position(|&s| s == self.at(n)).unwrap() as u32).collect();
        v.sort_unstable();
        v
    }
    fn expect(&self, a: &Analysis, at: &str, points: &[&str], may_return: bool) {
        let want = NextPoints { sites: self.idx(points), may_return };
        assert_eq!(a.next_points(self.at(at)), Some(want.clone()), "next points at {at}");
        let t = ExactTable::build(a);
        let got = t.lookup(self.at(at));
        assert_eq!(got, Some(Lookup::Exact { sites: &want.sites, may_return }), "table at {at}");
    }
}

#[test]
fn straight_line() {
    let mut a = Asm::new(0x1000);
    a.func("f").nop().label("b").nop().nop().point("p").label("after").nop().ret();
    let p = a.finish();
    let an = p.analyze();
    p.expect(&an, "f", &["p"], false);
    p.expect(&an, "b", &["p"], false);
    p.expect(&an, "p", &["p"], false);
    p.expect(&an, "after", &[], true);
    let c = an.check_at(p.at("f")).unwrap();
    assert!(c.resolved && c.unbounded.is_empty());
    let s = c.max_stretch.unwrap();
    assert_eq!((s.insns, s.start, s.end), (3, p.at("f"), p.at("p") - 1));
}

#[test]
fn if_else_reaches_both_arms() {
    let mut a = Asm::new(0x2000);
    a.func("f").test_edi().label("br").je("else").point("a").jmp("end");
    a.label("else").point("b").label("end").ret();
    let p = a.finish();
    let an = p.analyze();
    p.expect(&an, "f", &["a", "b"], false);
    p.expect(&an, "br", &["a", "b"], false);
    p.expect(&an, "end", &[], true);
    assert_eq!(an.check_at(p.at("f")).unwrap().max_stretch.unwrap().insns, 2);
}

#[test]
fn loop_with_a_point_is_bounded() {
    let mut a = Asm::new(0x3000);
    a.func("f").label("top").point("p").label("dec").dec_edi().jne("top").ret();
    let p = a.finish();
    let an = p.analyze();
    p.expect(&an, "dec", &["p"], true);
    let c = an.check_at(p.at("f")).unwrap();
    assert!(c.unbounded.is_empty() && c.counted_loops == 0);
    let s = c.max_stretch.unwrap();
    assert_eq!((s.insns, s.start), (3, p.at("dec")));
}

#[test]
fn loop_without_a_point_is_unbounded_and_named() {
    let mut a = Asm::new(0x4000);
    a.func("f").point("p").nop().label("head").cmp_mem().jne("head").ret();
    a.func("g").label("head2").cmp_mem().jne("head2").point("q").ret();
    let p = a.finish();
    let an = p.analyze();
    p.expect(&an, "head", &[], true);
    p.expect(&an, "head2", &["q"], false);
    for (f, head) in [("f", "head"), ("g", "head2")] {
        let c = an.check_at(p.at(f)).unwrap();
        assert_eq!(c.max_stretch, None, "{f}");
        assert_eq!(c.unbounded.len(), 1, "{f}");
        assert_eq!((c.unbounded[0].head, c.unbounded[0].place_point_at), (p.at(head), p.at(head)), "{f}");
    }
}

#[test]
fn a_counted_loop_without_a_point_is_bounded_per_iteration() {
    let mut a = Asm::new(0x4800);
    // for (edi = n; edi != 0; edi--) {}: the exit's flags come from the step of edi.
    a.func("f").point("p").label("head").nop().dec_edi().jne("head").ret();
    // The same loop, but its counter is also loaded from memory: not counted.
    a.func("g").point("q").label("head2").raw(&[0x8b, 0x3f]).dec_edi().jne("head2").ret(); // mov edi, [rdi]
    let p = a.finish();
    let an = p.analyze();
    let c = an.check_at(p.at("f")).unwrap();
    assert_eq!((c.unbounded.len(), c.counted_loops), (0, 1));
    assert!(c.max_stretch.is_some());
    let g = an.check_at(p.at("g")).unwrap();
    assert_eq!((g.unbounded.len(), g.counted_loops), (1, 0));
    assert_eq!(g.unbounded[0].head, p.at("head2"));
}

#[test]
fn early_return_may_return_before_a_point() {
    let mut a = Asm::new(0x5000);
    a.func("f").test_edi().je("out").point("p").nop().label("out").ret();
    let p = a.finish();
    let an = p.analyze();
    p.expect(&an, "f", &["p"], true);
    p.expect(&an, "out", &[], true);
}

#[test]
fn calls_reach_the_callees_points() {
    let mut a = Asm::new(0x6000);
    a.func("g").point("pg").ret();
    a.func("h").test_edi().je("hout").point("ph").label("hout").ret();
    a.func("f").nop().label("c1").call("g").label("after").nop().call("h").label("c2").point("pf").ret();
    a.func("caller").call("f").ret(); // no points of its own: reaches them through f
    let p = a.finish();
    let an = p.analyze();
    p.expect(&an, "f", &["pg"], false);
    p.expect(&an, "c1", &["pg"], false);
    p.expect(&an, "after", &["ph", "pf"], false);
    p.expect(&an, "caller", &["pg"], false);
    let c = an.check_at(p.at("f")).unwrap();
    assert!(c.unbounded_calls.is_empty() && c.is_bound());
    // `call g` ends the stretch before it (g's entry is its point: nothing of g's added) and
    // the next starts with g's run from its point to its return (its `ret`, 1); `call h` does
    // not end it: h's whole stretch (test, je, ret: 3) is added to the call's 1.
    let g = an.check_at(p.at("g")).unwrap();
    assert_eq!((g.head_insns, g.tail_insns), (0, 1));
    assert_eq!(c.max_stretch.unwrap().insns, 1 + 1 + (1 + 3));
}

#[test]
fn a_call_that_meets_a_point_adds_the_callees_run_to_it_and_after_it() {
    let mut a = Asm::new(0x6800);
    // every path through `cutter` meets its point: 2 instructions before it, 4 after it
    a.func("cutter").nop().nop().point("pc").nop().nop().nop().ret();
    a.func("f").nop().nop().nop().label("c").call("cutter").label("after").nop().nop().ret();
    a.func("g").nop().nop().nop().nop().nop().nop().label("cg").call("cutter").nop().ret();
    let p = a.finish();
    let an = p.analyze();
    let cutter = an.check_at(p.at("cutter")).unwrap();
    assert_eq!((cutter.head_insns, cutter.tail_insns), (2, 4));
    // after the call: the callee's 4, then nop, nop, ret: 7, more than the 3 nops, the call and
    // the callee's 2 before it (6); the stretch is named from the call
    let s = an.check_at(p.at("f")).unwrap().max_stretch.unwrap();
    assert_eq!((s.insns, s.start), (4 + 3, p.at("c")));
    // before the call: 6 nops, the call and the callee's 2: 9, more than the 4 + 2 after
    let g = an.check_at(p.at("g")).unwrap();
    let s = g.max_stretch.unwrap();
    assert_eq!((s.insns, s.start, s.end), (6 + 1 + 2, p.at("g"), p.at("cg")));
    assert!(g.is_bound(), "{g:?}");
}

#[test]
fn a_conditional_tail_call_of_a_function_that_meets_a_point_does_not_end_the_other_path() {
    let mut a = Asm::new(0x7_0000);
    a.func("cutter").point("pc").ret();
    a.func("f");
    for _ in 0..10 {
        a.nop();
    }
    a.test_edi().jne("cutter");
    for _ in 0..10 {
        a.nop();
    }
    a.point("pf").ret();
    let p = a.finish();
    let f = p.analyze().check_at(p.at("f")).unwrap();
    // the path that does not jump: 10 nops, test, jne, 10 nops, then the point
    assert_eq!(f.max_stretch.unwrap().insns, 22, "{f:?}");
    assert!(f.is_bound(), "{f:?}");
}

#[test]
fn a_counted_loop_is_inside_the_stretch_once_its_head_included() {
    let mut a = Asm::new(0x7_1000);
    // point; 10 nops; loop { nop; dec edi } while edi != 0; 10 nops; point
    a.func("f").point("p1");
    for _ in 0..10 {
        a.nop();
    }
    a.label("head").nop().dec_edi().jne("head");
    for _ in 0..10 {
        a.nop();
    }
    a.point("p2").ret();
    // a function that meets its point on every path, then runs 10 nops, the same loop, returns
    a.func("cutter").point("pc");
    for _ in 0..10 {
        a.nop();
    }
    a.label("head2").nop().dec_edi().jne("head2").ret();
    let p = a.finish();
    let an = p.analyze();
    let f = an.check_at(p.at("f")).unwrap();
    assert_eq!((f.counted_loops, f.unbounded.len()), (1, 0));
    assert_eq!(f.max_stretch.unwrap().insns, 10 + 3 + 10, "one iteration, its head included: {f:?}");
    assert_eq!(an.check_at(p.at("cutter")).unwrap().tail_insns, 10 + 3 + 1);
}

#[test]
fn a_call_of_a_function_that_never_returns_but_meets_a_point_adds_its_run_to_the_point() {
    let mut a = Asm::new(0x7_2000);
    a.func("idle");
    for _ in 0..20 {
        a.nop();
    }
    a.label("top").point("pi").jmp("top");
    a.func("g").nop().call("idle");
    let p = a.finish();
    let g = p.analyze().check_at(p.at("g")).unwrap();
    // nop, the call, and idle's 20 nops before its point
    assert_eq!(g.max_stretch.unwrap().insns, 1 + 1 + 20, "{g:?}");
}

#[test]
fn a_call_that_meets_a_point_passes_on_what_the_callee_cannot_know() {
    let mut a = Asm::new(0x6c00);
    a.func("cutter").raw(&[0xff, 0xd0]).point("pc").ret(); // call rax, then the point
    a.func("f").nop().nop().nop().label("c").call("cutter").ret();
    let p = a.finish();
    let an = p.analyze();
    let f = an.check_at(p.at("f")).unwrap();
    assert!(!f.is_bound(), "{f:?}");
    let want = Unseen { at: p.at("c"), callee: Some(p.at("cutter")), reason: Reason::IndirectCall };
    assert_eq!(f.unknowns, vec![want]);
}

#[test]
fn a_rep_string_instruction_makes_the_stretch_a_lower_bound() {
    let mut a = Asm::new(0x6e00);
    a.func("f").point("p").label("rep").raw(&[0xf3, 0xa4]).ret(); // rep movsb
    a.func("g").point("q").raw(&[0xa4]).ret(); // a single movsb: known
    let p = a.finish();
    let an = p.analyze();
    let f = an.check_at(p.at("f")).unwrap();
    assert_eq!(f.unknowns, vec![Unseen { at: p.at("rep"), callee: None, reason: Reason::RepCount }]);
    assert!(!f.is_bound() && f.max_stretch.is_some());
    assert!(an.check_at(p.at("g")).unwrap().is_bound());
}

#[test]
fn a_call_into_an_unbounded_function_is_flagged() {
    let mut a = Asm::new(0x7000);
    a.func("spin").label("s").cmp_mem().jne("s").ret();
    a.func("f").point("p").label("c").call("spin").ret();
    let p = a.finish();
    let an = p.analyze();
    let c = an.check_at(p.at("f")).unwrap();
    assert_eq!(c.unbounded_calls, vec![(p.at("c"), p.at("spin"))]);
    assert!(c.is_unbounded() && c.max_stretch.is_none());
    assert!(an.check().iter().any(|c| c.start == p.at("spin") && c.unbounded.len() == 1));
}

#[test]
fn a_call_whose_callee_is_not_known_makes_the_stretch_a_lower_bound() {
    let mut a = Asm::new(0x7400);
    a.func("leaf").nop().nop().ret();
    a.func("odd").raw(&[0x48, 0x89, 0xf8, 0xff, 0xe0]); // mov rax, rdi; jmp rax: unresolved
    a.func("known").point("pk").label("ck").call("leaf").ret();
    a.func("indirect").point("pi").label("ci").raw(&[0xff, 0xd0]).ret(); // call rax
    a.func("foreign").point("pf").label("cf").call("ext").ret();
    a.func("to_odd").point("po").label("co").call("odd").ret();
    a.func("recursive").test_edi().je("rout").label("cr").call("recursive").point("pr").label("rout").ret();
    a.func("through").point("pt").label("ct").call("foreign_leaf").ret();
    a.func("foreign_leaf").nop().label("cfl").call("ext").ret();
    a.end_func();
    a.label("ext").ret(); // code outside every analysed function (libc, the vDSO)
    let p = a.finish();
    let an = p.analyze();
    let known = an.check_at(p.at("known")).unwrap();
    assert!(known.is_bound() && known.unknowns.is_empty());
    assert_eq!(known.max_stretch.unwrap().insns, 1 + 3 + 1);
    for (f, call, callee, reason) in [
        ("indirect", "ci", None, Reason::IndirectCall),
        ("foreign", "cf", Some("ext"), Reason::CallOutsideText),
        ("to_odd", "co", Some("odd"), Reason::Unresolved),
        ("recursive", "cr", Some("recursive"), Reason::Recursion),
        ("through", "ct", Some("foreign_leaf"), Reason::CallOutsideText),
    ] {
        let c = an.check_at(p.at(f)).unwrap();
        assert!(c.max_stretch.is_some() && !c.is_bound() && !c.is_unbounded(), "{f}: {c:?}");
        let want = Unseen { at: p.at(call), callee: callee.map(|l| p.at(l)), reason };
        assert_eq!(c.unknowns, vec![want], "{f}");
    }
    // What is known still counts: the foreign leaf's own instructions are in the caller's.
    assert_eq!(an.check_at(p.at("through")).unwrap().max_stretch.unwrap().insns, 1 + 3 + 1);
}

/// `switch (edi) { 0: point a; 1: point b; 2: return }`, LLVM's PIC jump table at 0x9000; with
/// `bounded` the index is range-checked (`cmp edi, 2; ja`), else not (an enum's discriminant).
/// The table's entries are the three cases, then `extra`'s (labels, or addresses).
fn jump_table(bounded: bool, extra: &[Result<&str, u64>]) -> Program {
    jump_tables(bounded, extra, false)
}

/// [`jump_table`]; with `second`, `f` also refers to 0x900c, right behind the three cases (the
/// start of a second table of its own).
fn jump_tables(bounded: bool, extra: &[Result<&str, u64>], second: bool) -> Program {
    let mut a = Asm::new(0x8000);
    a.func("f");
    if second {
        let disp = 0x900ci64 - (a.here() as i64 + 7);
        a.raw(&[0x48, 0x8d, 0x15]).raw(&disp.to_le_bytes()[..4]); // lea rdx, [rip + T2]
    }
    if bounded {
        a.raw(&[0x83, 0xff, 0x02]).rel(&[0x77], 1, "default"); // cmp edi, 2; ja default
    }
    a.raw(&[0x89, 0xf8]); // mov eax, edi
    let disp = 0x9000i64 - (a.here() as i64 + 7);
    a.raw(&[0x48, 0x8d, 0x0d]).raw(&disp.to_le_bytes()[..4]); // lea rcx, [rip + T]
    a.raw(&[0x48, 0x63, 0x04, 0x81, 0x48, 0x01, 0xc8, 0xff, 0xe0]); // movsxd rax,[rcx+rax*4]; add rax,rcx; jmp rax
    a.label("c0").point("a").ret();
    a.label("c1").point("b").ret();
    a.label("c2").ret();
    a.label("c3").point("c").ret();
    a.label("default").ret();
    let mut p = a.finish();
    let entry = |at: u64| ((at as i64 - 0x9000) as i32).to_le_bytes();
    let cases = [Ok("c0"), Ok("c1"), Ok("c2")].into_iter().chain(extra.iter().copied());
    let table: Vec<u8> = cases.flat_map(|c| entry(c.map_or_else(|a| a, |l| p.at(l)))).collect();
    p.data.insert(0x9000, table);
    p
}

#[test]
fn a_recognised_jump_table_is_followed() {
    let p = jump_table(true, &[]);
    let an = p.analyze();
    p.expect(&an, "f", &["a", "b"], true);
    assert!(an.check_at(p.at("f")).unwrap().resolved);
}

#[test]
fn an_unchecked_jump_table_is_read_entry_by_entry_to_the_first_not_of_its_function() {
    // read to the data's end: the three cases
    let p = jump_table(false, &[]);
    let an = p.analyze();
    p.expect(&an, "f", &["a", "b"], true);
    assert!(an.check_at(p.at("f")).unwrap().resolved);
    // an entry outside the function ends the table: `c3` behind it is not a case
    let p = jump_table(false, &[Err(0x100), Ok("c3")]);
    p.expect(&p.analyze(), "f", &["a", "b"], true);
    // an entry into the middle of an instruction of the function is no case of a table:
    // the function is unresolved, not cut short
    let p = jump_table(false, &[Err(0), Ok("c3")]);
    let mid = p.at("c0") + 1;
    let mut p = p;
    let t = p.data.get_mut(&0x9000).unwrap();
    t[12..16].copy_from_slice(&((mid as i64 - 0x9000) as i32).to_le_bytes());
    assert_eq!(ExactTable::build(&p.analyze()).lookup(p.at("f")), Some(Lookup::Unresolved));
    // so is a table longer than any the reading trusts (4,097 entries inside the function)
    let mut p = jump_table(false, &[]);
    let c0 = ((p.at("c0") as i64 - 0x9000) as i32).to_le_bytes();
    p.data.insert(0x9000, c0.iter().copied().cycle().take(4 * 4097).collect());
    assert_eq!(ExactTable::build(&p.analyze()).lookup(p.at("f")), Some(Lookup::Unresolved));
    // a case read past the table's end (here `c3`) is one more successor: more conservative
    let p = jump_table(false, &[Ok("c3")]);
    p.expect(&p.analyze(), "f", &["a", "b", "c"], true);
    // unless the function refers to that address: another table starts there
    let p = jump_tables(false, &[Ok("c3")], true);
    p.expect(&p.analyze(), "f", &["a", "b"], true);
}

#[test]
fn an_unrecognised_indirect_jump_leaves_the_function_unresolved() {
    let mut a = Asm::new(0x8000);
    a.func("f");
    a.raw(&[0x48, 0x89, 0xf8, 0xff, 0xe0]); // mov rax, rdi; jmp rax
    a.point("a").ret();
    let p = a.finish();
    let an = p.analyze();
    assert_eq!(an.next_points(p.at("f")), None);
    assert_eq!(ExactTable::build(&an).lookup(p.at("f")), Some(Lookup::Unresolved));
    let c = an.check_at(p.at("f")).unwrap();
    assert!(!c.resolved && c.max_stretch.is_none());
}

#[test]
fn armed_sites_read_as_points() {
    for op in [0xe8u8, 0xcc] {
        let mut a = Asm::new(0xa000);
        a.func("f").nop().point("p").label("after").ret();
        let mut p = a.finish();
        let at = (p.at("p") - 0xa000) as usize;
        p.asm.b[at] = op;
        let an = p.analyze();
        p.expect(&an, "f", &["p"], false);
        p.expect(&an, "after", &[], true);
    }
}

#[test]
fn addresses_outside_analysed_functions_have_no_entry() {
    let mut a = Asm::new(0xb000);
    a.func("leaf").nop().ret();
    a.func("f").point("p").ret();
    let p = a.finish();
    let t = ExactTable::build(&p.analyze());
    for ip in [0, p.at("leaf"), p.at("f") + 6, u64::MAX] {
        assert_eq!(t.lookup(ip), None, "{ip:#x}");
    }
}

proptest::proptest! {
    /// Random straight-line functions of nops, points, early-exit branches and returns: the
    /// table answers as the analysis at every byte, and a set is empty only with `may_return`.
    #[test]
    fn the_table_answers_as_the_analysis(shapes in proptest::collection::vec(proptest::collection::vec(0u8..4, 1..24), 1..40)) {
        let mut a = Asm::new(0x10_0000);
        let names: Vec<&'static str> = (0..shapes.len() * 2).map(|i| &*Box::leak(format!("l{i}").into_boxed_str())).collect();
        for (k, shape) in shapes.iter().enumerate() {
            a.func(names[2 * k]);
            for (j, &op) in shape.iter().enumerate() {
                match op {
                    0 => { a.nop(); }
                    1 => { a.point(Box::leak(format!("p{k}_{j}").into_boxed_str())); }
                    2 => { a.test_edi().je(names[2 * k + 1]); }
                    _ => { a.nop(); }
                }
            }
            a.label(names[2 * k + 1]).ret();
        }
        let p = a.finish();
        let an = p.analyze();
        let t = ExactTable::build(&an);
        for ip in 0x10_0000..p.asm.here() + 4 {
            let want = an.next_points(ip);
            let got = t.lookup(ip);
            match (&want, got) {
                (Some(w), Some(Lookup::Exact { sites, may_return })) => {
                    proptest::prop_assert_eq!(&w.sites[..], sites);
                    proptest::prop_assert_eq!(w.may_return, may_return);
                    proptest::prop_assert!(!w.sites.is_empty() || w.may_return);
                }
                (None, None) => {}
                (w, g) => proptest::prop_assert!(false, "{ip:#x}: analysis {w:?}, table {g:?}"),
            }
        }
    }
}

#[path = "bound_tests.rs"]
mod bound_tests;
