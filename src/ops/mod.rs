//! The operator's commands (CONTRACT 6) beyond the CNI verbs: reconcile,
//! show, cleanup, and explain. The CLI parses argv into them.

pub mod cleanup;
pub mod explain;
pub mod reconcile;
pub mod show;
