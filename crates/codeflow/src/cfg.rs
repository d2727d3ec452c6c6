//! One function's control-flow graph, decoded from its machine code.
//!
//! **Mechanism.** A linear sweep with `iced-x86` from the function's first byte to its last
//! (compiled x86-64 code keeps no data in its functions), except that the five bytes of every
//! preemption-point site are taken as one [`Step::Point`] whatever they hold at the moment (an
//! armed site reads as `call` or `int3`). Each instruction gets its successors inside the
//! function (fall-through, direct jump and branch targets, the cases of a recognised jump
//! table) and what it does at the edge of the function: a direct call (the callee), a return,
//! a jump out of the function (a tail call). A jump table whose index is range-checked
//! (`cmp I, N; ja`) has `N + 1` cases; one whose index is not (LLVM leaves the check out when
//! the index is an enum's discriminant, whose range the type bounds) is read **open-ended**,
//! as Linux's objtool reads one (`add_jump_table`): entry after entry while each names an
//! address inside the same function, and up to the next address the function's code refers
//! to (another table's start, as objtool stops at the next table); an entry inside the
//! function but not at an instruction the sweep decoded, or a table longer than 4,096
//! entries, leaves the function unresolved. The reading assumes what LLVM emits: every entry
//! of a table, a hole's too (the default block, or the `ud2` of an unreachable one), names a
//! block of the function, and the function's code refers to no address inside its own table.
//! Under that, no real case is missed; an entry read past the table's end can only add a
//! case, which makes the answers more conservative, never wrong. An indirect jump
//! that is not a recognised jump table, a branch into the middle of an instruction or
//! undecodable bytes mark the function **unresolved**: nothing exact is claimed about it.
//!
//! **Invariant.** In a resolved function every successor index names an instruction of the
//! same function, and every way control can leave an instruction is one of its successors, its
//! callee's return, a return, a tail call or a trap.

use crate::induct::{self, Induct};
use alloc::{vec, vec::Vec};
use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpAccess, OpKind,
    Register,
};

/// Reads `len` bytes of read-only data at an address (jump tables), if it is readable.
pub type DataReader<'a> = &'a dyn Fn(u64, usize) -> Option<&'a [u8]>;

/// What an instruction does besides flowing to its successors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Ordinary instruction (or branch): only its successors follow.
    Plain,
    /// A preemption-point site (its index in the site list).
    Point(u32),
    /// A direct call; the successors are where its callee returns to.
    Call(u64),
    /// A call through a register or memory: its callee is unknown (taken to return, point-free).
    IndirectCall,
    /// A return from the function.
    Return,
    /// A jump (or branch) to another function: a tail call of it.
    TailCall(u64),
    /// A trap (`ud2`, `int3`, `hlt`): no path goes on.
    Trap,
}

/// What the checker's loop test needs to know of an instruction (registers are numbered
/// 0..16: `rax`..`r15`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Anything else.
    Other,
    /// Steps a register by a constant: `add`/`sub r, imm`, `inc`/`dec r`, `lea r, [r + imm]`.
    Step(u8),
    /// Compares a register with a constant (`None`) or another register.
    Cmp(u8, Option<u8>),
}

/// Caller-saved registers (`rax rcx rdx rsi rdi r8..r11`): what a call may write.
const CALL_CLOBBERS: u16 = 0b0000_1111_1100_0111;

/// One decoded instruction.
#[derive(Clone, Debug)]
pub struct Insn {
    /// Its address.
    pub addr: u64,
    /// Its length in bytes.
    pub len: u8,
    /// What it does at the edge of the function.
    pub step: Step,
    /// Indices (in the function) of the instructions that may run next.
    pub succs: Vec<u32>,
    /// Its shape for the loop test.
    pub shape: Shape,
    /// General registers it may write (bit `n`: register `n`).
    pub writes: u16,
    /// Its effect on a loop's count, for the bound ([`crate::induct`]).
    pub induct: Induct,
}

/// A decoded function.
#[derive(Clone, Debug)]
pub struct Cfg {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Its instructions, in address order.
    pub insns: Vec<Insn>,
    /// Why the function is unresolved (`None`: resolved).
    pub unresolved: Option<&'static str>,
}

impl Cfg {
    /// The index of the instruction starting at `addr`.
    pub fn index_of(&self, addr: u64) -> Option<usize> {
        self.insns.binary_search_by_key(&addr, |i| i.addr).ok()
    }

    /// The index of the instruction containing `addr`.
    pub fn index_containing(&self, addr: u64) -> Option<usize> {
        if addr < self.start || addr >= self.end {
            return None;
        }
        self.insns.partition_point(|i| i.addr <= addr).checked_sub(1)
    }
}

