//! Shared helpers for gwsteer's integration tests (`mod common;` in each test file).
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
//! - [`topo`]: links with addresses, the uplink node, routers and clients of
//!   the asymmetric topology.
#![allow(dead_code)]
#![allow(unused_imports)]

pub mod cmd;
pub mod cni;
pub mod examples;
pub mod lab;
pub mod libcni;
pub mod observe;
pub mod topo;
pub mod traffic;

pub use cmd::*;
pub use cni::*;
pub use lab::Lab;
pub use libcni::{libcni, libcni_driver};
pub use observe::*;
pub use topo::*;
pub use traffic::*;
