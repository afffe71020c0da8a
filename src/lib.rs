//! gwsteer: a chained CNI plugin that makes pod traffic leave by the right
//! door on nodes with several networks.
//!
//! Data flows one way through the crate:
//! `config` (raw JSON → validated [`config::Config`]) → `plan` (pure: what
//! kernel objects an attachment needs) → `objects` (the vocabulary, made real
//! by a [`objects::Kernel`] backend such as [`netlink::NetlinkKernel`]) →
//! `store` (what each attachment owns) ← `verbs` (ADD, DEL, CHECK, GC,
//! STATUS) and `cli` (show, reconcile, cleanup).

pub mod cli;
pub mod cni;
pub mod config;
pub mod engine;
pub mod entry;
pub mod error;
pub mod facts;
pub mod fault;
pub mod kernel;
pub mod logging;
pub mod model;
pub mod ops;
pub mod plan;
pub mod store;
pub mod verbs;
