//! Model measurement harness (being written).
