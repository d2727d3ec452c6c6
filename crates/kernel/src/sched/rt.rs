//! RT class (being written)
