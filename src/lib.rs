//! gwsteer: a chained CNI plugin that makes pod traffic leave by the right
//! door on nodes with several networks.
//!
//! The map, from the bottom up (a layer uses only those below it; the test
//! `tests/it/architecture.rs` holds the code to this):
//!
//! - [`error`], [`fault`], [`logging`]: errors with a CNI code; the crash
//!   tests' fault hook; one log line per record.
//! - [`model`]: what gwsteer owns, as plain values — rules, routes, links,
//!   firewall objects, records, node groups ([`model::GroupKey`]).
//! - [`cni`]: the protocol — versions, environment, results, the JSON
//!   reader that names field paths.
//! - [`config`]: JSON → validated [`config::Config`]; one file per feature.
//! - [`plan`]: pure, (Config, Pod, [`plan::Facts`]) → [`plan::Plan`]; one
//!   file per feature (steering, gateway, vrf).
//! - [`kernel`]: everything that talks to the kernel — the [`kernel::Kernel`]
//!   trait and `System`, netlink (`rtnl/`, one socket `nl.rs`), nftables
//!   (`nft/`), namespaces, sysctls. [`facts`]: read-only probes for the plan.
//! - [`store`]: records, groups and holds under one lock per network.
//! - [`engine`]: making groups and attachments real and taking them away,
//!   what ADD captures for DEL, the audit CHECK and reconcile share.
//! - [`verbs`] (ADD, DEL, CHECK, GC, STATUS) and [`ops`] (show, cleanup,
//!   reconcile, explain, install, the node agent); [`entry`] (CNI) and
//!   [`cli`] (argv) on top.

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
