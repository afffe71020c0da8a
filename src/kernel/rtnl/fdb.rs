//! All-zero FDB entries on a unicast VXLAN: BUM traffic is also sent to
//! each remote (`bridge fdb append 00:00:00:00:00:00 dev DEV dst DST`).

use netlink_packet_core::NLM_F_APPEND;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};

use super::link::ip_of_bytes;
use super::*;

impl NetlinkKernel {
    pub(super) fn fdb_message(
        &mut self,
        dev: &str,
        dst: IpAddr,
    ) -> Result<Option<NeighbourMessage>> {
        let Some(index) = self.link_index(Side::Node, dev)? else {
            return Ok(None);
        };
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = index;
        msg.header.state = NeighbourState::Permanent;
        msg.header.flags = NeighbourFlags::Own;
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(vec![0; 6]));
        msg.attributes
            .push(NeighbourAttribute::Destination(match dst {
                IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
                IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
            }));
        Ok(Some(msg))
    }

    pub(crate) fn ensure_fdb(&mut self, dev: &str, dst: IpAddr) -> Result<()> {
        let what = format!("fdb 00:00:00:00:00:00 dev {dev} dst {dst}");
        let Some(msg) = self.fdb_message(dev, dst)? else {
            return Err(Error::kernel(format!(
                "adding {what}: no device named {dev}"
            )));
        };
        // APPEND to the all-zero entry: one more remote; the kernel answers
        // success when this remote is there already.
        self.request(
            Side::Node,
            RouteNetlinkMessage::NewNeighbour(msg),
            Req::Change(NLM_F_CREATE | NLM_F_APPEND),
        )
        .map(drop)
        .map_err(nl(format_args!("adding {what}")))
    }

    pub(crate) fn remove_fdb(&mut self, dev: &str, dst: IpAddr) -> Result<()> {
        let Some(msg) = self.fdb_message(dev, dst)? else {
            return Ok(());
        };
        match self.request(
            Side::Node,
            RouteNetlinkMessage::DelNeighbour(msg),
            Req::Change(0),
        ) {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.errno(), Some(x) if x == Errno::ENOENT as i32 || x == Errno::ENODEV as i32) => {
                Ok(())
            }
            Err(e) => Err(e.into_error(format_args!(
                "removing fdb 00:00:00:00:00:00 dev {dev} dst {dst}"
            ))),
        }
    }

    pub(crate) fn observe_fdb(&mut self, dev: &str, dst: IpAddr) -> Result<Presence> {
        let Some(index) = self.link_index(Side::Node, dev)? else {
            return Ok(Presence::Missing);
        };
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = index;
        let answer = self
            .request(
                Side::Node,
                RouteNetlinkMessage::GetNeighbour(msg),
                Req::Dump,
            )
            .map_err(nl(format_args!("reading the fdb of {dev}")))?;
        let found = answer.iter().any(|m| match m {
            RouteNetlinkMessage::NewNeighbour(n) => {
                n.header.ifindex == index
                    && n.attributes
                        .iter()
                        .any(|a| matches!(a, NeighbourAttribute::LinkLayerAddress(mac) if mac.iter().all(|b| *b == 0)))
                    && n.attributes.iter().any(|a| match a {
                        NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => IpAddr::V4(*v4) == dst,
                        NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => IpAddr::V6(*v6) == dst,
                        // In an AF_BRIDGE message the address comes unparsed.
                        NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) => {
                            ip_of_bytes(bytes) == Some(dst)
                        }
                        _ => false,
                    })
            }
            _ => false,
        });
        Ok(if found {
            Presence::Present
        } else {
            Presence::Missing
        })
    }
}
