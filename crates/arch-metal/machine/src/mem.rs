//! The C symbols the precompiled `core` and `alloc` call and no libc provides here:
//! `memcpy`, `memmove`, `memset`, `memcmp`, `bcmp`, `strlen`; and the two unwinding symbols
//! the precompiled `alloc` (built with `panic=unwind`) references, `_Unwind_Resume` and
//! `rust_eh_personality`, which the image never reaches (it panics with `panic=abort`).
//!
//! **Mechanism.** Each is a few instructions of asm (`rep movsb` / `rep stosb`, a byte loop):
//! written in asm, not Rust, because LLVM turns a Rust copy loop back into a call to
//! `memcpy`. The host target's `compiler_builtins` does not export them (libc does, there).
//! `_Unwind_Resume` and `rust_eh_personality` report and exit through `metal_unwind_reached`.
//!
//! **Invariant.** Each function follows its C contract (SysV ABI: arguments in rdi, rsi,
//! rdx; result in rax; DF clear on entry and exit) and uses no stack but its return address;
//! each has CFI (a leaf's: the return address at the stack pointer), so the patch handler's
//! frame walk steps out of an interrupted `memcpy` into the caller that holds the next point.

core::arch::global_asm!(
    ".section .text.metal_mem, \"ax\"",
    // void *memcpy(void *dst, const void *src, size_t n): no overlap
    ".global memcpy",
    "memcpy:",
    ".cfi_startproc", // CFI: a leaf, CFA = rsp + 8 throughout (the patch handler walks out)
    "mov rax, rdi",   // the result: dst
    "mov rcx, rdx",   // the count
    "rep movsb",      // copy rcx bytes from [rsi] to [rdi], upwards
    "ret",            // return (rax: the result)
    ".cfi_endproc",
    // void *memmove(void *dst, const void *src, size_t n): overlap allowed
    ".global memmove",
    "memmove:",
    ".cfi_startproc",           // CFI: a leaf, CFA = rsp + 8 throughout (the patch handler walks out)
    "mov rax, rdi",             // the result: dst
    "mov rcx, rdx",             // the count
    "cmp rdi, rsi",             // dst above src?
    "jbe 2f",                   // no: copying upwards never reads a byte already written
    "lea rdi, [rdi + rcx - 1]", // yes: copy downwards, from the last byte
    "lea rsi, [rsi + rcx - 1]", // the source's last byte
    "std",                      // string instructions count downwards
    "rep movsb",                // copy rcx bytes
    "cld",                      // DF clear again (the ABI)
    "ret",                      // return (rax: the result)
    "2:",
    "rep movsb", // copy rcx bytes upwards
    "ret",       // return (rax: the result)
    ".cfi_endproc",
    // void *memset(void *dst, int c, size_t n)
    ".global memset",
    "memset:",
    ".cfi_startproc", // CFI: a leaf, CFA = rsp + 8 throughout (the patch handler walks out)
    "mov r8, rdi",    // keep dst for the result
    "mov eax, esi",   // al = the byte
    "mov rcx, rdx",   // the count
    "rep stosb",      // store al rcx times at [rdi], upwards
    "mov rax, r8",    // the result: dst
    "ret",            // return (rax: the result)
    ".cfi_endproc",
    // int memcmp(const void *a, const void *b, size_t n); bcmp: the same (any non-zero)
    ".global memcmp",
    ".global bcmp",
    "memcmp:",
    "bcmp:",
    ".cfi_startproc", // CFI: a leaf, CFA = rsp + 8 throughout (the patch handler walks out)
    "xor eax, eax",   // equal so far
    "test rdx, rdx",  // nothing to compare?
    "jz 4f",          // then equal
    "3:",
    "movzx eax, byte ptr [rdi]", // a byte of a
    "movzx ecx, byte ptr [rsi]", // the byte of b
    "sub eax, ecx",              // their difference (as unsigned bytes)
    "jnz 4f",                    // different: the sign says which is greater
    "inc rdi",                   // the next byte of a
    "inc rsi",                   // the next byte of b
    "dec rdx",                   // one fewer to go
    "jnz 3b",                    // until n bytes are equal (eax is 0 then)
    "4:",
    "ret", // return (rax: the result)
    ".cfi_endproc",
    // size_t strlen(const char *s)
    ".global strlen",
    "strlen:",
    ".cfi_startproc", // CFI: a leaf, CFA = rsp + 8 throughout (the patch handler walks out)
    "mov rax, rdi",   // rax walks the string
    "5:",
    "cmp byte ptr [rax], 0", // the NUL?
    "je 6f",                 // found
    "inc rax",               // the next byte
    "jmp 5b",                // and look again
    "6:",
    "sub rax, rdi", // the length: the NUL's offset
    "ret",          // return (rax: the result)
    ".cfi_endproc",
    // never reached: the image does not unwind (see the module's description)
    ".global _Unwind_Resume",
    "_Unwind_Resume:",
    "and rsp, -16",              // align the stack for the call
    "xor edi, edi",              // which: _Unwind_Resume
    "call metal_unwind_reached", // report and exit
    "ud2",                       // (it does not return)
    ".global rust_eh_personality",
    "rust_eh_personality:",
    "and rsp, -16",              // align the stack for the call
    "mov edi, 1",                // which: rust_eh_personality
    "call metal_unwind_reached", // report and exit
    "ud2",                       // (it does not return)
);

/// Reports that unwinding machinery was reached (never expected: the image is `panic=abort`)
/// and exits with `PANIC`.
#[no_mangle]
extern "C" fn metal_unwind_reached(which: u32) -> ! {
    let name = if which == 0 { "_Unwind_Resume" } else { "rust_eh_personality" };
    crate::kprintln!("PANIC: {name} reached: the image cannot unwind");
    crate::serial::exit(crate::exit_codes::PANIC)
}
