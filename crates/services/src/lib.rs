//! # atomkernel services and workloads
//!
//! Kernel services written as atoms separated by preemption points, and the scenarios and
//! workloads the command line runs on them: the 1996 scenario ([`scenario`]), the register
//! torture ([`torture`]), the latency lab ([`lab`]): workloads, the probe, peers, the comparison;
//! the packet device with its bottom half ([`packet`]) and the bottom-half comparison under
//! packet load ([`packet_load`]); the tracers' reports pointed at source lines
//! ([`trace_report`]), the Chrome trace / text export of the event ring ([`chrome_trace`]) and
//! the workloads of `atomkernel trace` ([`trace_run`]); the fuzzer of kernel programs ([`fuzz`]) and the soak ([`soak`]).

#![forbid(unsafe_code)]

pub mod atoms;
pub mod chrome_trace;
pub mod fuzz;
pub mod lab;
pub mod packet;
pub mod packet_load;
pub mod patch_torture;
pub mod points_check;
pub mod scenario;
pub mod soak;
pub mod symbols;
pub mod torture;
pub mod trace_report;
pub mod trace_run;
