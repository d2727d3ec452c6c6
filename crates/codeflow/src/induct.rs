//! What the bound's counted-loop test needs to know of an instruction: constant sets, constant
//! steps and compares with a constant of a general register, and conditional branches.
//!
//! **Mechanism.** [`of`] reads one decoded instruction and keeps only the 32- and 64-bit forms
//! whose effect on the register is a known function of its old value: `mov r, imm` and
//! `xor r, r` set it to a constant (the full 64-bit value, a 32-bit write zero-extended);
//! `inc`/`dec`, `add`/`sub r, imm` and `lea r, [r + disp]` add a constant (modulo the width
//! written); `mov r64, s64` copies another register and `lea r64, [s64 + disp]` adds a
//! constant to one (a step when the loop copies the register back into `s`); `cmp r, imm` and `test r, r` (the flags of `cmp r, 0`) compare it with a constant;
//! `jcc` branches on one of the ten compare conditions; a `nop` is marked (padding). Everything else is [`Induct::None`].
//!
//! **Invariant.** A value here is exactly what the instruction does to the register or the
//! flags, under the width it operates on; an 8- or 16-bit form (which keeps the upper bits) is
//! never described.

use iced_x86::{ConditionCode, Instruction, Mnemonic, OpKind, Register};

/// A branch condition on the flags of `cmp a, b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    /// `a == b` (`je`).
    E,
    /// `a != b` (`jne`).
    Ne,
    /// Unsigned `a < b` (`jb`).
    B,
    /// Unsigned `a >= b` (`jae`).
    Ae,
    /// Unsigned `a <= b` (`jbe`).
    Be,
    /// Unsigned `a > b` (`ja`).
    A,
    /// Signed `a < b` (`jl`).
    L,
    /// Signed `a >= b` (`jge`).
    Ge,
    /// Signed `a <= b` (`jle`).
    Le,
    /// Signed `a > b` (`jg`).
    G,
    /// Any other condition (sign, overflow, parity).
    Other,
}

impl Cond {
    /// The condition that holds exactly when `self` does not.
    pub fn negate(self) -> Cond {
        use Cond::*;
        match self {
            E => Ne,
            Ne => E,
            B => Ae,
            Ae => B,
            Be => A,
            A => Be,
            L => Ge,
            Ge => L,
            Le => G,
            G => Le,
            Other => Other,
        }
    }
}

/// An instruction's effect on one general register (numbered 0..16: `rax`..`r15`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Induct {
    /// Nothing described.
    None,
    /// A `nop` (alignment padding when nothing jumps to it).
    Nop,
    /// Sets the register to a constant (its 64-bit value).
    Set {
        /// The register.
        reg: u8,
        /// Its value after the instruction.
        value: u64,
    },
    /// Adds a constant, modulo `2^width`.
    Step {
        /// The register.
        reg: u8,
        /// What it adds (negative: subtracts).
        delta: i64,
        /// Bits written: 32 or 64.
        width: u8,
        /// The flags are those of `cmp result, 0` for `je`/`jne` (`inc`, `dec`, `add`, `sub`).
        flags: bool,
    },
    /// Copies another register (`mov r64, s64`).
    Copy {
        /// The register written.
        reg: u8,
        /// The register read.
        from: u8,
    },
    /// Sets the register to another one plus a constant (`lea r64, [s64 + disp]`): with a
    /// [`Induct::Copy`] of it back into `from` on the way around a loop, a step of `delta`
    /// (LLVM's strength-reduced offsets keep a count so: `mov rdi, r14 ... lea r14, [rdi + 8]`).
    CopyStep {
        /// The register written.
        reg: u8,
        /// The register read.
        from: u8,
        /// What it adds.
        delta: i64,
    },
    /// Compares the register with a constant (`cmp r, imm`; `test r, r` as `cmp r, 0`).
    Cmp {
        /// The register.
        reg: u8,
        /// The constant, in the compared width.
        imm: u64,
        /// Bits compared: 32 or 64.
        width: u8,
    },
    /// A string instruction with a `rep`, `repe` or `repne` prefix (`rep movsb`, `rep stosq`,
    /// `repe cmpsb`): one instruction that runs up to `rcx` times, each time counted (a CPU's
    /// and QEMU's `-icount`'s instructions retired), so its weight is not 1.
    RepString,
    /// A conditional branch inside the function.
    Jcc {
        /// Taken when this holds.
        cond: Cond,
        /// Where it goes when taken.
        target: u64,
    },
}

