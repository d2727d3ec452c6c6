//! The bound from an instruction on hand-written machine code of known shape: exact figures
//! for straight code, branches, calls, points and counted loops, `Unknown` with its reason and
//! place for the rest; and random programs run by a tiny interpreter, whose executed counts
//! never exceed the bound.

use super::{Asm, Program};
use crate::{Bound, Reason, Unknown};
use std::prelude::rust_2021::*;

fn bound(p: &Program, at: &str) -> Bound {
    p.analyze().bound_from(p.at(at))
}

fn unknown(p: &Program, at: &str, reason: Reason, place: &str) {
    assert_eq!(bound(p, at), Bound::Unknown(Unknown { reason, at: p.at(place) }), "from {at}");
}

// A few instructions beyond the shared assembler's.
impl Asm {
    fn xor_ecx(&mut self) -> &mut Self {
        self.raw(&[0x31, 0xc9])
    }
    fn xor_edx(&mut self) -> &mut Self {
        self.raw(&[0x31, 0xd2])
    }
    fn mov_ecx(&mut self, v: i32) -> &mut Self {
        self.raw(&[0xb9]).raw(&v.to_le_bytes())
    }
    fn inc_ecx(&mut self) -> &mut Self {
        self.raw(&[0xff, 0xc1])
    }
    fn inc_edx(&mut self) -> &mut Self {
        self.raw(&[0xff, 0xc2])
    }
    fn dec_ecx(&mut self) -> &mut Self {
        self.raw(&[0xff, 0xc9])
    }
    fn add_ecx(&mut self, v: i8) -> &mut Self {
        self.raw(&[0x83, 0xc1, v as u8])
    }
    fn cmp_ecx(&mut self, v: i8) -> &mut Self {
        self.raw(&[0x83, 0xf9, v as u8])
    }
    fn cmp_edx(&mut self, v: i8) -> &mut Self {
        self.raw(&[0x83, 0xfa, v as u8])
    }
    /// `jcc` with condition code `cc` (`0x2` b .. `0xf` g), rel8.
    fn jcc(&mut self, cc: u8, l: &'static str) -> &mut Self {
        self.rel(&[0x70 | cc], 1, l)
    }
}

const JB: u8 = 0x2;
const JAE: u8 = 0x3;
const JBE: u8 = 0x6;
const JL: u8 = 0xc;
const JG: u8 = 0xf;

#[test]
fn straight_line_counts_every_instruction_to_the_return() {
    let mut a = Asm::new(0x1000);
    a.func("f").nop().nop().label("m").nop().label("r").ret();
    let p = a.finish();
    assert_eq!(bound(&p, "f"), Bound::Known(4));
    assert_eq!(bound(&p, "m"), Bound::Known(2));
    assert_eq!(bound(&p, "r"), Bound::Known(1));
}

#[test]
fn a_rep_string_instruction_is_unknown_and_a_plain_one_counts_one() {
    // `rep movsb` retires one instruction per byte (QEMU's -icount counts them): a memcpy of a
    // page is 4,096 instructions, so its weight cannot be 1
    let mut a = Asm::new(0x1000);
    a.func("f").nop().label("rep").raw(&[0xf3, 0xa4]).label("after").nop().ret();
    a.func("g").nop().raw(&[0xa4]).ret(); // a single movsb
    let p = a.finish();
    unknown(&p, "f", Reason::RepCount, "rep");
    unknown(&p, "rep", Reason::RepCount, "rep");
    assert_eq!(bound(&p, "after"), Bound::Known(2));
    assert_eq!(bound(&p, "g"), Bound::Known(3));
    let mut a = Asm::new(0x1000);
    a.func("h").raw(&[0xf3, 0x48, 0xab]).ret(); // rep stosq
    unknown(&a.finish(), "h", Reason::RepCount, "h");
}

#[test]
fn a_rep_with_its_count_known_weighs_its_count_then_what_follows() {
    let mut a = Asm::new(0x1000);
    a.func("f").nop().label("rep").raw(&[0xf3, 0xa4]).label("after").nop().ret();
    a.func("g").label("two").raw(&[0xf3, 0xa4]).raw(&[0xf3, 0xa4]).ret(); // two reps in a row
    let p = a.finish();
    let an = p.analyze();
    let b = an.bounds();
    assert_eq!(b.from_rep(p.at("rep"), 4096), Bound::Known(4096 + 1 + 2), "the iterations left, the last, nop, ret");
    assert_eq!(b.from_rep(p.at("rep"), 0), Bound::Known(1 + 2), "a count of 0 still executes the rep once");
    assert_eq!(b.from_rep(p.at("after"), 4096), Bound::Known(2), "not a rep: the plain bound");
    assert_eq!(b.from_rep(p.at("f"), 7), b.from(p.at("f")), "before the rep its count is not known");
    let second = b.from_rep(p.at("two"), 5);
    assert!(
        matches!(second, Bound::Unknown(Unknown { reason: Reason::RepCount, .. })),
        "the next rep's count is not this one: {second:?}"
    );
}

