//! Fair class (being written)
