//! # atomkernel's arch layer: hosted x86-64 Linux
//!
//! This crate and `crates/hostlab` (the lab's host support) are the only places in atomkernel
//! with `unsafe`, assembly and host system calls. This one
//! turns a Linux thread into a CPU: host signals become interrupts, an `mmap`'d stack with a guard
//! page becomes a kernel stack, a few lines of assembly switch between them, and a signal
//! handler that rewrites the saved context becomes "return from interrupt with preemption".
//! Everything above it (the kernel core) is safe Rust and talks to it through the narrow
//! boundary below (the `Arch` trait), which is what a second arch (bare metal under QEMU/KVM)
//! implements.
//!
//! | module | real hardware | here |
//! | --- | --- | --- |
//! | [`percpu`] | per-CPU variables, `__preempt_count` | `#[thread_local]` words of the CPU thread |
//! | [`irq`] | `cli`/`sti`, the APIC's IRR, IPIs | a soft mask with pending-IRQ replay, an atomic IRR, `tgkill` |
//! | [`entry`] | IDT entry, `iret`, preemption on IRQ exit | `sigaction` handlers, context injection, the preemption trampoline |
//! | [`fault`] | exception entry (`#PF`, `#UD`, `#DE`, `#BP`) | fault signal handlers that send the task to an exit at its stack top |
//! | [`kallsyms`] | `kallsyms`, `%pS` | the program's symbol table and DWARF lines, via `addr2line` |
//! | [`switch`] | `__switch_to_asm` | callee-saved registers + stack pointer swap |
//! | [`stack`] | kernel stacks with guard pages | `mmap` + `PROT_NONE` guard |
//! | [`timer`] | the local APIC timer | `timer_create(SIGEV_THREAD_ID)` |
//! | [`clock`] | TSC / clocksource | `CLOCK_MONOTONIC` |
//! | [`text`] | the kernel's `_stext`..`_etext` | the program's own executable segments |
//! | [`alloc`] | the slab allocator's `preempt_disable` | a global allocator that disables preemption |
//! | [`sync`] | `spin_lock_irqsave` | [`sync::IrqSpinLock`] |
//! | [`cpu`] | CPU bring-up, `hlt` | thread registration, pinning, `sigsuspend` |
//! | [`ppoint`] | `__jump_table` entries | preemption-point sites ([`preempt_point!`]): 5-byte do-nothing instructions listed at link time, one byte from `call rt_reschedule` |
//! | [`patch`] | `text_poke_bp` | W^X one-byte patching through a memfd alias, counted per site |
//! | [`redirect`] | (kretprobe-style return hijack) | a return address pointed at the preemption trampoline |
//! | `site_trap` | `do_int3` → `poke_int3_handler` | a fired `int3` site's SIGTRAP served as the site's `call` |
//! | [`unwind`] | the ORC unwinder | signal-safe frame steps over every loaded object's `.eh_frame` |
//!
//! ## The boundary (what the core gives and gets)
//!
//! The kernel core reaches this crate only through [`Hosted`], its implementation of
//! `arch_api::Arch` (`hosted.rs`: each trait item is one call into the module above that does
//! it), and the [`preempt_point!`] macro. The trait's definition in `crates/arch-api` is the
//! whole surface, and so what a second arch (bare metal under QEMU/KVM) provides; the compiler
//! lists what an incomplete one lacks. Everything else `pub` here serves this crate's own
//! integration tests and the `testing` feature; the lab's host support and the torture's asm
//! are another crate (`crates/hostlab`).
//!
//! The core gives one `Hooks` table per CPU, registered when it brings the CPU up
//! (`Arch::cpu_register`). This crate calls `Hooks::irq` for every interrupt taken while the
//! soft mask is clear (from the signal handler, or when a masked section ends and pending
//! interrupts are replayed), always with the mask set, exactly as hardware enters an interrupt
//! gate with `IF` clear. If the core answers [`IrqExit::Preempt`], the interrupted code calls
//! `Hooks::preempt_schedule_irq` through the trampoline, which saves every register, the flags
//! and the whole vector state first. `Hooks::rt_reschedule` is the call an armed preemption
//! point makes, `Hooks::point_trap` the same for a point armed as a breakpoint (a `Preempt`
//! answer there makes the site "call" `preempt_schedule_irq`, with no trampoline: the site has
//! declared every caller-saved register clobbered), `Hooks::rt_return` a redirected return,
//! `Hooks::preempt_schedule` the allocator's `preempt_enable`, `Hooks::fault` a fault (an oops)
//! and `Hooks::oops_exit` the faulting task's end.
//!
//! ## Invariants
//!
//! - No core code runs from a signal handler while the interrupted code has the soft mask set:
//!   such interrupts are only recorded in [`percpu`] and replayed when the mask is cleared.
//! - Nothing on the interrupt path allocates (the allocator aborts with a `BUG:` if it does).
//! - `errno` is preserved across every handler.

mod asm;
mod device;
mod host;
mod hosted;
mod instance;

pub mod alloc;
pub mod clock;
pub mod cpu;
pub mod entry;
pub mod fault;
pub mod irq;
pub mod kallsyms;
pub mod patch;
pub mod percpu;
pub mod ppoint;
pub mod redirect;
mod site_trap;
pub mod stack;
pub mod switch;
pub mod sync;
pub mod text;
pub mod timer;
pub mod unwind;

#[cfg(feature = "testing")]
pub mod testing;

pub use arch_api::{Arch, Hooks, IrqExit, IrqFrame};
pub use hosted::Hosted;
