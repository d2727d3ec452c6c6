//! # atomkernel services and workloads
//!
//! Kernel services written as atoms separated by preemption points, and the workloads built
//! of them: the atoms themselves ([`atoms`]: a page's checksum, an atom of a set length), the
//! a.out module loader ([`loader`]), the packet device with its `NET_RX` bottom half
//! ([`packet`]), the registry of workloads the lab and the soak run ([`workloads`]) and the
//! 1996 scenario ([`scenario`]).
//!
//! **Invariant.** An atom is bounded work that never sleeps and holds nothing across its end,
//! so every point between two atoms (`kernel::preempt_point!()`) is a safe place to give the
//! CPU away. Nothing here measures, parses a command line or knows a flag: the tooling around
//! these services (the latency lab, the fuzzer, the torture, the trace export) is the
//! `atomkernel-lab` crate, which depends on this one.

#![forbid(unsafe_code)]

pub mod atoms;
pub mod loader;
pub mod packet;
pub mod scenario;
pub mod workloads;
