//! The operator's commands (CONTRACT 6) beyond the CNI verbs: reconcile,
//! and later show, cleanup and explain. `crate::cli` parses argv into them.

pub mod reconcile;
