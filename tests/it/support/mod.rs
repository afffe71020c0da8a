//! Shared helpers for gwsteer's integration tests (`use crate::support::*;` in
//! each area module of `tests/it`; `tests/vrf_guest.rs` includes this module
//! with `#[path]`).
//!
//! Everything here works inside network namespaces that a [`Lab`] creates and
//! deletes; nothing touches the root namespace's network configuration.
//!
//! - [`lab`]: per-test namespaces, veths, addresses, routes, sysctls, temp dir.
//! - [`cmd`]: running `ip`, `ip netns exec …` and other programs with argument vectors.
//! - [`traffic`]: threads inside a netns, a TCP echo server, TCP requests, ping.
//! - [`observe`]: `ip -j` read-backs (rules, routes, addresses) and state snapshots.
//! - [`cni`]: invoking a plugin as a runtime would, a libcni-like conflist runner,
//!   and a bridge + host-local conflist builder.
//! - [`libcni`]: the Go driver over Debian's libcni (`tests/libcni-driver`).
//! - [`examples`]: the conflists of `conflist-examples/` run through libcni.
//! - [`nfclose`]: an nf_tables socket's close after a deleting commit, timed.
//! - [`topo`]: links with addresses, the uplink node, routers and clients of
//!   the asymmetric topology.
//!
//! The scaffolding of some areas, each imported by name where it is used
//! (`use crate::support::asym::*;`):
//!
//! - [`asym`]: the asymmetric-routing topology of the source-steering tests.
//! - [`fwsteer`]: the firewall steering tests' topology, counters and census.
//! - [`gwnet`]: pods, routers and read-backs of the gateway network tests.
//! - [`reliability`]: a node invoked directly, and its state as one snapshot
//!   (crash, concurrency, drift, CLI, VRF).
#![allow(dead_code)]
#![allow(unused_imports)]

pub mod cmd;
pub mod cni;
pub mod examples;
pub mod lab;
pub mod libcni;
pub mod nfclose;
pub mod observe;
pub mod podman;
pub mod topo;
pub mod traffic;

pub mod asym;
pub mod fwsteer;
pub mod gwnet;
pub mod reliability;

pub use cmd::*;
pub use cni::*;
pub use lab::Lab;
pub use libcni::{libcni, libcni_driver};
pub use observe::*;
pub use topo::*;
pub use traffic::*;
