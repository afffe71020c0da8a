//! Questions to the kernel's FIB: `ip route get`.

use super::*;

/// What the kernel answers to `ip route get DST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAnswer {
    pub local: bool,
    pub gateway: Option<IpAddr>,
    pub oif: Option<String>,
    pub prefsrc: Option<IpAddr>,
}

impl NetlinkKernel {
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
}
