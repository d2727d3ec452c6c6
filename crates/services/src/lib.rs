//! # atomkernel services and workloads
//!
//! Kernel services written as atoms separated by preemption points, and the scenarios and
//! workloads the command line runs on them: the 1996 scenario ([`scenario`]), the register
//! torture ([`torture`]), the latency lab ([`lab`]): workloads, the probe, peers, the comparison;
//! the packet device with its bottom half ([`packet`]) and the bottom-half comparison under
//! packet load ([`packet_load`]).

#![forbid(unsafe_code)]

pub mod atoms;
pub mod lab;
pub mod packet;
pub mod packet_load;
pub mod scenario;
pub mod symbols;
pub mod torture;