/// Where one decoded instruction goes, before targets become indices.
enum Flow {
    Next,
    Jump(u64),
    Branch(u64),
    Table(Vec<u64>),
    /// An open-ended table's start and entries as read: its cases are those up to the first
    /// entry off the function's instruction boundaries or at an address its code refers to.
    OpenTable(u64, Vec<u64>),
    End,
    Unresolved(&'static str),
}

/// Decodes the function `bytes` at `start`; `sites` are the sorted site addresses.
pub fn build(start: u64, bytes: &[u8], sites: &[u64], data: DataReader<'_>) -> Cfg {
    let end = start + bytes.len() as u64;
    let mut cfg = Cfg { start, end, insns: Vec::new(), unresolved: None };
    let mut flows = Vec::new();
    let mut decoder = Decoder::with_ip(64, bytes, start, DecoderOptions::NONE);
    let mut recent: Vec<Instruction> = Vec::new();
    let mut info = InstructionInfoFactory::new();
    // every address a RIP-relative operand names (the tables' starts among them)
    let mut refs: Vec<u64> = Vec::new();
    let mut site = sites.partition_point(|&s| s < start);
    while decoder.can_decode() {
        let ip = decoder.ip();
        if sites.get(site) == Some(&ip) && ip + 5 <= end {
            let (shape, writes) = (Shape::Other, CALL_CLOBBERS);
            cfg.insns.push(Insn {
                addr: ip,
                len: 5,
                step: Step::Point(site as u32),
                succs: Vec::new(),
                shape,
                writes,
                induct: Induct::None,
            });
            flows.push(Flow::Next);
            site += 1;
            decoder.set_position((ip + 5 - start) as usize).expect("inside the function");
            decoder.set_ip(ip + 5);
            recent.clear();
            continue;
        }
        let insn = decoder.decode();
        if insn.is_ip_rel_memory_operand() {
            refs.push(insn.ip_rel_memory_address());
        }
        while sites.get(site).is_some_and(|&s| s < insn.next_ip()) {
            site += 1; // a site inside a decoded instruction: not on the sweep
        }
        let (step, flow) = classify(&insn, start, end, &recent, data);
        let (shape, writes) = (shape(&insn), writes(&mut info, &insn));
        let induct = induct::of(&insn);
        cfg.insns.push(Insn { addr: ip, len: insn.len() as u8, step, succs: Vec::new(), shape, writes, induct });
        flows.push(flow);
        recent.push(insn);
    }
    refs.sort_unstable();
    link(&mut cfg, flows, &refs);
    cfg
}

/// A general register's number (0..16), if `r` is one.
fn gpr(r: Register) -> Option<u8> {
    let n = (r.full_register() as u32).wrapping_sub(Register::RAX as u32);
    (r != Register::None && n < 16).then_some(n as u8)
}

fn shape(i: &Instruction) -> Shape {
    let imm = |k: u32| {
        matches!(
            i.op_kind(k),
            OpKind::Immediate8
                | OpKind::Immediate8to32
                | OpKind::Immediate8to64
                | OpKind::Immediate32
                | OpKind::Immediate32to64
        )
    };
    let r0 = if i.op_count() >= 1 && i.op_kind(0) == OpKind::Register { gpr(i.op0_register()) } else { None };
    let Some(r) = r0 else { return Shape::Other };
    match i.mnemonic() {
        Mnemonic::Inc | Mnemonic::Dec if i.op_count() == 1 => Shape::Step(r),
        Mnemonic::Add | Mnemonic::Sub if imm(1) => Shape::Step(r),
        Mnemonic::Lea if gpr(i.memory_base()) == Some(r) && i.memory_index() == Register::None => Shape::Step(r),
        Mnemonic::Cmp if imm(1) => Shape::Cmp(r, None),
        Mnemonic::Cmp if i.op_kind(1) == OpKind::Register => {
            gpr(i.op1_register()).map_or(Shape::Other, |o| Shape::Cmp(r, Some(o)))
        }
        _ => Shape::Other,
    }
}

fn writes(info: &mut InstructionInfoFactory, i: &Instruction) -> u16 {
    let mut w =
        if matches!(i.flow_control(), FlowControl::Call | FlowControl::IndirectCall) { CALL_CLOBBERS } else { 0 };
    for u in info.info(i).used_registers() {
        let written =
            matches!(u.access(), OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite);
        if let Some(n) = gpr(u.register()).filter(|_| written) {
            w |= 1 << n;
        }
    }
    w
}

fn classify(insn: &Instruction, start: u64, end: u64, recent: &[Instruction], data: DataReader<'_>) -> (Step, Flow) {
    let inside = |t: u64| t >= start && t < end;
    if insn.code() == Code::INVALID {
        return (Step::Trap, Flow::Unresolved("undecodable bytes"));
    }
    match insn.flow_control() {
        FlowControl::Next => (Step::Plain, Flow::Next),
        FlowControl::UnconditionalBranch => {
            let t = insn.near_branch_target();
            if inside(t) {
                (Step::Plain, Flow::Jump(t))
            } else {
                (Step::TailCall(t), Flow::End)
            }
        }
        FlowControl::ConditionalBranch => {
            let t = insn.near_branch_target();
            if inside(t) {
                (Step::Plain, Flow::Branch(t))
            } else {
                (Step::TailCall(t), Flow::Next)
            }
        }
        FlowControl::IndirectBranch if got_slot(insn, data).is_some() => {
            (Step::TailCall(got_slot(insn, data).unwrap_or(0)), Flow::End)
        }
        FlowControl::IndirectBranch => match jump_table(insn, recent, data, inside) {
            Some(Table::Bounded(targets)) if targets.iter().all(|&t| inside(t)) => (Step::Plain, Flow::Table(targets)),
            Some(Table::Open(base, targets)) => (Step::Plain, Flow::OpenTable(base, targets)),
            _ => (Step::Trap, Flow::Unresolved("an indirect jump that is not a recognised jump table")),
        },
        FlowControl::Return => (Step::Return, Flow::End),
        FlowControl::Call => (Step::Call(insn.near_branch_target()), Flow::Next),
        FlowControl::IndirectCall => match got_slot(insn, data) {
            Some(t) => (Step::Call(t), Flow::Next),
            None => (Step::IndirectCall, Flow::Next),
        },
        FlowControl::Interrupt if insn.mnemonic() == Mnemonic::Int3 => (Step::Trap, Flow::End),
        FlowControl::Interrupt => (Step::Plain, Flow::Next),
        FlowControl::Exception => (Step::Trap, Flow::End),
        FlowControl::XbeginXabortXend => (Step::Trap, Flow::Unresolved("transactional memory")),
    }
}

/// The target of `call`/`jmp qword [rip + slot]` through a read-only slot (the GOT after
/// relocation), if the slot is readable.
fn got_slot(insn: &Instruction, data: DataReader<'_>) -> Option<u64> {
    if insn.op_count() != 1 || insn.op_kind(0) != OpKind::Memory || !insn.is_ip_rel_memory_operand() {
        return None;
    }
    let b = data(insn.ip_rel_memory_address(), 8)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// The most entries an open-ended jump table is read for.
const OPEN_TABLE_MAX: usize = 4096;

/// A recognised jump table's targets.
enum Table {
    /// The `N + 1` of a range-checked index.
    Bounded(Vec<u64>),
    /// An unchecked index's (with the table's start): the entries up to the first whose target
    /// is outside the function (or the first unreadable one), at least one.
    Open(u64, Vec<u64>),
}

/// Recognises LLVM's x86-64 position-independent jump table ending at `jmp R`:
/// `[cmp I, N; ja default; ...;] lea B, [rip + T]; movsxd R, dword [B + I*4]; add R, B; jmp R`,
/// and returns its targets (`T + entry`): `N + 1` of them after the range check, else read
/// open-ended while they are `inside` the function.
fn jump_table(
    jmp: &Instruction,
    recent: &[Instruction],
    data: DataReader<'_>,
    inside: impl Fn(u64) -> bool,
) -> Option<Table> {
    if jmp.op_count() != 1 || jmp.op_kind(0) != OpKind::Register {
        return None;
    }
    let r = jmp.op0_register().full_register();
    let mut it = recent.iter().rev().take(12);
    let add = it.find(|i| i.mnemonic() == Mnemonic::Add && i.op0_register().full_register() == r)?;
    if add.op_kind(1) != OpKind::Register {
        return None;
    }
    let base = add.op1_register().full_register();
    let load = it.find(|i| i.mnemonic() == Mnemonic::Movsxd && i.op0_register().full_register() == r)?;
    let (lb, li) = (load.memory_base().full_register(), load.memory_index().full_register());
    if load.memory_index_scale() != 4 || (lb != base && li != base) {
        return None;
    }
    let index = if lb == base { li } else { lb };
    let pos = recent.len() - 1 - recent.iter().rev().position(|i| core::ptr::eq(i, load))?;
    let before = &recent[..pos];
    let lea = before.iter().rev().take(12).find(|i| {
        i.mnemonic() == Mnemonic::Lea && i.op0_register().full_register() == base && i.is_ip_rel_memory_operand()
    })?;
    let table = lea.ip_rel_memory_address();
    let entry = |c: &[u8]| table.wrapping_add(i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64 as u64);
    if let Some(n) = bound(before, index) {
        return Some(Table::Bounded(data(table, 4 * n)?.chunks_exact(4).map(entry).collect()));
    }
    let targets: Vec<u64> = (0..=OPEN_TABLE_MAX as u64)
        .map_while(|k| data(table.wrapping_add(4 * k), 4).map(entry).filter(|&t| inside(t)))
        .collect();
    // none read, or more than any table this reading trusts: not recognised
    (!targets.is_empty() && targets.len() <= OPEN_TABLE_MAX).then_some(Table::Open(table, targets))
}

/// The number of table entries: `N + 1` from the `cmp I, N` that a `ja` after it guards,
/// following register copies (`mov I, J`) back from the index.
fn bound(before: &[Instruction], index: Register) -> Option<usize> {
    let mut regs = vec![index];
    let start = before.len().saturating_sub(12);
    for k in (start..before.len()).rev() {
        let i = &before[k];
        let dst = i.op0_register().full_register();
        if i.mnemonic() == Mnemonic::Mov && regs.contains(&dst) && i.op_kind(1) == OpKind::Register {
            regs.push(i.op1_register().full_register());
        }
        if i.mnemonic() == Mnemonic::Cmp
            && regs.contains(&dst)
            && before.get(k + 1).is_some_and(|j| j.mnemonic() == Mnemonic::Ja)
        {
            let n = match i.op_kind(1) {
                OpKind::Immediate8
                | OpKind::Immediate8to32
                | OpKind::Immediate8to64
                | OpKind::Immediate32
                | OpKind::Immediate32to64 => i.immediate(1),
                _ => return None,
            };
            return (n < 4096).then_some(n as usize + 1);
        }
    }
    None
}

/// Turns targets into successor indices; a target off the sweep makes the function unresolved.
/// `refs`: the sorted addresses the function's RIP-relative operands name.
fn link(cfg: &mut Cfg, flows: Vec<Flow>, refs: &[u64]) {
    let addrs: Vec<u64> = cfg.insns.iter().map(|i| i.addr).collect();
    let idx = |t: u64| addrs.binary_search(&t).ok().map(|i| i as u32);
    let mut bad = None;
    for (i, flow) in flows.into_iter().enumerate() {
        let next = || (i + 1 < addrs.len()).then_some(i as u32 + 1);
        let succs: Vec<Option<u32>> = match flow {
            // A call that ends the function calls something that does not return.
            Flow::Next if next().is_none() && matches!(cfg.insns[i].step, Step::Call(_) | Step::IndirectCall) => vec![],
            Flow::Next => vec![next()],
            Flow::Jump(t) => vec![idx(t)],
            Flow::Branch(t) => vec![next(), idx(t)],
            Flow::Table(ts) => ts.into_iter().map(idx).collect(),
            // an open table ends at its first entry off the instruction boundaries
            Flow::OpenTable(base, ts) => match open_cases(base, ts, refs, idx) {
                cases if cases.is_empty() => vec![None],
                cases => cases,
            },
            Flow::End => vec![],
            Flow::Unresolved(why) => {
                bad.get_or_insert(why);
                vec![]
            }
        };
        if succs.iter().any(Option::is_none) {
            bad.get_or_insert("a branch off the instruction boundaries, or past the end");
        }
        let mut s: Vec<u32> = succs.into_iter().flatten().collect();
        s.sort_unstable();
        s.dedup();
        cfg.insns[i].succs = s;
    }
    cfg.unresolved = bad;
}

/// An open-ended table's cases: its entries (each inside the function: the reading stopped at
/// the first that was not) up to the first that starts at an address in `refs` (another
/// table's start). An entry inside the function but off the sweep is a `None`: the function
/// is unresolved (a case the sweep decoded wrongly, or bytes that are no table's), never
/// silently cut.
fn open_cases(base: u64, targets: Vec<u64>, refs: &[u64], idx: impl Fn(u64) -> Option<u32>) -> Vec<Option<u32>> {
    let next_ref = refs.iter().copied().find(|&r| r > base).unwrap_or(u64::MAX);
    let room = usize::try_from(next_ref.saturating_sub(base) / 4).unwrap_or(usize::MAX);
    targets.into_iter().take(room).map(idx).collect()
}
