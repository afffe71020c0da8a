//! The gateway network's netlink objects: node links (bridge, VXLAN) that
//! gwsteer makes if absent and keeps up at their MTU, all-zero FDB entries
//! for unicast VXLAN remotes, device MTUs, and pod routes that replace the
//! pod's own and are put back on DEL.
//!
//! Cost: ensuring a link that is right is one `RTM_GETLINK`; an FDB entry
//! one append (idempotent in the kernel); an MTU one get (and a set if it
//! differs). Only reading a pod's previous route dumps, and then only the
//! pod's main table of one family (a pod has a handful of routes).

use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, InfoVrf, InfoVxlan, LinkFlags, LinkInfo,
};

use super::*;
use crate::model::{ALIAS, LinkKind, LinkSpec};

/// A link as the kernel reports it, reduced to what gwsteer compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    pub index: u32,
    pub kind: Option<String>,
    pub mtu: Option<u32>,
    pub master: Option<u32>,
    pub up: bool,
    pub alias: Option<String>,
    pub address: Option<Vec<u8>>,
    pub vxlan: Option<VxlanState>,
    /// A VRF device's table.
    pub vrf_table: Option<u32>,
}

/// A VXLAN's settings as the kernel reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VxlanState {
    pub vni: u32,
    pub group: Option<IpAddr>,
    pub local: Option<IpAddr>,
    pub port: u16,
    /// The underlay's ifindex.
    pub link: Option<u32>,
}