#[test]
fn a_branch_takes_the_longer_arm() {
    let mut a = Asm::new(0x1000);
    a.func("f").cmp_mem().je("short").nop().nop().nop().label("short").nop().ret();
    let p = a.finish();
    assert_eq!(bound(&p, "f"), Bound::Known(7), "cmp, je, 3 nops, nop, ret");
    assert_eq!(bound(&p, "short"), Bound::Known(2));
}

#[test]
fn a_call_adds_the_callees_path_and_a_point_cuts_it() {
    let mut a = Asm::new(0x1000);
    a.func("f").nop().call("g").label("after").nop().ret();
    a.func("g").nop().nop().ret();
    a.func("h").nop().call("pt").nop().nop().nop().nop().nop().ret();
    a.func("pt").nop().point("p").label("past").nop().ret();
    let p = a.finish();
    assert_eq!(bound(&p, "f"), Bound::Known(1 + (1 + 3) + 2));
    assert_eq!(bound(&p, "g"), Bound::Known(3));
    // Every path through `pt` meets its point: the path ends there.
    assert_eq!(bound(&p, "h"), Bound::Known(1 + 1 + 1));
    assert_eq!(bound(&p, "p"), Bound::Known(0));
    assert_eq!(bound(&p, "past"), Bound::Known(2));
    let an = p.analyze();
    let b = an.bounds();
    assert_eq!(b.through_returns(p.at("g"), &[p.at("after")]), Bound::Known(3 + 2), "g's path, then f's");
    assert_eq!(b.through_returns(p.at("past"), &[p.at("after")]), Bound::Known(2 + 2));
}

#[test]
fn a_counted_loop_up_runs_its_exact_count() {
    let mut a = Asm::new(0x1000);
    a.func("f").xor_ecx().label("L").nop().label("inc").inc_ecx().cmp_ecx(10).jne("L").ret();
    let p = a.finish();
    assert_eq!(bound(&p, "f"), Bound::Known(1 + 10 * 4 + 1));
    assert_eq!(bound(&p, "L"), Bound::Known(10 * 4 + 1));
    // Interrupted in the first iteration: its rest, 9 more, the return.
    assert_eq!(bound(&p, "inc"), Bound::Known(3 + 9 * 4 + 1));
}

/// LLVM's strength-reduced offset: the count lives in two registers, copied back each time
/// around (`mov rdi, r14` at the latch, `lea r14, [rdi + 8]` after the head), the loop entered
/// at its head with `rdi` = 0: r14 = 8, 16, .. 64, so 8 iterations of 6 instructions.
fn copy_stepped(copy_first: bool) -> Program {
    let mut a = Asm::new(0x1000);
    a.func("f").raw(&[0x31, 0xff]); // xor edi, edi
    if copy_first {
        // the copy before the step in the same iteration: the count starts from r14 = 0
        a.raw(&[0x45, 0x31, 0xf6]); // xor r14d, r14d
        a.label("H").raw(&[0x4c, 0x89, 0xf7]); // mov rdi, r14
        a.raw(&[0x4c, 0x8d, 0x77, 0x08]).nop(); // lea r14, [rdi + 8]; the body
        a.raw(&[0x49, 0x83, 0xfe, 0x40]).jcc(0x5, "H").ret(); // cmp r14, 64; jne H
        return a.finish();
    }
    a.rel(&[0xeb], 1, "H"); // jmp H
    a.label("latch").raw(&[0x4c, 0x89, 0xf7]); // mov rdi, r14
    a.raw(&[0x49, 0x83, 0xfe, 0x40]).jcc(0x4, "out"); // cmp r14, 64; je out
    a.label("H").raw(&[0x4c, 0x8d, 0x77, 0x08]); // lea r14, [rdi + 8]
    a.label("body").nop().rel(&[0xeb], 1, "latch"); // the body; jmp latch
    a.label("out").ret();
    a.finish()
}

