//! Uplinks enslaved to a VRF: what they had before (addresses, main-table
//! routes), given back in the VRF table and again on release.

use super::*;
use crate::model::{SavedRoute, SavedUplink};

/// Not the kernel's own (connected, local, IPv6 prefix and link-local) routes.
pub(super) const RTPROT_KERNEL: u8 = 2;

pub(super) fn through(route: &RouteSpec, dev: &str) -> bool {
    route.dev.as_deref() == Some(dev)
        || route.nexthops.iter().any(|h| h.dev.as_deref() == Some(dev))
}

impl NetlinkKernel {
    /// What `dev` has before it is enslaved: its addresses (not IPv6
    /// link-local) and the main table's routes through it that the kernel
    /// did not make. `None` if there is no such device.
    pub(crate) fn capture_uplink(&mut self, dev: &str) -> Result<Option<SavedUplink>> {
        let Some(addresses) = self.addresses_of(dev)? else {
            return Ok(None);
        };
        let addresses = addresses
            .into_iter()
            .filter(|a| !matches!(a, IpNet::V6(n) if n.addr().segments()[0] & 0xffc0 == 0xfe80))
            .collect();
        let routes = self
            .table_routes(crate::model::TABLE_MAIN)?
            .into_iter()
            .filter(|(r, proto)| *proto != RTPROT_KERNEL && through(r, dev))
            .map(|(route, protocol)| SavedRoute {
                scope: if route.nexthops.is_empty() { 253 } else { 0 },
                route,
                protocol,
                prefsrc: None,
                onlink: false,
            })
            .collect();
        Ok(Some(SavedUplink { addresses, routes }))
    }

    /// Puts back `saved`'s addresses on `dev`, and its routes in `table`.
    pub(super) fn give_back(&mut self, dev: &str, saved: &SavedUplink, table: u32) -> Result<()> {
        for a in &saved.addresses {
            self.ensure_address(dev, a)?;
        }
        for r in &saved.routes {
            let mut r = r.clone();
            r.route.table = table;
            self.restore_route(Side::Node, &r)?;
        }
        Ok(())
    }

    /// Enslaves `dev` to `vrf` (the kernel cycles the link: IPv6 addresses
    /// and routes through it go), then gives it back its addresses and its
    /// routes, in the VRF's table.
    pub(crate) fn ensure_uplink(
        &mut self,
        dev: &str,
        vrf: &str,
        table: u32,
        saved: &SavedUplink,
    ) -> Result<()> {
        let st = self
            .get_link(Side::Node, dev)?
            .ok_or_else(|| Error::kernel(format!("uplink {dev}: no such device")))?;
        let master = self
            .require_index(Side::Node, vrf)
            .map_err(nl(format_args!("enslaving {dev} to {vrf}")))?;
        if st.master != Some(master) || !st.up {
            self.set_link(
                Side::Node,
                st.index,
                vec![LinkAttribute::Controller(master)],
                true,
            )
            .map_err(nl(format_args!("enslaving {dev} to {vrf}")))?;
        }
        self.give_back(dev, saved, table)
    }

    /// Returns `dev` to the default VRF with its addresses and main-table routes.
    pub(crate) fn release_uplink(&mut self, dev: &str, saved: &SavedUplink) -> Result<()> {
        let Some(st) = self.get_link(Side::Node, dev)? else {
            return Ok(());
        };
        if st.master.is_some() {
            self.set_link(
                Side::Node,
                st.index,
                vec![LinkAttribute::Controller(0)],
                true,
            )
            .map_err(nl(format_args!("releasing {dev} from its VRF")))?;
        }
        self.give_back(dev, saved, crate::model::TABLE_MAIN)
    }

    pub(crate) fn observe_uplink(&mut self, dev: &str, vrf: &str) -> Result<Presence> {
        let Some(st) = self.get_link(Side::Node, dev)? else {
            return Ok(Presence::Missing);
        };
        let want = self.link_index(Side::Node, vrf)?;
        Ok(if want.is_some() && st.master == want {
            Presence::Present
        } else {
            Presence::Drifted(format!("not enslaved to {vrf}"))
        })
    }
}
