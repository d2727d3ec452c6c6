//! register torture (being written)