/// A general register's number (0..16) and width in bits, if it is a 32- or 64-bit one.
fn reg32_64(r: Register) -> Option<(u8, u8)> {
    let n = (r.full_register() as u32).wrapping_sub(Register::RAX as u32);
    let width = (r.size() * 8) as u8;
    (r != Register::None && n < 16 && (width == 32 || width == 64)).then_some((n as u8, width))
}

/// The immediate operand 1, sign-extended as the instruction does, in `width` bits.
fn imm(i: &Instruction, width: u8) -> Option<u64> {
    let v = match i.op_kind(1) {
        OpKind::Immediate8to32 | OpKind::Immediate8to64 => i.immediate8() as i8 as i64 as u64,
        OpKind::Immediate32to64 => i.immediate32() as i32 as i64 as u64,
        OpKind::Immediate32 => i.immediate32() as u64,
        OpKind::Immediate64 => i.immediate64(),
        _ => return None,
    };
    Some(if width == 32 { v & 0xffff_ffff } else { v })
}

/// Sign-extends the low `width` bits of `v`.
fn sext(v: u64, width: u8) -> i64 {
    if width == 32 {
        v as u32 as i32 as i64
    } else {
        v as i64
    }
}

fn cond(c: ConditionCode) -> Cond {
    match c {
        ConditionCode::e => Cond::E,
        ConditionCode::ne => Cond::Ne,
        ConditionCode::b => Cond::B,
        ConditionCode::ae => Cond::Ae,
        ConditionCode::be => Cond::Be,
        ConditionCode::a => Cond::A,
        ConditionCode::l => Cond::L,
        ConditionCode::ge => Cond::Ge,
        ConditionCode::le => Cond::Le,
        ConditionCode::g => Cond::G,
        _ => Cond::Other,
    }
}

/// The instruction's description (see the module docs).
pub fn of(i: &Instruction) -> Induct {
    if i.mnemonic() != Mnemonic::Jmp && i.is_jcc_short_or_near() {
        return Induct::Jcc { cond: cond(i.condition_code()), target: i.near_branch_target() };
    }
    if i.mnemonic() == Mnemonic::Nop {
        return Induct::Nop;
    }
    if i.is_string_instruction() && (i.has_rep_prefix() || i.has_repe_prefix() || i.has_repne_prefix()) {
        return Induct::RepString;
    }
    if i.op_count() == 0 || i.op_kind(0) != OpKind::Register {
        return Induct::None;
    }
    let Some((reg, width)) = reg32_64(i.op0_register()) else { return Induct::None };
    let same = |k: u32| i.op_kind(k) == OpKind::Register && i.op_register(k) == i.op0_register();
    let step = |delta: i64, flags: bool| Induct::Step { reg, delta, width, flags };
    // the other operand, a whole 64-bit register other than this one (for the copies)
    let other64 = |r: Register| reg32_64(r).filter(|&(n, w)| w == 64 && n != reg && width == 64).map(|(n, _)| n);
    match i.mnemonic() {
        Mnemonic::Mov if i.op_kind(1) == OpKind::Register => {
            other64(i.op1_register()).map_or(Induct::None, |from| Induct::Copy { reg, from })
        }
        Mnemonic::Mov => imm(i, 64).map_or(Induct::None, |v| {
            // `mov r32, imm32` zero-extends; `mov r64, simm32` sign-extends; `movabs` is whole.
            Induct::Set { reg, value: if width == 32 { v & 0xffff_ffff } else { v } }
        }),
        Mnemonic::Xor if i.op_count() == 2 && same(1) => Induct::Set { reg, value: 0 },
        Mnemonic::Inc if i.op_count() == 1 => step(1, true),
        Mnemonic::Dec if i.op_count() == 1 => step(-1, true),
        Mnemonic::Add => imm(i, width).map_or(Induct::None, |v| step(sext(v, width), true)),
        Mnemonic::Sub => imm(i, width).map_or(Induct::None, |v| step(sext(v, width).wrapping_neg(), true)),
        Mnemonic::Lea
            if i.memory_base().full_register() == i.op0_register().full_register()
                && i.memory_index() == Register::None =>
        {
            step(i.memory_displacement64() as i64, false)
        }
        Mnemonic::Lea if i.memory_index() == Register::None => other64(i.memory_base())
            .map_or(Induct::None, |from| Induct::CopyStep { reg, from, delta: i.memory_displacement64() as i64 }),
        Mnemonic::Cmp => imm(i, width).map_or(Induct::None, |imm| Induct::Cmp { reg, imm, width }),
        Mnemonic::Test if same(1) => Induct::Cmp { reg, imm: 0, width },
        _ => Induct::None,
    }
}
