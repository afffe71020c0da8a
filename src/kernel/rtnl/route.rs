//! Routes in a table: `ip route replace/del`, read back with a dump of
//! one table (filtered by the kernel), and how a route the kernel reports
//! is compared with what gwsteer asked for.

use super::*;

impl NetlinkKernel {
    pub(super) fn ensure_route(&mut self, side: Side, spec: &RouteSpec) -> Result<(), NlError> {
        let msg = self.route_add_message(side, spec)?;
        // CREATE|REPLACE: a route with the same destination, table and metric
        // (ours after a drift, or anyone's) is replaced in one step.
        self.request(
            side,
            RouteNetlinkMessage::NewRoute(msg),
            Req::Change(NLM_F_CREATE | NLM_F_REPLACE),
        )
        .map(drop)
    }

    pub(super) fn remove_route(&mut self, side: Side, spec: &RouteSpec) -> Result<(), NlError> {
        let msg = RouteNetlinkMessage::DelRoute(route_del_message(spec));
        match self.request(side, msg, Req::Change(0)) {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.errno(), Some(errno) if errno == Errno::ESRCH as i32 || errno == Errno::ENOENT as i32) => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    pub(super) fn observe_route(
        &mut self,
        side: Side,
        spec: &RouteSpec,
    ) -> Result<Presence, NlError> {
        let routes = self.dump_routes(side, Some(spec.family()), spec.table)?;
        Ok(route_presence(spec, &routes))
    }

    /// The kernel's answer to a route dump of one table, of one family or
    /// (`None`) of both, unfiltered here.
    pub(super) fn dump_route_messages(
        &mut self,
        side: Side,
        family: Option<Family>,
        table: u32,
    ) -> Result<Vec<RouteMessage>, NlError> {
        // With NETLINK_GET_STRICT_CHK the kernel honours rtm_table/RTA_TABLE
        // in a dump request and walks only that table. For one family it
        // answers ENOENT when the table does not exist (yet): no routes. An
        // AF_UNSPEC dump asks every family's table in one request, as
        // `ip route show table N` does (each family, multicast and MPLS
        // routing included, validates the same filter and skips a table it
        // does not have); `dump_routes` still keeps only the table's.
        let mut msg = RouteMessage::default();
        msg.header.address_family = family.map_or(AddressFamily::Unspec, address_family);
        msg.header.table = table_byte(table);
        msg.attributes.push(RouteAttribute::Table(table));
        let answer = match self.request(side, RouteNetlinkMessage::GetRoute(msg), Req::Dump) {
            Ok(answer) => answer,
            Err(e) if e.errno() == Some(Errno::ENOENT as i32) => return Ok(Vec::new()),
            Err(e)
                if family == Some(Family::V6) && e.errno() == Some(Errno::EAFNOSUPPORT as i32) =>
            {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        Ok(answer
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(route) => Some(route),
                _ => None,
            })
            .collect())
    }

    /// The routes of `table` of one family or (`None`) of both, one dump.
    pub(super) fn dump_routes(
        &mut self,
        side: Side,
        family: Option<Family>,
        table: u32,
    ) -> Result<Vec<KernelRoute>, NlError> {
        let mut routes = Vec::new();
        for msg in self.dump_route_messages(side, family, table)? {
            if let Some(route) = self.route_from_message(side, &msg)? {
                // The kernel filtered already; this guards against kernels
                // that ignore the filter (or dump every family, as a kernel
                // without IPv6 does for an AF_INET6 request).
                if route.spec.table == table && family.is_none_or(|f| route.spec.family() == f) {
                    routes.push(route);
                }
            }
        }
        Ok(routes)
    }

    pub(super) fn route_add_message(
        &mut self,
        side: Side,
        spec: &RouteSpec,
    ) -> Result<RouteMessage, NlError> {
        let family = spec.family();
        let mut msg = route_base_message(spec);
        if let Some(metric) = spec.metric {
            msg.attributes.push(RouteAttribute::Priority(metric));
        }
        match spec.kind {
            RouteKind::Unreachable => {
                if !spec.nexthops.is_empty() || spec.dev.is_some() {
                    return Err(NlError::Setup(Error::config(
                        "an unreachable route has no nexthops and no device",
                    )));
                }
                msg.header.kind = RouteType::Unreachable;
                msg.header.scope = RouteScope::Universe;
            }
            RouteKind::Unicast => {
                msg.header.kind = RouteType::Unicast;
                match spec.nexthops.as_slice() {
                    [] => {
                        let Some(dev) = &spec.dev else {
                            return Err(NlError::Setup(Error::config(
                                "a unicast route needs a nexthop or a device",
                            )));
                        };
                        msg.header.scope = RouteScope::Link;
                        let index = self.require_index(side, dev)?;
                        msg.attributes.push(RouteAttribute::Oif(index));
                    }
                    [one] => {
                        msg.header.scope = RouteScope::Universe;
                        msg.attributes.push(gateway_attribute(family, one.via)?);
                        if let Some(dev) = one.dev.as_ref().or(spec.dev.as_ref()) {
                            let index = self.require_index(side, dev)?;
                            msg.attributes.push(RouteAttribute::Oif(index));
                        }
                    }
                    many => {
                        msg.header.scope = RouteScope::Universe;
                        let mut hops = Vec::with_capacity(many.len());
                        for nh in many {
                            hops.push(self.multipath_hop(side, family, nh, spec.dev.as_ref())?);
                        }
                        msg.attributes.push(RouteAttribute::MultiPath(hops));
                    }
                }
            }
        }
        Ok(msg)
    }

    pub(super) fn multipath_hop(
        &mut self,
        side: Side,
        family: Family,
        nh: &NextHop,
        route_dev: Option<&String>,
    ) -> Result<RouteNextHop, NlError> {
        if !(1..=256).contains(&nh.weight) {
            return Err(NlError::Setup(Error::config(format!(
                "nexthop via {} has weight {}; weights are 1 to 256",
                nh.via, nh.weight
            ))));
        }
        let mut hop = RouteNextHop::default();
        // rtnh_hops is the weight minus one.
        hop.hops = (nh.weight - 1) as u8;
        if let Some(dev) = nh.dev.as_ref().or(route_dev) {
            hop.interface_index = self.require_index(side, dev)?;
        }
        hop.attributes.push(gateway_attribute(family, nh.via)?);
        Ok(hop)
    }

    /// A dumped route as a spec, `None` for what gwsteer cannot express
    /// (local, broadcast, multicast, blackhole… routes, cache entries).
    pub(super) fn route_from_message(
        &mut self,
        side: Side,
        msg: &RouteMessage,
    ) -> Result<Option<KernelRoute>, NlError> {
        let Some(family) = family_of(msg.header.address_family) else {
            return Ok(None);
        };
        let kind = match msg.header.kind {
            RouteType::Unicast => RouteKind::Unicast,
            RouteType::Unreachable => RouteKind::Unreachable,
            _ => return Ok(None),
        };
        if msg.header.flags.contains(RouteFlags::Cloned) {
            return Ok(None);
        }
        let mut dst_addr = None;
        let mut table = u32::from(msg.header.table);
        let mut metric = 0;
        let mut gateway = None;
        let mut oif = None;
        let mut multipath = None;
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Destination(addr) => dst_addr = route_ip(addr),
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Priority(p) => metric = *p,
                RouteAttribute::Gateway(addr) => gateway = route_ip(addr),
                RouteAttribute::Via(via) => gateway = via_ip(via),
                RouteAttribute::Oif(index) => oif = Some(*index),
                RouteAttribute::MultiPath(hops) => multipath = Some(hops),
                _ => {}
            }
        }
        let addr = dst_addr.unwrap_or_else(|| unspecified(family));
        let Ok(dst) = IpNet::new(addr, msg.header.destination_prefix_length) else {
            return Ok(None);
        };
        let mut nexthops = Vec::new();
        let mut dev = None;
        if kind == RouteKind::Unicast {
            if let Some(hops) = multipath {
                for hop in hops {
                    let via = hop
                        .attributes
                        .iter()
                        .find_map(|a| match a {
                            RouteAttribute::Gateway(addr) => route_ip(addr),
                            RouteAttribute::Via(via) => via_ip(via),
                            _ => None,
                        })
                        // A device-only nexthop; NextHop needs an address.
                        .unwrap_or_else(|| unspecified(family));
                    let hop_dev = match hop.interface_index {
                        0 => None,
                        index => Some(self.dev_name(side, index)?),
                    };
                    nexthops.push(NextHop {
                        via,
                        dev: hop_dev,
                        weight: u16::from(hop.hops) + 1,
                    });
                }
            } else {
                let oif_name = match oif {
                    Some(index) => Some(self.dev_name(side, index)?),
                    None => None,
                };
                match gateway {
                    Some(via) => nexthops.push(NextHop {
                        via,
                        dev: oif_name,
                        weight: 1,
                    }),
                    None => dev = oif_name,
                }
            }
        }
        // IPv6 reject routes hang off `lo`; that device is no part of them.
        Ok(Some(KernelRoute {
            spec: RouteSpec {
                dst,
                table,
                kind,
                nexthops,
                dev,
                metric: reported_metric(family, metric),
            },
            protocol: u8::from(msg.header.protocol),
            exact: msg.header.tos == 0 && msg.header.source_prefix_length == 0,
        }))
    }
}

