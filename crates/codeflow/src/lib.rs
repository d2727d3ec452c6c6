//! Machine-code flow analysis of atomkernel's text: for every instruction of the functions that
//! have preemption points (or call one that does), the points first reached on each path
//! forward, and the longest stretch that runs without meeting one.
//!
//! **Mechanism.** [`analyze`] decodes each function with `iced-x86` into a control-flow graph
//! (`cfg`: fall-through, jumps, branches, calls, returns, tail calls, recognised jump tables;
//! anything else marks the function unresolved), then runs a backward data-flow to a
//! whole-program fixpoint ([`flow`]): a point is its own next point, a call of a function with
//! points reaches that function's entry set (and what follows the call if the callee may
//! return before a point). [`ExactTable::build`] packs the answers into ranges of instructions
//! that share a set, for a constant-time, allocation-free [`ExactTable::lookup`] from an
//! interrupt handler; [`Analysis::check`] is the static latency checker ([`check`]).
//!
//! **Invariant.** Pure functions over byte slices, addresses and the sorted site addresses: no
//! I/O, no `unsafe`, no global state, no `std` (the kernel core runs it on any arch). A point site is the five bytes at a listed site address,
//! whatever they hold (idle `cmp eax, imm32`, armed `call` or `int3`).

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
#[macro_use]
extern crate std;

pub mod bound;
mod bound_loops;
pub mod cfg;
pub mod check;
mod check_graph;
pub mod flow;
pub mod induct;
pub mod table;
mod trip;

pub use bound::{Bound, Bounds, Reason, Unknown};
pub use cfg::DataReader;
pub use check::{FunctionCheck, Stretch, UnboundedLoop, Unseen};
pub use flow::{analyze, Analysis, Function, NextPoints};
pub use table::{ExactTable, Lookup};

#[cfg(test)]
mod bound_prop;
#[cfg(test)]
mod tests;
