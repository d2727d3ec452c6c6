//! The one way an assembly function is written in this crate.
//!
//! [`asm_function!`] wraps a function body in everything an ELF function needs to be seen by
//! the linker, the debugger, profilers and unwinders: its own section push, `.globl`, `.type
//! @function`, 16-byte alignment, the label, `.cfi_startproc` … `.cfi_endproc` around the body
//! and a `.size`. The body only has to describe what it does to the stack: every instruction
//! that moves `rsp` or saves a register is followed by its CFI directive
//! (`.cfi_adjust_cfa_offset`, `.cfi_rel_offset`, `.cfi_def_cfa_register`, ...), so that the
//! `.eh_frame` rows the assembler builds are true at every instruction. An asm function whose
//! CFI lies is worse than one without: an unwinder follows it into garbage.
//!
//! Every function starts with the CIE's rules for a function just called: CFA = `rsp + 8`,
//! return address at CFA - 8. A function reached some other way (the preemption trampoline, a
//! task's first frame) says so first thing in its body.

/// Emits a global assembly function `$name` whose body is the string literals in `[...]`,
/// followed by `global_asm!` operands (`sym`, `const`) if any. See the module docs.
macro_rules! asm_function {
    ($name:literal, [$($body:literal),* $(,)?] $(, $($operands:tt)*)?) => {
        ::std::arch::global_asm!(
            ".pushsection .text.atomkernel_entry,\"ax\",@progbits",
            concat!(".globl ", $name),
            concat!(".type ", $name, ",@function"),
            ".p2align 4",
            concat!($name, ":"),
            ".cfi_startproc",
            $($body,)*
            ".cfi_endproc",
            concat!(".size ", $name, ", . - ", $name),
            ".popsection",
            $($($operands)*)?
        );
    };
}

pub(crate) use asm_function;