pub(super) fn link_state(msg: &LinkMessage) -> LinkState {
    let mut st = LinkState {
        index: msg.header.index,
        kind: None,
        mtu: None,
        master: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        alias: None,
        address: None,
        vxlan: None,
        vrf_table: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::Mtu(m) => st.mtu = Some(*m),
            LinkAttribute::Controller(m) => st.master = Some(*m),
            LinkAttribute::IfAlias(a) => st.alias = Some(a.clone()),
            LinkAttribute::Address(a) => st.address = Some(a.clone()),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(InfoKind::Bridge) => st.kind = Some("bridge".into()),
                        LinkInfo::Kind(InfoKind::Vxlan) => st.kind = Some("vxlan".into()),
                        LinkInfo::Kind(other) => st.kind = Some(other.to_string()),
                        LinkInfo::Data(InfoData::Vxlan(data)) => {
                            let mut v = VxlanState::default();
                            for d in data {
                                match d {
                                    InfoVxlan::Id(id) => v.vni = *id,
                                    InfoVxlan::Group(g) if !g.is_unspecified() => {
                                        v.group = Some(IpAddr::V4(*g))
                                    }
                                    InfoVxlan::Group6(g) if !g.is_unspecified() => {
                                        v.group = Some(IpAddr::V6(*g))
                                    }
                                    InfoVxlan::Local(l) if !l.is_unspecified() => {
                                        v.local = Some(IpAddr::V4(*l))
                                    }
                                    InfoVxlan::Local6(l) if !l.is_unspecified() => {
                                        v.local = Some(IpAddr::V6(*l))
                                    }
                                    InfoVxlan::Port(p) => v.port = *p,
                                    InfoVxlan::Link(l) if *l != 0 => v.link = Some(*l),
                                    _ => {}
                                }
                            }
                            st.vxlan = Some(v);
                        }
                        LinkInfo::Data(InfoData::Vrf(data)) => {
                            st.vrf_table = data.iter().find_map(|d| match d {
                                InfoVrf::TableId(t) => Some(*t),
                                _ => None,
                            });
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    st
}

pub(super) fn ip_of_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

pub(super) fn kind_name(kind: &LinkKind) -> &'static str {
    match kind {
        LinkKind::Bridge => "bridge",
        LinkKind::Vxlan { .. } => "vxlan",
        LinkKind::Vrf { .. } => "vrf",
        LinkKind::Veth { .. } => "veth",
    }
}

impl NetlinkKernel {
    /// One `RTM_GETLINK` by name; `None` if there is no such device.
    pub(crate) fn get_link(&mut self, side: Side, name: &str) -> Result<Option<LinkState>> {
        match self.link_by_name(side, name) {
            Ok(link) => Ok(link.as_ref().map(link_state)),
            Err(e) => Err(e.into_error(format_args!(
                "looking up device {name}{}",
                side_suffix(side)
            ))),
        }
    }

    pub(super) fn set_link(
        &mut self,
        side: Side,
        index: u32,
        attrs: Vec<LinkAttribute>,
        up: bool,
    ) -> Result<(), NlError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        if up {
            msg.header.flags = LinkFlags::Up;
            msg.header.change_mask = LinkFlags::Up;
        }
        msg.attributes = attrs;
        self.request(side, RouteNetlinkMessage::SetLink(msg), Req::Change(0))
            .map(drop)
    }

    // ---- links ----

    pub(super) fn create_link(&mut self, spec: &LinkSpec) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::IfName(spec.name.clone()));
        if let Some(mtu) = spec.mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(master) = &spec.master {
            let index = self
                .require_index(Side::Node, master)
                .map_err(nl(format_args!("adding {spec}")))?;
            self.pin_bridge_address(master, &spec.name)?;
            msg.attributes.push(LinkAttribute::Controller(index));
        }
        let info = match &spec.kind {
            LinkKind::Bridge => vec![LinkInfo::Kind(InfoKind::Bridge)],
            LinkKind::Vxlan {
                vni,
                group,
                local,
                port,
                dev,
            } => {
                let mut data = vec![InfoVxlan::Id(*vni), InfoVxlan::Port(*port)];
                match group {
                    Some(IpAddr::V4(g)) => data.push(InfoVxlan::Group(*g)),
                    Some(IpAddr::V6(g)) => data.push(InfoVxlan::Group6(*g)),
                    None => {}
                }
                match local {
                    Some(IpAddr::V4(l)) => data.push(InfoVxlan::Local(*l)),
                    Some(IpAddr::V6(l)) => data.push(InfoVxlan::Local6(*l)),
                    None => {}
                }
                if let Some(dev) = dev {
                    let index = self
                        .require_index(Side::Node, dev)
                        .map_err(nl(format_args!("adding {spec}")))?;
                    data.push(InfoVxlan::Link(index));
                }
                vec![
                    LinkInfo::Kind(InfoKind::Vxlan),
                    LinkInfo::Data(InfoData::Vxlan(data)),
                ]
            }
            LinkKind::Vrf { table } => vec![
                LinkInfo::Kind(InfoKind::Vrf),
                LinkInfo::Data(InfoData::Vrf(vec![InfoVrf::TableId(*table)])),
            ],
            LinkKind::Veth { peer } => {
                let mut peer_msg = LinkMessage::default();
                peer_msg
                    .attributes
                    .push(LinkAttribute::IfName(peer.clone()));
                vec![
                    LinkInfo::Kind(InfoKind::Veth),
                    LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
                ]
            }
        };
        msg.attributes.push(LinkAttribute::LinkInfo(info));
        match self.request(
            Side::Node,
            RouteNetlinkMessage::NewLink(msg),
            Req::Change(NLM_F_CREATE | NLM_F_EXCL),
        ) {
            Ok(_) => {}
            // Made meanwhile by someone else (another network's ADD, the
            // bridge plugin): the caller looks again and adopts it.
            Err(e) if e.errno() == Some(Errno::EEXIST as i32) => return Ok(()),
            Err(e) => return Err(failure(Op::Add, &Object::Link { link: spec.clone() }, e)),
        }
        let st = self
            .get_link(Side::Node, &spec.name)?
            .ok_or_else(|| Error::kernel(format!("{spec}: made, then gone")))?;
        // A veth's other end was made with it: marked too, so that cleanup
        // knows it (its own spec brings it up and enslaves it).
        if let LinkKind::Veth { peer } = &spec.kind
            && let Some(peer_st) = self.get_link(Side::Node, peer)?
        {
            self.set_link(
                Side::Node,
                peer_st.index,
                vec![LinkAttribute::IfAlias(ALIAS.to_string())],
                false,
            )
            .map_err(nl(format_args!("marking {peer}, the peer of {spec}")))?;
        }
        self.set_link(
            Side::Node,
            st.index,
            vec![LinkAttribute::IfAlias(ALIAS.to_string())],
            true,
        )
        .map_err(nl(format_args!("marking and bringing up {spec}")))
    }

    /// The settings that need a new link when they change (a VXLAN's, a
    /// VRF's table).
    pub(super) fn vxlan_differs(
        &mut self,
        spec: &LinkSpec,
        st: &LinkState,
    ) -> Result<Option<String>> {
        if let LinkKind::Vrf { table } = &spec.kind {
            return Ok((st.vrf_table != Some(*table))
                .then(|| format!("table {}", st.vrf_table.unwrap_or(0))));
        }
        let LinkKind::Vxlan {
            vni,
            group,
            local,
            port,
            dev,
        } = &spec.kind
        else {
            return Ok(None);
        };
        let Some(VxlanState {
            vni: k_vni,
            group: k_group,
            local: k_local,
            port: k_port,
            link: k_link,
        }) = st.vxlan
        else {
            return Ok(Some("no VXLAN settings".into()));
        };
        let mut diffs = Vec::new();
        if k_vni != *vni {
            diffs.push(format!("id {k_vni}"));
        }
        if k_group != *group {
            diffs.push(format!("group {k_group:?}"));
        }
        if local.is_some() && k_local != *local {
            diffs.push(format!("local {k_local:?}"));
        }
        if k_port != *port {
            diffs.push(format!("dstport {k_port}"));
        }
        if let Some(dev) = dev {
            let want = self.link_index(Side::Node, dev)?;
            if want.is_none() || k_link != want {
                diffs.push(format!("underlay ifindex {k_link:?}"));
            }
        }
        Ok((!diffs.is_empty()).then(|| diffs.join(", ")))
    }

    pub(crate) fn ensure_link(&mut self, spec: &LinkSpec) -> Result<()> {
        let mut st = match self.get_link(Side::Node, &spec.name)? {
            Some(st) => st,
            None => {
                self.create_link(spec)?;
                self.get_link(Side::Node, &spec.name)?
                    .ok_or_else(|| Error::kernel(format!("{spec}: made, then gone")))?
            }
        };
        if st.kind.as_deref() != Some(kind_name(&spec.kind)) {
            return Err(Error::kernel(format!(
                "{spec}: device {} exists and is a {}, not a {}",
                spec.name,
                st.kind.as_deref().unwrap_or("device of no kind"),
                kind_name(&spec.kind)
            ))
            .with_details("choose another name in gatewayNetwork, or remove that device"));
        }
        if let Some(why) = self.vxlan_differs(spec, &st)? {
            if st.alias.as_deref() != Some(ALIAS) {
                return Err(Error::kernel(format!(
                    "{spec}: device {} exists with other settings ({why}) and is not gwsteer's",
                    spec.name
                )));
            }
            log::info!("{spec}: settings changed ({why}); making it anew");
            self.delete_link(&spec.name, st.index)?;
            self.create_link(spec)?;
            st = self
                .get_link(Side::Node, &spec.name)?
                .ok_or_else(|| Error::kernel(format!("{spec}: made, then gone")))?;
        }
        let mut attrs = Vec::new();
        if let Some(mtu) = spec.mtu
            && st.mtu != Some(mtu)
        {
            attrs.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(master) = &spec.master {
            let index = self
                .require_index(Side::Node, master)
                .map_err(nl(format_args!("ensuring {spec}")))?;
            if st.master != Some(index) {
                self.pin_bridge_address(master, &spec.name)?;
                attrs.push(LinkAttribute::Controller(index));
            }
        }
        if !attrs.is_empty() || !st.up {
            log::debug!("{spec}: setting {} attribute(s), up", attrs.len());
            self.set_link(Side::Node, st.index, attrs, true)
                .map_err(|e| failure(Op::Add, &Object::Link { link: spec.clone() }, e))?;
        }
        Ok(())
    }

    /// A bridge whose MAC nobody set takes the lowest of its ports' MACs,
    /// so enslaving the VXLAN could change it under the primary plugin
    /// (whose CHECK compares it with its ADD result): set it to what it is
    /// now, which also keeps it when ports come and go.
    pub(super) fn pin_bridge_address(&mut self, bridge: &str, port: &str) -> Result<()> {
        let Some(st) = self.get_link(Side::Node, bridge)? else {
            return Ok(());
        };
        let Some(mac) = st.address.filter(|_| st.kind.as_deref() == Some("bridge")) else {
            return Ok(());
        };
        self.set_link(
            Side::Node,
            st.index,
            vec![LinkAttribute::Address(mac)],
            false,
        )
        .map_err(nl(format_args!(
            "keeping the MAC of {bridge} before enslaving {port}"
        )))
    }

    pub(super) fn delete_link(&mut self, name: &str, index: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        match self.request(
            Side::Node,
            RouteNetlinkMessage::DelLink(msg),
            Req::Change(0),
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.errno() == Some(Errno::ENODEV as i32) => Ok(()),
            Err(e) => Err(e.into_error(format_args!("deleting device {name}"))),
        }
    }

    /// Deletes the link only if gwsteer made it (its alias says so).
    pub(crate) fn remove_link(&mut self, spec: &LinkSpec) -> Result<()> {
        let Some(st) = self.get_link(Side::Node, &spec.name)? else {
            return Ok(());
        };
        if st.alias.as_deref() != Some(ALIAS) {
            log::info!(
                "{}: not made by gwsteer (no alias \"{ALIAS}\"); left in place",
                spec.name
            );
            return Ok(());
        }
        self.delete_link(&spec.name, st.index)
    }

    pub(crate) fn observe_link(&mut self, spec: &LinkSpec) -> Result<Presence> {
        let Some(st) = self.get_link(Side::Node, &spec.name)? else {
            return Ok(Presence::Missing);
        };
        let mut diffs = Vec::new();
        if st.kind.as_deref() != Some(kind_name(&spec.kind)) {
            diffs.push(format!(
                "is a {}",
                st.kind.as_deref().unwrap_or("device of no kind")
            ));
        } else if let Some(why) = self.vxlan_differs(spec, &st)? {
            diffs.push(why);
        }
        if let Some(mtu) = spec.mtu
            && st.mtu != Some(mtu)
        {
            diffs.push(format!("mtu {}", st.mtu.unwrap_or(0)));
        }
        if let Some(master) = &spec.master {
            let want = self.link_index(Side::Node, master)?;
            if want.is_none() || st.master != want {
                diffs.push(format!("not enslaved to {master}"));
            }
        }
        if !st.up {
            diffs.push("down".into());
        }
        Ok(if diffs.is_empty() {
            Presence::Present
        } else {
            Presence::Drifted(diffs.join(", "))
        })
    }

    /// gwsteer's links left in the node (alias "gwsteer"), by name: one dump,
    /// for cleanup.
    pub fn marked_links(&mut self) -> Result<Vec<String>> {
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let answer = self
            .request(Side::Node, RouteNetlinkMessage::GetLink(msg), Req::Dump)
            .map_err(nl("listing the node's devices"))?;
        Ok(answer
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => {
                    let marked = link
                        .attributes
                        .iter()
                        .any(|a| matches!(a, LinkAttribute::IfAlias(x) if x == ALIAS));
                    let name = link.attributes.iter().find_map(|a| match a {
                        LinkAttribute::IfName(n) => Some(n.clone()),
                        _ => None,
                    });
                    name.filter(|_| marked)
                }
                _ => None,
            })
            .collect())
    }

    /// Deletes a marked link by name (cleanup of lost state).
    pub fn delete_marked_link(&mut self, name: &str) -> Result<()> {
        match self.get_link(Side::Node, name)? {
            Some(st) if st.alias.as_deref() == Some(ALIAS) => self.delete_link(name, st.index),
            _ => Ok(()),
        }
    }

    // ---- MTUs ----

    pub(crate) fn link_mtu(&mut self, side: Side, name: &str) -> Result<Option<u32>> {
        Ok(self.get_link(side, name)?.and_then(|st| st.mtu))
    }

    pub(crate) fn set_mtu(&mut self, side: Side, name: &str, mtu: u32) -> Result<()> {
        let st = self.get_link(side, name)?.ok_or_else(|| {
            Error::kernel(format!(
                "setting the MTU of {name}{}: no such device",
                side_suffix(side)
            ))
        })?;
        if st.mtu == Some(mtu) {
            return Ok(());
        }
        self.set_link(side, st.index, vec![LinkAttribute::Mtu(mtu)], false)
            .map_err(nl(format_args!(
                "setting the MTU of {name}{} to {mtu}",
                side_suffix(side)
            )))
    }
}

#[cfg(test)]
mod tests;