#[test]
fn a_count_copied_back_around_the_loop_is_a_step() {
    let p = copy_stepped(false);
    // xor, jmp, 8 iterations of lea, nop, jmp, mov, cmp, je, then the return
    assert_eq!(bound(&p, "f"), Bound::Known(2 + 8 * 6 + 1));
    // from the body of the first iteration: its rest (nop, jmp, mov, cmp, je), 7 more, ret
    assert_eq!(bound(&p, "body"), Bound::Known(5 + 7 * 6 + 1));
    let p = copy_stepped(true);
    // xor, xor, 8 iterations of mov, lea, nop, cmp, jne, then the return
    assert_eq!(bound(&p, "f"), Bound::Known(2 + 8 * 5 + 1));
}

#[test]
fn a_test_duplicated_onto_each_latch_counts_as_one_on_every_iteration() {
    // two ways around the loop, each ending in its own `cmp ecx, 10; jne H`
    let mut a = Asm::new(0x1000);
    a.func("f").xor_ecx().label("H").inc_ecx().raw(&[0x85, 0xff]).jcc(0x4, "B"); // test edi, edi; je B
    a.nop().cmp_ecx(10).jne("H").ret();
    a.label("B").nop().nop().cmp_ecx(10).jne("H").ret();
    let p = a.finish();
    // xor, 10 iterations of at most inc, test, je, nop, nop, cmp, jne, then the return
    assert_eq!(bound(&p, "f"), Bound::Known(1 + 10 * 7 + 1));
    // one latch's test alone is not on every iteration: without its twin the loop is unknown
    let mut a = Asm::new(0x1000);
    a.func("f").xor_ecx().label("H").inc_ecx().raw(&[0x85, 0xff]).jcc(0x4, "B");
    a.nop().cmp_ecx(10).jne("H").ret();
    a.label("B").nop().nop().cmp_ecx(11).jne("H").ret();
    let p = a.finish();
    assert!(matches!(bound(&p, "f"), Bound::Unknown(Unknown { reason: Reason::CountNotEveryIteration, .. })));
}

#[test]
fn a_copy_with_another_write_between_it_and_the_step_is_no_step() {
    let mut a = Asm::new(0x1000);
    a.func("f").raw(&[0x31, 0xff]).rel(&[0xeb], 1, "H"); // xor edi, edi; jmp H
    a.label("latch").raw(&[0x4c, 0x89, 0xf7]); // mov rdi, r14
    a.raw(&[0x48, 0xff, 0xc7]); // inc rdi: the copy is not what the step reads
    a.raw(&[0x49, 0x83, 0xfe, 0x40]).jcc(0x4, "out"); // cmp r14, 64; je out
    a.label("H").raw(&[0x4c, 0x8d, 0x77, 0x08]).nop().rel(&[0xeb], 1, "latch"); // lea r14, [rdi + 8]
    a.label("out").ret();
    let p = a.finish();
    assert!(matches!(bound(&p, "f"), Bound::Unknown(Unknown { reason: Reason::CountWrittenInBody, .. })));
}

#[test]
fn counting_down_by_the_steps_flags_and_by_a_signed_compare() {
    let mut a = Asm::new(0x1000);
    a.func("f").mov_ecx(10).label("L").nop().dec_ecx().jne("L").ret();
    a.func("g").mov_ecx(10).label("M").nop().add_ecx(-1).cmp_ecx(0).jcc(JG, "M").ret();
    let p = a.finish();
    assert_eq!(bound(&p, "f"), Bound::Known(1 + 10 * 3 + 1));
    assert_eq!(bound(&p, "g"), Bound::Known(1 + 10 * 4 + 1));
}

