//! Netlink backend (in progress).
