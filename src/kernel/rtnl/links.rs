//! The gateway network's netlink objects: node links (bridge, VXLAN) that
//! gwsteer makes if absent and keeps up at their MTU, all-zero FDB entries
//! for unicast VXLAN remotes, device MTUs, and pod routes that replace the
//! pod's own and are put back on DEL.
//!
//! Cost: ensuring a link that is right is one `RTM_GETLINK`; an FDB entry
//! one append (idempotent in the kernel); an MTU one get (and a set if it
//! differs). Only reading a pod's previous route dumps, and then only the
//! pod's main table of one family (a pod has a handful of routes).

use netlink_packet_core::NLM_F_APPEND;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, InfoVrf, InfoVxlan, LinkFlags, LinkInfo,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::RouteScope;

use super::*;
use crate::model::{ALIAS, LinkKind, LinkSpec, SavedRoute, SavedUplink};

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

/// What the kernel answers to `ip route get DST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAnswer {
    pub local: bool,
    pub gateway: Option<IpAddr>,
    pub oif: Option<String>,
    pub prefsrc: Option<IpAddr>,
}

fn nl(doing: impl fmt::Display) -> impl FnOnce(NlError) -> Error {
    move |e| e.into_error(doing)
}

fn link_state(msg: &LinkMessage) -> LinkState {
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

fn ip_of_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn kind_name(kind: &LinkKind) -> &'static str {
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

    fn set_link(
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

    /// `ip route get DST` (in the `side` namespace).
    pub(crate) fn route_get(&mut self, side: Side, dst: IpAddr) -> Result<Option<RouteAnswer>> {
        let family = Family::of(&dst);
        let mut msg = RouteMessage::default();
        msg.header.address_family = address_family(family);
        msg.header.destination_prefix_length = IpNet::from(dst).max_prefix_len();
        msg.attributes.push(RouteAttribute::Destination(dst.into()));
        let answer = match self.request(side, RouteNetlinkMessage::GetRoute(msg), Req::Get) {
            Ok(answer) => answer,
            Err(e)
                if matches!(e.errno(), Some(errno) if errno == Errno::ENETUNREACH as i32
                    || errno == Errno::EHOSTUNREACH as i32
                    || errno == Errno::EINVAL as i32) =>
            {
                return Ok(None);
            }
            Err(e) => {
                return Err(e.into_error(format_args!(
                    "looking up the route to {dst}{}",
                    side_suffix(side)
                )));
            }
        };
        let Some(route) = answer.iter().find_map(|m| match m {
            RouteNetlinkMessage::NewRoute(r) => Some(r.clone()),
            _ => None,
        }) else {
            return Ok(None);
        };
        let mut out = RouteAnswer {
            local: route.header.kind == RouteType::Local,
            gateway: None,
            oif: None,
            prefsrc: None,
        };
        for attr in &route.attributes {
            match attr {
                RouteAttribute::Gateway(a) => out.gateway = route_ip(a),
                RouteAttribute::Via(v) => out.gateway = via_ip(v),
                RouteAttribute::PrefSource(a) => out.prefsrc = route_ip(a),
                RouteAttribute::Oif(i) => {
                    out.oif = Some(self.dev_name(side, *i).map_err(nl("naming a device"))?)
                }
                _ => {}
            }
        }
        Ok(Some(out))
    }

    // ---- links ----

    fn create_link(&mut self, spec: &LinkSpec) -> Result<()> {
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
    fn vxlan_differs(&mut self, spec: &LinkSpec, st: &LinkState) -> Result<Option<String>> {
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
    fn pin_bridge_address(&mut self, bridge: &str, port: &str) -> Result<()> {
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

    fn delete_link(&mut self, name: &str, index: u32) -> Result<()> {
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

    // ---- FDB ----

    fn fdb_message(&mut self, dev: &str, dst: IpAddr) -> Result<Option<NeighbourMessage>> {
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

    // ---- pod routes ----

    /// The route in `spec`'s slot (table, destination, metric), as the
    /// kernel has it, with what a saved route keeps.
    pub(crate) fn route_in_slot(
        &mut self,
        side: Side,
        spec: &RouteSpec,
    ) -> Result<Option<SavedRoute>> {
        let family = spec.family();
        let (_, dst, metric) = spec.slot();
        let messages = self
            .dump_route_messages(side, family, spec.table)
            .map_err(nl(format_args!(
                "reading {family} table {}{}",
                spec.table,
                side_suffix(side)
            )))?;
        for msg in messages {
            let Some(route) = self
                .route_from_message(side, &msg)
                .map_err(nl("reading a route"))?
            else {
                continue;
            };
            if !route.exact
                || route.spec.table != spec.table
                || route.spec.dst != dst
                || effective_metric(family, route.spec.metric) != metric
            {
                continue;
            }
            let prefsrc = msg.attributes.iter().find_map(|a| match a {
                RouteAttribute::PrefSource(a) => route_ip(a),
                _ => None,
            });
            return Ok(Some(SavedRoute {
                route: route.spec,
                protocol: route.protocol,
                scope: u8::from(msg.header.scope),
                prefsrc,
                onlink: msg.header.flags.contains(RouteFlags::Onlink),
            }));
        }
        Ok(None)
    }

    /// Puts a saved route back exactly, in place of whatever holds its slot.
    pub(crate) fn restore_route(&mut self, side: Side, saved: &SavedRoute) -> Result<()> {
        let what = format!("putting back {saved}{}", side_suffix(side));
        let mut msg = self
            .route_add_message(side, &saved.route)
            .map_err(nl(&what))?;
        msg.header.protocol = RouteProtocol::from(saved.protocol);
        msg.header.scope = RouteScope::from(saved.scope);
        if saved.onlink {
            msg.header.flags |= RouteFlags::Onlink;
        }
        if let Some(src) = saved.prefsrc {
            msg.attributes.push(RouteAttribute::PrefSource(src.into()));
        }
        self.request(
            side,
            RouteNetlinkMessage::NewRoute(msg),
            Req::Change(NLM_F_CREATE | NLM_F_REPLACE),
        )
        .map(drop)
        .map_err(nl(what))
    }

    pub(crate) fn ensure_pod_route(&mut self, spec: &RouteSpec) -> Result<()> {
        self.ensure(&Object::Route {
            spec: spec.clone(),
            side: Side::Pod,
        })
    }

    pub(crate) fn observe_pod_route(&mut self, spec: &RouteSpec) -> Result<Presence> {
        self.observe(&Object::Route {
            spec: spec.clone(),
            side: Side::Pod,
        })
    }

    /// Our route goes; the pod's own comes back. A route someone else put
    /// in the slot since is left alone.
    pub(crate) fn remove_pod_route(
        &mut self,
        spec: &RouteSpec,
        previous: Option<&SavedRoute>,
    ) -> Result<()> {
        let now = self.route_in_slot(Side::Pod, spec)?;
        match (now, previous) {
            (Some(now), _) if now.protocol != RTPROT_GWSTEER => {
                log::info!("pod route slot of {spec} holds {now}, not gwsteer's; left in place");
                Ok(())
            }
            (_, Some(previous)) => self.restore_route(Side::Pod, previous),
            (Some(_), None) => self.remove(&Object::Route {
                spec: spec.clone(),
                side: Side::Pod,
            }),
            (None, None) => Ok(()),
        }
    }
}

// ---- addresses (the VRF's legs) ----

fn address_of(msg: &AddressMessage) -> Option<IpNet> {
    // IPv4 carries the interface's own address in IFA_LOCAL (IFA_ADDRESS is
    // the peer's on point-to-point links); IPv6 only in IFA_ADDRESS.
    let mut local = None;
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    IpNet::new(local.or(address)?, msg.header.prefix_len).ok()
}

/// An IPv6 address of a device as `ip -6 addr` shows it: its scope and
/// the flags that make it unusable as a source (`tentative`, `dadfailed`,
/// `deprecated`) or short-lived (`temporary`, privacy extensions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V6Address {
    pub addr: std::net::Ipv6Addr,
    pub prefix_len: u8,
    /// Scope global (not link, host or site).
    pub global: bool,
    pub tentative: bool,
    pub dadfailed: bool,
    pub deprecated: bool,
    pub temporary: bool,
}

impl fmt::Display for V6Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)?;
        if !self.global {
            f.write_str(" (not global)")?;
        }
        for (set, name) in [
            (self.tentative, "tentative"),
            (self.dadfailed, "dadfailed"),
            (self.deprecated, "deprecated"),
            (self.temporary, "temporary"),
        ] {
            if set {
                write!(f, " {name}")?;
            }
        }
        Ok(())
    }
}

fn v6_address(msg: &AddressMessage) -> Option<V6Address> {
    use netlink_packet_route::address::{AddressHeaderFlags, AddressScope};
    let addr = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(IpAddr::V6(v6)) => Some(*v6),
        _ => None,
    })?;
    // IFA_FLAGS (32 bits) when the kernel sends it, else the header's 8.
    let flags = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Flags(f) => Some(*f),
        _ => None,
    });
    let has = |full: AddressFlags, short: AddressHeaderFlags| match flags {
        Some(f) => f.contains(full),
        None => msg.header.flags.contains(short),
    };
    Some(V6Address {
        addr,
        prefix_len: msg.header.prefix_len,
        global: msg.header.scope == AddressScope::Universe,
        tentative: has(AddressFlags::Tentative, AddressHeaderFlags::Tentative),
        dadfailed: has(AddressFlags::Dadfailed, AddressHeaderFlags::Dadfailed),
        deprecated: has(AddressFlags::Deprecated, AddressHeaderFlags::Deprecated),
        temporary: has(AddressFlags::Secondary, AddressHeaderFlags::Secondary),
    })
}

