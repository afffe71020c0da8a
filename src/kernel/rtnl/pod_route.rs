//! Routes in the pod that take the slot of the pod's own (a client of the
//! gateway network), read before and put back on DEL.

use netlink_packet_route::route::RouteScope;

use super::*;
use crate::model::SavedRoute;

impl NetlinkKernel {
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
            .dump_route_messages(side, Some(family), spec.table)
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
