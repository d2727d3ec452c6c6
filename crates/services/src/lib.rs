//! # atomkernel services and workloads
//!
//! Kernel services written as atoms separated by preemption points, and the workloads built
//! of them: the atoms themselves ([`atoms`]: a page's checksum, an atom of a set length), the
//! a.out module loader ([`loader`]), the packet device with its `NET_RX` bottom half
//! ([`packet`]), the registry of workloads the lab and the soak run ([`workloads`]) and the
//! 1996 scenario (`scenario`).
//!
//! **Invariant.** An atom is bounded work that never sleeps and holds nothing across its end,
//! so every point between two atoms (`kernel::preempt_point!()`) is a safe place to give the
//! CPU away. Nothing here measures, parses a command line or knows a flag: the tooling around
//! these services (the latency lab, the fuzzer, the torture, the trace export) is the
//! `atomkernel-lab` crate, which depends on this one.
//!
//! **Builds.** Feature `hosted` (the default) is the build on the hosted arch, with `std`.
//! Feature `metal` is the bare-metal image's: `#![no_std]` with `alloc`, the same atoms, loader
//! and workloads (their code is the same: `core::`/`alloc::` throughout), without what needs a
//! host: the packet device (`packet`: its wire is a host thread) and the seed scenario
//! (`scenario`, a host-side report with serde); the registry refuses `packet` there with the
//! reason ([`workloads::Workload::named`]).

#![forbid(unsafe_code)]
#![cfg_attr(not(feature = "hosted"), no_std)]

extern crate alloc;

pub mod atoms;
pub mod loader;
#[cfg(feature = "hosted")]
pub mod packet;
#[cfg(feature = "hosted")]
pub mod scenario;
pub mod workloads;
