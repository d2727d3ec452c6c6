//! The bound against execution: random small programs of the counted-loop shapes (loops
//! counting up or down by steps of -3..=3 under any of the ten compare exits, tested at the
//! bottom, at the top, rotated or by the step's own flags; nested loops, second exits and
//! branches on memory, starts and steps on some paths only, points, calls), run by a tiny
//! interpreter with random memory answers; from every executed instruction, the instructions
//! run until the next point or the function's return never exceed the static bound.

use crate::{analyze, Bound, Function};
use proptest::prelude::*;
use std::prelude::rust_2021::*;

/// Loop count registers: `ebx` and `ebp`, kept by calls.
const REGS: [u8; 2] = [3, 5];
/// The compare exits: b ae e ne be a l ge le g.
const CONDS: [u8; 10] = [0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0xc, 0xd, 0xe, 0xf];

#[derive(Clone, Copy, Debug)]
enum Op {
    Nop,
    Point,
    Ret,
    Set(u8, i32),
    Step(u8, i8),
    Cmp(u8, i8),
    CmpMem,
    Jcc(u8, usize),
    Jmp(usize),
    Call,
    Label(usize),
}

impl Op {
    fn len(self) -> u64 {
        match self {
            Op::Nop | Op::Ret => 1,
            Op::Point | Op::Set(_, _) | Op::Jmp(_) | Op::Call => 5,
            Op::Step(_, d) if d == 1 || d == -1 => 2,
            Op::Step(_, _) | Op::Cmp(_, _) | Op::CmpMem => 3,
            Op::Jcc(_, _) => 6,
            Op::Label(_) => 0,
        }
    }
}

/// A xorshift generator: the program's shape and the memory's answers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
}

fn fresh(labels: &mut usize) -> usize {
    *labels += 1;
    *labels
}

/// Emits random items into `ops`; `regs` are the count registers still free.
fn items(r: &mut Rng, ops: &mut Vec<Op>, labels: &mut usize, depth: u32, regs: &[u8], calls: bool) {
    for _ in 0..1 + r.below(3) {
        match r.below(9) {
            0..=2 => ops.push(Op::Nop),
            3 => ops.push(Op::Point),
            4 if calls => ops.push(Op::Call),
            5 if depth < 3 => {
                let end = fresh(labels);
                ops.extend([Op::CmpMem, Op::Jcc(0x4, end)]);
                items(r, ops, labels, depth + 1, regs, calls);
                ops.push(Op::Label(end));
            }
            6..=8 if !regs.is_empty() => {
                let (reg, head, test) = (regs[0], fresh(labels), fresh(labels));
                let (init, step, imm) = (r.range(-6, 6) as i32, r.range(-3, 3) as i8, r.range(-6, 12) as i8);
                let form = r.below(4);
                let cc = if form == 3 { 0x4 + r.below(2) as u8 } else { CONDS[r.below(10) as usize] };
                ops.push(Op::Set(reg, init));
                let skip = fresh(labels);
                match r.below(8) {
                    // On some paths in, another start, or a start set at run time.
                    0 => ops.extend([Op::CmpMem, Op::Jcc(0x4, skip), Op::Set(reg, init + 1), Op::Label(skip)]),
                    1 => ops.extend([Op::CmpMem, Op::Jcc(0x4, skip), Op::Step(reg, 1), Op::Label(skip)]),
                    _ => {}
                }
                if form == 2 {
                    ops.push(Op::Jmp(test));
                }
                ops.push(Op::Label(head));
                if form == 1 {
                    ops.extend([Op::Cmp(reg, imm), Op::Jcc(cc, test)]);
                }
                items(r, ops, labels, depth + 1, &regs[1..], calls);
                let brk = fresh(labels);
                if r.below(6) == 0 {
                    ops.extend([Op::CmpMem, Op::Jcc(0x4, brk)]); // a second exit, on memory
                }
                if r.below(8) == 0 {
                    // A step on some iterations only.
                    let over = fresh(labels);
                    ops.extend([Op::CmpMem, Op::Jcc(0x4, over), Op::Step(reg, step), Op::Label(over), Op::Label(test)]);
                } else {
                    ops.extend([Op::Step(reg, step), Op::Label(test)]);
                }
                match form {
                    1 => ops.insert(ops.len() - 1, Op::Jmp(head)),
                    3 => ops.push(Op::Jcc(cc, head)),
                    _ => ops.extend([Op::Cmp(reg, imm), Op::Jcc(cc, head)]),
                }
                ops.push(Op::Label(brk));
            }
            _ => ops.push(Op::Nop),
        }
    }
}

/// Two functions, `f` (index 0) and the `g` it calls (no loops), laid out from 0x1000.
struct Prog {
    funcs: [Vec<Op>; 2],
    addrs: [Vec<u64>; 2],
    labels: std::collections::BTreeMap<usize, u64>,
    bytes: Vec<u8>,
    sites: Vec<u64>,
    starts: [u64; 3],
}