#[test]
fn a_step_of_four_and_the_exit_conditions() {
    let mut a = Asm::new(0x1000);
    // 4, 8, 12: `jb` leaves at 12 after 3 iterations.
    a.func("b").xor_ecx().label("B").nop().add_ecx(4).cmp_ecx(10).jcc(JB, "B").ret();
    // 4, 8, 12: never equal to 10.
    a.func("ne").xor_ecx().label("NE").nop().add_ecx(4).cmp_ecx(10).jne("NE").ret();
    // 1 ..= 11: `jbe` stays at 10, one more than `jb`.
    a.func("be").xor_ecx().label("BE").nop().inc_ecx().cmp_ecx(10).jcc(JBE, "BE").ret();
    // -2, -1, 0, 1, 2: signed; unsigned, -2 is already above 2.
    a.func("l").mov_ecx(-3).label("Ls").nop().inc_ecx().cmp_ecx(2).jcc(JL, "Ls").ret();
    a.func("u").mov_ecx(-3).label("Us").nop().inc_ecx().cmp_ecx(2).jcc(JB, "Us").ret();
    let p = a.finish();
    assert_eq!(bound(&p, "b"), Bound::Known(1 + 3 * 4 + 1));
    unknown(&p, "ne", Reason::NeverExits, "NE");
    assert_eq!(bound(&p, "be"), Bound::Known(1 + 11 * 4 + 1));
    assert_eq!(bound(&p, "l"), Bound::Known(1 + 5 * 4 + 1));
    assert_eq!(bound(&p, "u"), Bound::Known(1 + 4 + 1));
}

#[test]
fn a_loop_tested_at_the_top_counts_its_last_partial_iteration_in_full() {
    let mut a = Asm::new(0x1000);
    a.func("f").xor_ecx().label("L").cmp_ecx(10).jcc(JAE, "out").nop().inc_ecx().jmp("L").label("out").ret();
    let p = a.finish();
    // The head runs 11 times (0..=10); each counted as a whole iteration (5).
    assert_eq!(bound(&p, "f"), Bound::Known(1 + 11 * 5 + 1));
}

#[test]
fn nested_counted_loops_multiply() {
    let mut a = Asm::new(0x1000);
    a.func("f").xor_edx().label("O").xor_ecx().label("I").nop().inc_ecx().cmp_ecx(5).jne("I");
    a.inc_edx().cmp_edx(3).jne("O").ret();
    let p = a.finish();
    assert_eq!(bound(&p, "f"), Bound::Known(1 + 3 * (1 + 5 * 4 + 3) + 1));
    assert_eq!(bound(&p, "I"), Bound::Known(5 * 4 + 3 + 2 * (1 + 5 * 4 + 3) + 1));
}

#[test]
fn loops_without_a_static_count_are_unknown_at_their_head() {
    let mut a = Asm::new(0x1000);
    a.func("mem").nop().label("M").nop().cmp_mem().jne("M").ret();
    a.func("body").xor_ecx().label("B").inc_ecx().raw(&[0x01, 0xc1]).cmp_ecx(10).jne("B").ret(); // add ecx, eax
    a.func("rt").raw(&[0x8b, 0x0f]).label("R").nop().dec_ecx().jne("R").ret(); // mov ecx, [rdi]
    a.func("arg").nop().label("A").dec_edi().jne("A").ret();
    a.func("some").xor_ecx().label("S").cmp_mem().je("skip").inc_ecx().label("skip").cmp_ecx(10).jne("S").ret();
    a.func("len").xor_ecx().label("N").nop().inc_ecx().raw(&[0x39, 0xf9]).jne("N").ret(); // cmp ecx, edi
    let p = a.finish();
    unknown(&p, "mem", Reason::LoopExitNotCounted, "M");
    unknown(&p, "len", Reason::CountSetAtRunTime, "N");
    unknown(&p, "body", Reason::CountWrittenInBody, "B");
    unknown(&p, "rt", Reason::CountSetAtRunTime, "R");
    unknown(&p, "arg", Reason::CountSetAtRunTime, "A");
    unknown(&p, "some", Reason::CountNotEveryIteration, "S");
    // After the loop the bound is known again.
    assert_eq!(p.analyze().bound_from(p.at("M") + 6), Bound::Known(1));
}

#[test]
fn indirect_and_outside_calls_are_unknown_at_the_call() {
    let mut a = Asm::new(0x1000);
    a.func("ind").nop().label("c").raw(&[0xff, 0xd0]).ret(); // call rax
    a.func("out").nop().label("o").raw(&[0xe8, 0, 0, 0, 0x10]).ret(); // call far away
    let p = a.finish();
    unknown(&p, "ind", Reason::IndirectCall, "c");
    unknown(&p, "out", Reason::CallOutsideText, "o");
}

#[test]
fn a_loop_with_a_point_needs_no_count() {
    let mut a = Asm::new(0x1000);
    a.func("f").nop().label("L").cmp_mem().point("p").jne("L").ret();
    let p = a.finish();
    assert_eq!(bound(&p, "f"), Bound::Known(2), "nop, cmp, then the point");
    assert_eq!(bound(&p, "L"), Bound::Known(1));
}