/// What add and delete share: family, destination, table, protocol.
pub(super) fn route_base_message(spec: &RouteSpec) -> RouteMessage {
    let dst = spec.dst.trunc();
    let mut msg = RouteMessage::default();
    msg.header.address_family = address_family(spec.family());
    msg.header.destination_prefix_length = dst.prefix_len();
    msg.header.table = table_byte(spec.table);
    msg.header.protocol = RouteProtocol::from(RTPROT_GWSTEER);
    if dst.prefix_len() > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(dst.addr().into()));
    }
    msg.attributes.push(RouteAttribute::Table(spec.table));
    msg
}

pub(super) fn route_del_message(spec: &RouteSpec) -> RouteMessage {
    let family = spec.family();
    let mut msg = route_base_message(spec);
    // Any scope and any type: a route of ours whose kind drifted still goes.
    // The protocol keeps the kernel from deleting anyone else's route.
    msg.header.scope = RouteScope::NoWhere;
    msg.header.kind = RouteType::Unspec;
    // IPv4 treats metric 0 as "any metric"; IPv6 needs the metric it stored.
    let metric = effective_metric(family, spec.metric);
    if metric != 0 {
        msg.attributes.push(RouteAttribute::Priority(metric));
    }
    msg
}

pub(super) fn gateway_attribute(family: Family, via: IpAddr) -> Result<RouteAttribute, NlError> {
    match (family, via) {
        (Family::V4, IpAddr::V4(v4)) => Ok(RouteAttribute::Gateway(RouteAddress::Inet(v4))),
        (Family::V6, IpAddr::V6(v6)) => Ok(RouteAttribute::Gateway(RouteAddress::Inet6(v6))),
        // RFC 5549: an IPv4 route through an IPv6 neighbour.
        (Family::V4, IpAddr::V6(v6)) => Ok(RouteAttribute::Via(RouteVia::Inet6(v6))),
        (Family::V6, IpAddr::V4(v4)) => Err(NlError::Setup(Error::config(format!(
            "an IPv6 route cannot go via IPv4 gateway {v4}"
        )))),
    }
}