fn layout(f: Vec<Op>, g: Vec<Op>) -> Prog {
    let mut p = Prog {
        funcs: [f, g],
        addrs: [Vec::new(), Vec::new()],
        labels: Default::default(),
        bytes: Vec::new(),
        sites: Vec::new(),
        starts: [0x1000, 0, 0],
    };
    let mut at = 0x1000;
    for k in 0..2 {
        p.starts[k] = at;
        for op in &p.funcs[k] {
            p.addrs[k].push(at);
            if let Op::Label(l) = op {
                p.labels.insert(*l, at);
            }
            at += op.len();
        }
    }
    p.starts[2] = at;
    for k in 0..2 {
        for (i, &op) in p.funcs[k].iter().enumerate() {
            let (a, end) = (p.addrs[k][i], p.addrs[k][i] + op.len());
            let rel = |t: u64| ((t as i64 - end as i64) as i32).to_le_bytes();
            let b: Vec<u8> = match op {
                Op::Nop => vec![0x90],
                Op::Ret => vec![0xc3],
                Op::Point => {
                    p.sites.push(a);
                    vec![0x3d, 0, 0, 0, 0]
                }
                Op::Set(r, v) => [vec![0xb8 + r], v.to_le_bytes().to_vec()].concat(),
                Op::Step(r, 1) => vec![0xff, 0xc0 | r],
                Op::Step(r, -1) => vec![0xff, 0xc8 | r],
                Op::Step(r, d) => vec![0x83, 0xc0 | r, d as u8],
                Op::Cmp(r, v) => vec![0x83, 0xf8 | r, v as u8],
                Op::CmpMem => vec![0x80, 0x3f, 0x00],
                Op::Jcc(cc, l) => [vec![0x0f, 0x80 | cc], rel(p.labels[&l]).to_vec()].concat(),
                Op::Jmp(l) => [vec![0xe9], rel(p.labels[&l]).to_vec()].concat(),
                Op::Call => [vec![0xe8], rel(p.starts[1]).to_vec()].concat(),
                Op::Label(_) => vec![],
            };
            p.bytes.extend(b);
        }
    }
    p
}

fn holds(cc: u8, a: u32, b: u32) -> bool {
    let (x, y) = (a as i32, b as i32);
    match cc {
        0x2 => a < b,
        0x3 => a >= b,
        0x4 => a == b,
        0x5 => a != b,
        0x6 => a <= b,
        0x7 => a > b,
        0xc => x < y,
        0xd => x >= y,
        0xe => x <= y,
        _ => x > y,
    }
}

/// Runs `f` from its entry: per executed instruction, its address, its call depth, and
/// whether it is a point or a return (at most `cap` instructions).
fn run(p: &Prog, r: &mut Rng, cap: usize) -> Vec<(u64, usize, u8)> {
    let (mut regs, mut flags, mut trace) = ([0u32; 8], None::<(u32, u32)>, Vec::new());
    let (mut k, mut i, mut stack) = (0usize, 0usize, Vec::new());
    while trace.len() < cap {
        let op = p.funcs[k][i];
        let kind = match op {
            Op::Point => 1,
            Op::Ret => 2,
            _ => 0,
        };
        if !matches!(op, Op::Label(_)) {
            trace.push((p.addrs[k][i], stack.len(), kind));
        }
        let goto = |l: usize| p.funcs[k].iter().position(|o| matches!(o, Op::Label(m) if *m == l)).unwrap();
        i += 1;
        match op {
            Op::Set(reg, v) => regs[reg as usize] = v as u32,
            Op::Step(reg, d) => {
                regs[reg as usize] = regs[reg as usize].wrapping_add(d as i32 as u32);
                flags = Some((regs[reg as usize], 0));
            }
            Op::Cmp(reg, v) => flags = Some((regs[reg as usize], v as i32 as u32)),
            Op::CmpMem => flags = None,
            Op::Jcc(cc, l) if flags.map_or(r.below(2) == 0, |(a, b)| holds(cc, a, b)) => i = goto(l),
            Op::Jmp(l) => i = goto(l),
            Op::Call => {
                stack.push((k, i));
                (k, i) = (1, 0);
            }
            Op::Ret => match stack.pop() {
                Some(back) => (k, i) = back,
                None => break,
            },
            _ => {}
        }
    }
    trace
}

/// Per trace position: instructions run until a point (not counted) or the return of its
/// frame (counted), or the trace's end.
fn counts(trace: &[(u64, usize, u8)]) -> Vec<u64> {
    let n = trace.len();
    let (mut point, mut ret, mut out) = (n, vec![n; 64], vec![0; n]);
    for j in (0..n).rev() {
        let (_, d, kind) = trace[j];
        out[j] = match kind {
            1 => 0,
            2 => 1,
            _ => (point.min(ret[d].saturating_add(1).min(n)) - j) as u64,
        };
        match kind {
            1 => point = j,
            2 => ret[d] = j,
            _ => {}
        }
    }
    out
}

fn check(seed: u64) -> Result<(), TestCaseError> {
    let mut r = Rng(seed | 1);
    let (mut f, mut g, mut labels) = (Vec::new(), Vec::new(), 0);
    items(&mut r, &mut f, &mut labels, 0, &REGS, true);
    f.push(Op::Ret);
    items(&mut r, &mut g, &mut labels, 1, &[], false);
    g.push(Op::Ret);
    let p = layout(f, g);
    let off = |a: u64| (a - 0x1000) as usize;
    let funcs =
        [0, 1].map(|k| Function { start: p.starts[k], bytes: &p.bytes[off(p.starts[k])..off(p.starts[k + 1])] });
    let a = analyze(&funcs, &p.sites, &|_, _| None);
    let b = a.bounds();
    for run_no in 0..4 {
        let trace = run(&p, &mut r, 20_000);
        for (j, n) in counts(&trace).into_iter().enumerate() {
            if let Bound::Known(bound) = b.from(trace[j].0) {
                prop_assert!(n <= bound, "run {run_no}: from {:#x} ran {n} > bound {bound}\n{:?}", trace[j].0, p.funcs);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn executed_counts_never_exceed_the_bound(seed in any::<u64>()) {
        check(seed)?;
    }
}
