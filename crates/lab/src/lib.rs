//! # The atomkernel lab: the tooling around the kernel's services
//!
//! Everything that measures, checks or exports what atomkernel's kernel and its services do;
//! nothing here is kernel code. The services it runs (atoms, the loader, the packet device, the
//! workloads, the scenario) are the `atomkernel-services` crate; the command line that drives
//! it is `atomkernel` (`crates/cli`). Dependencies point down only: cli → lab → services →
//! kernel.
//!
//! **The latency lab.** cyclictest-style RT latency and normal-path throughput, for every
//! preemption model and for the peers a user would pick instead, side by side. The [`probe`] is
//! cyclictest's loop as RT tasks of a fresh kernel instance running one of
//! `services::workloads` (what a run asks and measures: [`measure`]; the cross-CPU probe:
//! [`cross`]; the watch that turns a hung instance into an error: `watch`); [`peers`] run the
//! same atoms on host threads ([`host_peer`]), on a tokio runtime and in a Go program
//! ([`go_peer`], when built; what it leaves on disk is undone on a signal by [`cleanup`]);
//! [`compare`] runs every subject (each model under each chosen bottom-half option, each peer)
//! × workload, interleaved over rounds, into [`row`]s; [`stats`] keeps the samples in HDR
//! histograms. [`packet_load`] measures the bottom-half options under a packet storm.
//!
//! **Checks.** The register torture ([`torture`]) and the cross-modifying-code torture
//! ([`patch_torture`]); the fuzzer of kernel programs ([`fuzz`]) and the soak ([`soak`]); the
//! static latency checker's report ([`points_check`]).
//!
//! **Trace export.** Addresses to functions and source lines ([`symbols`]), the tracers'
//! reports ([`trace_report`]), the Chrome trace / text export of the event ring
//! ([`chrome_trace`]) and the workloads of `atomkernel trace` ([`trace_run`]).
//!
//! **Invariant.** Every figure is observed, never assumed: units counted by the code that did
//! them, lateness recorded by the probe when it runs; a run with a kernel `BUG:` is an error.
//! Modules import one another in one direction only (`tests/layering.rs` fails on a cycle).

#![forbid(unsafe_code)]

pub mod bounds;
pub mod chrome_trace;
pub mod cleanup;
pub mod compare;
pub mod cross;
pub mod fuzz;
pub mod go_peer;
pub mod host_peer;
pub mod measure;
pub mod packet_load;
pub mod patch_torture;
pub mod peers;
pub mod points_check;
pub mod probe;
pub mod row;
pub mod soak;
pub mod stats;
pub mod symbols;
pub mod torture;
pub mod trace_report;
pub mod trace_run;
pub mod verdict;
pub(crate) mod watch;
