//! gwsteer's integration tests, one crate: a module per area, the shared
//! harness in [`support`] (namespaces, CNI runners, libcni, traffic, the
//! topologies of each area). Run as root (see tests/README.md):
//!
//! ```text
//! cargo test --test it                      # every namespace test
//! cargo test --test it lifecycle::          # one area
//! cargo test --test it -- --list            # the names: <area>::<test>
//! ```
//!
//! Only `tests/vrf_guest.rs` is a crate of its own: it runs inside a qemu
//! guest (tests/vrf/run.sh) and includes [`support`] by path.

mod support;

// Steering: source rules, firewall marks, and the operator's view of them.
mod explain;
mod firewall_steering;
mod logs;
mod multihomed;
mod source_steering;

// The gateway network (bridge + VXLAN to a router pod), IPv4 and IPv6 underlay.
mod gateway_network;
mod gateway_network_v6;

// The CNI verbs end to end, hostile input, and what a runtime sees.
mod bad_input;
mod hardening_input;
mod hardening_store;
mod lifecycle;
mod ownership;
mod podman;

// Reliability: killed mid-call, concurrent calls, drift, the CLI and the agent that repair it.
mod agent;
mod cli;
mod concurrency;
mod crash;
mod drift;

// Real runtimes and the shipped files: libcni, the conflist examples, the installer.
mod cnitool;
mod examples;
mod examples_libcni;
mod installer;
mod libcni;

// The VRF on this kernel (which has none): refused cleanly (the guest tier is vrf_guest.rs).
mod vrf_host;

// The build and the harness itself.
mod architecture;
mod code_layout;
mod harness_selftest;
mod static_binary;