impl NetlinkKernel {
    fn address_message(index: u32, addr: &IpNet) -> AddressMessage {
        let mut msg = AddressMessage::default();
        msg.header.family = address_family(Family::of_net(addr));
        msg.header.prefix_len = addr.prefix_len();
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Address(addr.addr()));
        match addr {
            IpNet::V4(_) => msg.attributes.push(AddressAttribute::Local(addr.addr())),
            // A leg's IPv6 address is usable at once: no duplicate address
            // detection on a veth pair that only gwsteer uses.
            IpNet::V6(_) => msg
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad)),
        }
        msg
    }

    /// The addresses of device `dev` in the node (with their prefix
    /// lengths); `None` if there is no such device.
    pub(crate) fn addresses_of(&mut self, dev: &str) -> Result<Option<Vec<IpNet>>> {
        Ok(self
            .address_messages(dev, AddressFamily::Unspec)?
            .map(|list| list.iter().filter_map(address_of).collect()))
    }

    /// The IPv6 addresses of device `dev` in the node, with what decides
    /// whether one can be a VXLAN's source; `None` if there is no such device.
    pub(crate) fn ipv6_addresses(&mut self, dev: &str) -> Result<Option<Vec<V6Address>>> {
        Ok(self
            .address_messages(dev, AddressFamily::Inet6)?
            .map(|list| list.iter().filter_map(v6_address).collect()))
    }

    /// The node's address messages of device `dev` (of `family`, or all);
    /// `None` if there is no such device. The socket checks dump requests
    /// strictly, so the kernel sends only that device's addresses.
    fn address_messages(
        &mut self,
        dev: &str,
        family: AddressFamily,
    ) -> Result<Option<Vec<AddressMessage>>> {
        let Some(index) = self.link_index(Side::Node, dev)? else {
            return Ok(None);
        };
        let mut req = AddressMessage::default();
        req.header.family = family;
        req.header.index = index;
        let answer = self
            .request(Side::Node, RouteNetlinkMessage::GetAddress(req), Req::Dump)
            .map_err(nl(format_args!("listing the addresses of {dev}")))?;
        Ok(Some(
            answer
                .into_iter()
                .filter_map(|m| match m {
                    // Checked here too, for kernels that ignore the filter.
                    RouteNetlinkMessage::NewAddress(a)
                        if a.header.index == index
                            && (family == AddressFamily::Unspec || a.header.family == family) =>
                    {
                        Some(a)
                    }
                    _ => None,
                })
                .collect(),
        ))
    }

    /// `ip addr add ADDR dev DEV` (IPv6: `nodad`); an address already there is fine.
    pub(crate) fn ensure_address(&mut self, dev: &str, addr: &IpNet) -> Result<()> {
        let obj = || Object::Address {
            dev: dev.to_string(),
            addr: *addr,
        };
        let index = self
            .require_index(Side::Node, dev)
            .map_err(|e| failure(Op::Add, &obj(), e))?;
        match self.request(
            Side::Node,
            RouteNetlinkMessage::NewAddress(Self::address_message(index, addr)),
            Req::Change(NLM_F_CREATE | NLM_F_EXCL),
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.errno() == Some(Errno::EEXIST as i32) => Ok(()),
            Err(e) => Err(failure(Op::Add, &obj(), e)),
        }
    }

    /// `ip addr del ADDR dev DEV`; a missing device or address is fine.
    pub(crate) fn remove_address(&mut self, dev: &str, addr: &IpNet) -> Result<()> {
        let Some(index) = self.link_index(Side::Node, dev)? else {
            return Ok(());
        };
        match self.request(
            Side::Node,
            RouteNetlinkMessage::DelAddress(Self::address_message(index, addr)),
            Req::Change(0),
        ) {
            Ok(_) => Ok(()),
            Err(e)
                if e.errno() == Some(Errno::EADDRNOTAVAIL as i32)
                    || e.errno() == Some(Errno::ENODEV as i32) =>
            {
                Ok(())
            }
            Err(e) => Err(e.into_error(format_args!("deleting {addr} from {dev}"))),
        }
    }

    pub(crate) fn observe_address(&mut self, dev: &str, addr: &IpNet) -> Result<Presence> {
        Ok(match self.addresses_of(dev)? {
            Some(list) if list.contains(addr) => Presence::Present,
            Some(list) => match list.iter().find(|a| a.addr() == addr.addr()) {
                Some(other) => Presence::Drifted(format!("is {other}")),
                None => Presence::Missing,
            },
            None => Presence::Missing,
        })
    }
}

