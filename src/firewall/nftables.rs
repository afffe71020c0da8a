//! The nftables backend (being written).

use super::{Firewall, FwObject};
use crate::error::{Error, Result, code};
use crate::objects::Presence;

pub struct Nftables;

impl Nftables {
    pub fn new() -> Result<Nftables> {
        Err(Error::new(
            code::NOT_AVAILABLE,
            "the nftables backend is not built yet",
        ))
    }
}

impl Firewall for Nftables {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn ensure(&mut self, _obj: &FwObject) -> Result<()> {
        Err(Error::new(
            code::NOT_AVAILABLE,
            "the nftables backend is not built yet",
        ))
    }

    fn remove(&mut self, _obj: &FwObject) -> Result<()> {
        Ok(())
    }

    fn observe(&mut self, _obj: &FwObject) -> Result<Presence> {
        Ok(Presence::Missing)
    }

    fn cleanup(&mut self, _dry_run: bool) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}
