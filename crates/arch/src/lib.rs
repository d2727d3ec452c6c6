//! arch
pub mod torture;