// ---- uplinks enslaved to a VRF ----

/// Not the kernel's own (connected, local, IPv6 prefix and link-local) routes.
const RTPROT_KERNEL: u8 = 2;

fn through(route: &RouteSpec, dev: &str) -> bool {
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
    fn give_back(&mut self, dev: &str, saved: &SavedUplink, table: u32) -> Result<()> {
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

#[cfg(test)]
mod tests {
    //! Links made over netlink, each test in a throw-away network namespace
    //! (a thread that `unshare`s), read back with `ip -j`. The VRF test needs
    //! a kernel with VRF: it says "skipped" elsewhere and runs in the VRF
    //! guest (`bash tests/vrf/run-in-guest.sh <lib test binary> netlink::links`).

    use std::process::Command;

    use serde_json::Value;

    use super::*;

    fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let thread = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("unshare(CLONE_NEWNET): these tests run as root");
            f()
        });
        match thread.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// `ip -j -d link show dev DEV`, or `None` if there is no such device.
    fn link_json(dev: &str) -> Option<Value> {
        let out = Command::new("ip")
            .args(["-j", "-d", "link", "show", "dev", dev])
            .output()
            .expect("running ip");
        if !out.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&out.stdout).expect("ip -j prints JSON");
        v.get(0).cloned()
    }

    fn spec(name: &str, kind: LinkKind, master: Option<&str>) -> LinkSpec {
        LinkSpec {
            name: name.into(),
            kind,
            mtu: None,
            master: master.map(String::from),
        }
    }

    fn veth(name: &str, peer: &str, master: Option<&str>) -> LinkSpec {
        spec(name, LinkKind::Veth { peer: peer.into() }, master)
    }

    #[test]
    fn veth_legs_are_made_together_marked_and_up() {
        in_netns(|| {
            let mut k = NetlinkKernel::new(None).unwrap();
            let host = veth("gl-host", "gl-vrf", None);
            let other = veth("gl-vrf", "gl-host", None);
            assert_eq!(k.observe_link(&host).unwrap(), Presence::Missing);
            k.ensure_link(&host).unwrap();
            // The peer exists (made with the pair) but is down until its own spec.
            assert_eq!(
                k.observe_link(&other).unwrap(),
                Presence::Drifted("down".into())
            );
            k.ensure_link(&other).unwrap();
            k.ensure_link(&host).unwrap();
            for dev in ["gl-host", "gl-vrf"] {
                let l = link_json(dev).unwrap_or_else(|| panic!("{dev} missing"));
                assert_eq!(l["linkinfo"]["info_kind"], "veth", "{l}");
                assert_eq!(l["ifalias"], ALIAS, "{l}");
                assert!(
                    l["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
                    "{l}"
                );
            }
            assert_eq!(k.observe_link(&host).unwrap(), Presence::Present);
            assert_eq!(k.observe_link(&other).unwrap(), Presence::Present);
            assert_eq!(k.marked_links().unwrap().len(), 2);
            k.remove_link(&host).unwrap();
            assert!(link_json("gl-host").is_none() && link_json("gl-vrf").is_none());
            k.remove_link(&other).unwrap();
        });
    }

    #[test]
    fn leg_addresses_are_added_observed_and_removed() {
        in_netns(|| {
            let mut k = NetlinkKernel::new(None).unwrap();
            k.ensure_link(&veth("gl-host", "gl-vrf", None)).unwrap();
            let v4: IpNet = "192.169.1.1/30".parse().unwrap();
            let v6: IpNet = "fd00:169::1/64".parse().unwrap();
            for a in [&v4, &v6] {
                assert_eq!(k.observe_address("gl-host", a).unwrap(), Presence::Missing);
                k.ensure_address("gl-host", a).unwrap();
                k.ensure_address("gl-host", a).unwrap();
                assert_eq!(k.observe_address("gl-host", a).unwrap(), Presence::Present);
            }
            let mut got = k.addresses_of("gl-host").unwrap().unwrap();
            got.retain(|a| !matches!(a, IpNet::V6(n) if n.addr().segments()[0] == 0xfe80));
            assert_eq!(got, vec![v4, v6]);
            // IPv6 without duplicate address detection: not tentative.
            let out = Command::new("ip")
                .args(["-j", "-6", "addr", "show", "dev", "gl-host", "tentative"])
                .output()
                .unwrap();
            let tentative: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            assert!(
                tentative.as_array().is_none_or(|l| l
                    .iter()
                    .all(|i| i["addr_info"].as_array().is_none_or(|a| a.is_empty()))),
                "{tentative}"
            );
            // Another prefix length on the same address is drift.
            let other: IpNet = "192.169.1.1/24".parse().unwrap();
            assert_eq!(
                k.observe_address("gl-host", &other).unwrap(),
                Presence::Drifted("is 192.169.1.1/30".into())
            );
            for a in [&v4, &v6] {
                k.remove_address("gl-host", a).unwrap();
                k.remove_address("gl-host", a).unwrap();
                assert_eq!(k.observe_address("gl-host", a).unwrap(), Presence::Missing);
            }
            assert_eq!(k.observe_address("nodev", &v4).unwrap(), Presence::Missing);
            k.remove_address("nodev", &v4).unwrap();
            assert!(k.ensure_address("nodev", &v4).is_err());
        });
    }

    #[test]
    fn an_ipv6_vxlan_with_its_source_and_ipv6_fdb_entries() {
        in_netns(|| {
            let ip = |args: &[&str]| {
                let out = Command::new("ip").args(args).output().expect("running ip");
                assert!(out.status.success(), "ip {args:?}: {out:?}");
            };
            // A veth whose peer stays down: no carrier, so an address added
            // with duplicate address detection stays tentative.
            ip(&[
                "link", "add", "under0", "type", "veth", "peer", "name", "under1",
            ]);
            ip(&["link", "set", "under0", "up"]);
            ip(&["addr", "add", "fd00:200::1/64", "dev", "under0", "nodad"]);
            ip(&["addr", "add", "fd00:200::9/64", "dev", "under0"]);
            let mut k = NetlinkKernel::new(None).unwrap();
            let addrs = k.ipv6_addresses("under0").unwrap().unwrap();
            let find = |a: &str| {
                *addrs
                    .iter()
                    .find(|x| x.addr == a.parse::<std::net::Ipv6Addr>().unwrap())
                    .unwrap_or_else(|| panic!("{a} not in {addrs:?}"))
            };
            let good = find("fd00:200::1");
            assert!(good.global && !good.tentative && !good.deprecated, "{good}");
            assert!(find("fd00:200::9").tentative, "{addrs:?}");
            assert_eq!(k.ipv6_addresses("nodev").unwrap(), None);

            let local: IpAddr = "fd00:200::1".parse().unwrap();
            let vx = LinkSpec {
                name: "gwvx0".into(),
                kind: LinkKind::Vxlan {
                    vni: 42,
                    group: None,
                    local: Some(local),
                    port: 4789,
                    dev: Some("under0".into()),
                },
                mtu: Some(1430),
                master: None,
            };
            k.ensure_link(&vx).unwrap();
            k.ensure_link(&vx).unwrap();
            let l = link_json("gwvx0").unwrap();
            assert_eq!(l["linkinfo"]["info_data"]["local6"], "fd00:200::1", "{l}");
            assert_eq!(l["mtu"], 1430, "{l}");
            assert_eq!(k.observe_link(&vx).unwrap(), Presence::Present);
            let remote: IpAddr = "fd00:200::2".parse().unwrap();
            assert_eq!(k.observe_fdb("gwvx0", remote).unwrap(), Presence::Missing);
            k.ensure_fdb("gwvx0", remote).unwrap();
            k.ensure_fdb("gwvx0", remote).unwrap();
            assert_eq!(k.observe_fdb("gwvx0", remote).unwrap(), Presence::Present);
            // Another source address is drift, and ensure makes it anew.
            let other = LinkSpec {
                kind: LinkKind::Vxlan {
                    vni: 42,
                    group: None,
                    local: Some("fd00:200::3".parse().unwrap()),
                    port: 4789,
                    dev: Some("under0".into()),
                },
                ..vx.clone()
            };
            assert!(matches!(
                k.observe_link(&other).unwrap(),
                Presence::Drifted(why) if why.contains("local")
            ));
            k.remove_fdb("gwvx0", remote).unwrap();
            k.remove_fdb("gwvx0", remote).unwrap();
            assert_eq!(k.observe_fdb("gwvx0", remote).unwrap(), Presence::Missing);
            // An IPv6 multicast group on the underlay.
            let mc = LinkSpec {
                name: "gwvx1".into(),
                kind: LinkKind::Vxlan {
                    vni: 43,
                    group: Some("ff05::42".parse().unwrap()),
                    local: Some(local),
                    port: 4789,
                    dev: Some("under0".into()),
                },
                mtu: Some(1430),
                master: None,
            };
            k.ensure_link(&mc).unwrap();
            let l = link_json("gwvx1").unwrap();
            assert_eq!(l["linkinfo"]["info_data"]["group6"], "ff05::42", "{l}");
            assert_eq!(k.observe_link(&mc).unwrap(), Presence::Present);
            k.remove_link(&vx).unwrap();
            k.remove_link(&mc).unwrap();
            assert!(link_json("gwvx0").is_none() && link_json("gwvx1").is_none());
        });
    }

    #[test]
    fn vrf_device_with_its_table_and_an_enslaved_leg() {
        if !crate::kernel::vrf_supported() {
            eprintln!(
                "vrf_device_with_its_table_and_an_enslaved_leg: skipped: no VRF in this kernel"
            );
            return;
        }
        in_netns(|| {
            let mut k = NetlinkKernel::new(None).unwrap();
            let vrf = spec("vrf-oam", LinkKind::Vrf { table: 10 }, None);
            let host = veth("gl-host", "gl-vrf", None);
            let leg = veth("gl-vrf", "gl-host", Some("vrf-oam"));
            for s in [&vrf, &host, &leg] {
                k.ensure_link(s).unwrap();
                k.ensure_link(s).unwrap();
            }
            let l = link_json("vrf-oam").unwrap();
            assert_eq!(l["linkinfo"]["info_kind"], "vrf", "{l}");
            assert_eq!(l["linkinfo"]["info_data"]["table"], 10, "{l}");
            assert_eq!(link_json("gl-vrf").unwrap()["master"], "vrf-oam");
            assert!(link_json("gl-host").unwrap().get("master").is_none());
            for s in [&vrf, &host, &leg] {
                assert_eq!(k.observe_link(s).unwrap(), Presence::Present, "{s}");
            }
            // Another table is drift; ensure makes the VRF anew (it is gwsteer's).
            let vrf11 = spec("vrf-oam", LinkKind::Vrf { table: 11 }, None);
            assert_eq!(
                k.observe_link(&vrf11).unwrap(),
                Presence::Drifted("table 10".into())
            );
            k.ensure_link(&vrf11).unwrap();
            k.ensure_link(&leg).unwrap();
            assert_eq!(
                link_json("vrf-oam").unwrap()["linkinfo"]["info_data"]["table"],
                11
            );
            assert_eq!(k.observe_link(&leg).unwrap(), Presence::Present);
            k.remove_link(&vrf11).unwrap();
            k.remove_link(&host).unwrap();
            assert!(link_json("vrf-oam").is_none() && link_json("gl-vrf").is_none());
        });
    }
}
