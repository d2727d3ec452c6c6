//! # atomkernel services and workloads
//!
//! Kernel services written as atoms separated by preemption points, and the scenarios and
//! workloads the command line runs on them: the 1996 scenario ([`scenario`]) and the register
//! torture ([`torture`]); the tracers' reports pointed at source lines ([`trace_report`]), the
//! Chrome trace / text export of the event ring ([`chrome_trace`]) and the workloads of
//! `atomkernel trace` ([`trace_run`]).

pub mod atoms;
pub mod chrome_trace;
pub mod lab;
pub mod scenario;
pub mod symbols;
pub mod torture;
pub mod trace_report;
pub mod trace_run;
