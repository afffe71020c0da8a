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
pub mod error;
pub mod explain;
pub mod fault;
pub mod firewall;
pub mod gateway;
pub mod kernel;
pub mod links;
pub mod logging;
pub mod netlink;
pub mod netns;
pub mod nl;
pub mod objects;
pub mod plan;
pub mod podns;
pub mod reconcile;
pub mod store;
pub mod sysctl;
pub mod system;
pub mod verbs;
pub mod vrf;
pub mod vrf_nat;
