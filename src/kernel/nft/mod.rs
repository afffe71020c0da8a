//! The firewall layer: the packet-marking and NAT-exemption objects that the
//! `mark` and `connmark` steering modes and the masquerade exemption need,
//! behind one [`Firewall`] trait, implemented by nftables (gwsteer's own
//! tables, which coexist with the iptables-legacy, iptables-nft and nftables
//! rules of other software). `firewallBackend: none` opens no firewall; the
//! choice is made once, by the engine, from the config.
//!
//! Cost model: a policy's chains, rules and sets are node-level (made by the
//! first pod that needs them, removed with the last); a pod only adds its
//! address to a set. The number of firewall rules never grows with pods.

mod batch;
pub mod command;
mod foreign;
pub mod json;
mod legacy;
mod messages;
pub mod nfnl;
pub mod nftables;
mod ruleset;
#[cfg(test)]
mod testutil;
mod view;
pub mod vrf_nat;
mod xtables;

use crate::error::Result;
use crate::model::{Backend, FwObject, Presence};

/// A firewall implementation. `ensure` is idempotent, `remove` treats an
/// absent object as success, `observe` changes nothing. Every object a
/// backend makes carries a gwsteer marker (its own nftables tables named
/// `gwsteer-…`; RETURN rules in foreign iptables chains carry the comment
/// `gwsteer:<network>`), so cleanup finds exactly its own.
pub trait Firewall {
    fn name(&self) -> &'static str;
    fn ensure(&mut self, obj: &FwObject) -> Result<()>;
    fn remove(&mut self, obj: &FwObject) -> Result<()>;
    fn observe(&mut self, obj: &FwObject) -> Result<Presence>;
    /// Remove every gwsteer firewall object on the node (all networks);
    /// returns what was (or, with `dry_run`, would be) removed.
    fn cleanup(&mut self, dry_run: bool) -> Result<Vec<String>>;
}

pub fn open(backend: Backend) -> Result<Box<dyn Firewall>> {
    Ok(match backend {
        Backend::Nftables => Box::new(nftables::Nftables::new()?),
    })
}

/// A backend opened once per call: its sockets are already open (and
/// proven to answer), so the caller hands it on instead of opening another.
pub struct Opened {
    pub backend: Backend,
    pub firewall: Box<dyn Firewall>,
}
