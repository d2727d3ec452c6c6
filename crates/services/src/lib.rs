//! # atomkernel services and workloads
//!
//! Kernel services written as atoms separated by preemption points, and the scenarios and
//! workloads the command line runs on them: the 1996 scenario ([`scenario`]), the register
//! torture ([`torture`]), and the latency lab ([`lab`]): workloads, the probe, peers, the comparison.

#![forbid(unsafe_code)]

pub mod atoms;
pub mod lab;
pub mod scenario;
pub mod symbols;
pub mod torture;