pub(crate) fn route_ip(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

pub(crate) fn via_ip(via: &RouteVia) -> Option<IpAddr> {
    match via {
        RouteVia::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteVia::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// The metric the kernel stores for `metric`.
pub(super) fn effective_metric(family: Family, metric: Option<u32>) -> u32 {
    match (family, metric.unwrap_or(0)) {
        (Family::V6, 0) => V6_DEFAULT_METRIC,
        (_, m) => m,
    }
}

/// A stored metric as a spec holds it: the family's default is `None`.
pub(super) fn reported_metric(family: Family, metric: u32) -> Option<u32> {
    (metric != effective_metric(family, None)).then_some(metric)
}

/// A dumped route.
pub(super) struct KernelRoute {
    pub(super) spec: RouteSpec,
    pub(super) protocol: u8,
    /// False for routes keyed on more than destination and metric (a source
    /// prefix or a TOS), which a [`RouteSpec`] never is.
    pub(super) exact: bool,
}

impl KernelRoute {
    pub(super) fn describe(&self) -> String {
        if self.protocol == RTPROT_GWSTEER {
            format!("{} proto gwsteer", self.spec)
        } else {
            let proto = match RouteProtocol::from(self.protocol) {
                RouteProtocol::Other(n) => n.to_string(),
                named => named.to_string(),
            };
            format!("{} proto {proto}, not gwsteer's", self.spec)
        }
    }
}

/// Whether the kernel's `found` does what `want` asks. A device left out of
/// `want` matches any; a single nexthop's weight means nothing.
/// Where `spec` stands among the routes of its table and family: missing,
/// there as gwsteer's, or something else in its place.
pub(super) fn route_presence(spec: &RouteSpec, routes: &[KernelRoute]) -> Presence {
    let family = spec.family();
    let dst = spec.dst.trunc();
    let metric = effective_metric(family, spec.metric);
    let same_place: Vec<&KernelRoute> = routes
        .iter()
        .filter(|r| {
            r.exact && r.spec.dst == dst && effective_metric(family, r.spec.metric) == metric
        })
        .collect();
    if same_place.is_empty() {
        return Presence::Missing;
    }
    if same_place
        .iter()
        .any(|r| r.protocol == RTPROT_GWSTEER && route_matches(spec, &r.spec))
    {
        return Presence::Present;
    }
    let found: Vec<String> = same_place.iter().map(|r| r.describe()).collect();
    Presence::Drifted(format!("expected {spec}; found {}", found.join("; ")))
}

pub(super) fn route_matches(want: &RouteSpec, found: &RouteSpec) -> bool {
    if want.kind != found.kind {
        return false;
    }
    if want.kind == RouteKind::Unreachable {
        return true;
    }
    let dev_ok = |want: Option<&String>, got: Option<&String>| want.is_none() || want == got;
    match want.nexthops.as_slice() {
        [] => found.nexthops.is_empty() && dev_ok(want.dev.as_ref(), found.dev.as_ref()),
        [one] => match found.nexthops.as_slice() {
            [got] => {
                got.via == one.via
                    && dev_ok(one.dev.as_ref().or(want.dev.as_ref()), got.dev.as_ref())
            }
            _ => false,
        },
        many => {
            if found.nexthops.len() != many.len() {
                return false;
            }
            let mut unused: Vec<&NextHop> = found.nexthops.iter().collect();
            // Nexthops naming a device first, so a device-less one cannot
            // take the kernel nexthop a more specific one needs.
            let mut wanted: Vec<&NextHop> = many.iter().collect();
            wanted.sort_by_key(|nh| nh.dev.is_none());
            wanted.into_iter().all(|nh| {
                let dev = nh.dev.as_ref().or(want.dev.as_ref());
                match unused.iter().position(|got| {
                    got.via == nh.via && got.weight == nh.weight && dev_ok(dev, got.dev.as_ref())
                }) {
                    Some(i) => {
                        unused.swap_remove(i);
                        true
                    }
                    None => false,
                }
            })
        }
    }
}
