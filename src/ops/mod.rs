//! The operator's commands (CONTRACT 6) beyond the CNI verbs: reconcile,
//! show, cleanup, explain, install, and the node agent. The CLI parses argv
//! into them.

pub mod agent;
pub mod cleanup;
pub mod explain;
pub mod install;
pub mod reconcile;
pub mod show;
