//! The gateway network's objects (`crate::model` links, MTUs, routes): netlink for links, FDB
//! entries, MTUs and pod routes; [`crate::kernel::podns`] for the pod's sysctls and
//! masquerade table. `capture` reads what DEL must put back.

use super::System;
use crate::error::{Error, Result};
use crate::kernel::podns;
use crate::model::{NextHop, Object, Presence, Side};

/// An uplink is enslaved and given back with what it had (its saved
/// addresses and routes), never without: see `Kernel::ensure_uplink` and
/// `Kernel::release_uplink`.
fn uplink_needs_saved_state(obj: &Object) -> Error {
    Error::kernel(format!(
        "{obj}: an uplink is changed only with its saved state"
    ))
}

impl System {
    pub(super) fn ensure_gateway(&mut self, obj: &Object) -> Result<()> {
        match obj {
            Object::Link { link } => self.net.ensure_link(link),
            Object::Address { dev, addr } => self.net.ensure_address(dev, addr),
            Object::VrfMasquerade { vrf, leg, uplinks } => {
                crate::kernel::nft::vrf_nat::ensure(vrf, leg, uplinks)
            }
            // Only with its saved addresses and routes: `Kernel::ensure_uplink`.
            Object::Uplink { .. } => Err(uplink_needs_saved_state(obj)),
            Object::Fdb { dev, dst } => self.net.ensure_fdb(dev, *dst),
            Object::Mtu {
                side, ifname, mtu, ..
            } => self.net.set_mtu(*side, ifname, *mtu),
            Object::PodRoute { route, keep, .. } => {
                if *keep && route.nexthops.is_empty() && route.dev.is_none() {
                    return Err(Error::kernel(format!(
                        "{obj}: the pod's previous path was never read (ADD reads it)"
                    )));
                }
                self.net.ensure_pod_route(route)
            }
            Object::PodSysctl { key, value, .. } => {
                podns::write_sysctl(self.pod_netns.as_deref(), key, value)
            }
            Object::PodMasquerade { ifname } => {
                podns::ensure_masquerade(self.pod_netns.as_deref(), ifname)
            }
            Object::PodConnmark {
                policy,
                ifname,
                mark,
                mask,
            } => podns::ensure_connmark(self.pod_netns.as_deref(), policy, ifname, *mark, *mask),
            other => Err(Error::kernel(format!(
                "{other}: not a gateway network object"
            ))),
        }
    }

    pub(super) fn remove_gateway(&mut self, obj: &Object) -> Result<()> {
        match obj {
            Object::Link { link } => self.net.remove_link(link),
            Object::Address { dev, addr } => self.net.remove_address(dev, addr),
            Object::VrfMasquerade { vrf, .. } => crate::kernel::nft::vrf_nat::remove(vrf),
            Object::Uplink { .. } => Err(uplink_needs_saved_state(obj)),
            Object::Fdb { dev, dst } => self.net.remove_fdb(dev, *dst),
            Object::Mtu {
                side,
                ifname,
                mtu,
                previous,
            } => {
                let Some(previous) = previous else {
                    return Ok(());
                };
                // Only our value is put back: a device someone changed
                // since (or that is gone) is left as it is.
                match self.net.link_mtu(*side, ifname)? {
                    Some(now) if now == *mtu && now != *previous => {
                        self.net.set_mtu(*side, ifname, *previous)
                    }
                    _ => Ok(()),
                }
            }
            Object::PodRoute {
                route, previous, ..
            } => self.net.remove_pod_route(route, previous.as_ref()),
            Object::PodSysctl {
                key,
                value,
                previous,
            } => {
                let Some(previous) = previous else {
                    return Ok(());
                };
                let netns = self.pod_netns.clone();
                if previous != value && podns::read_sysctl(netns.as_deref(), key)? == *value {
                    podns::write_sysctl(netns.as_deref(), key, previous)?;
                }
                Ok(())
            }
            Object::PodMasquerade { ifname } => {
                podns::remove_masquerade(self.pod_netns.as_deref(), ifname)
            }
            Object::PodConnmark { policy, ifname, .. } => {
                podns::remove_connmark(self.pod_netns.as_deref(), policy, ifname)
            }
            _ => Ok(()),
        }
    }

    pub(super) fn observe_gateway(&mut self, obj: &Object) -> Result<Presence> {
        match obj {
            Object::Link { link } => self.net.observe_link(link),
            Object::Address { dev, addr } => self.net.observe_address(dev, addr),
            Object::VrfMasquerade { vrf, .. } => crate::kernel::nft::vrf_nat::observe(vrf),
            Object::Uplink { dev, vrf, .. } => self.net.observe_uplink(dev, vrf),
            Object::Fdb { dev, dst } => self.net.observe_fdb(dev, *dst),
            Object::Mtu {
                side, ifname, mtu, ..
            } => Ok(match self.net.link_mtu(*side, ifname)? {
                None => Presence::Missing,
                Some(now) if now == *mtu => Presence::Present,
                Some(now) => Presence::Drifted(format!("mtu {now}")),
            }),
            Object::PodRoute { route, .. } => self.net.observe_pod_route(route),
            Object::PodSysctl { key, value, .. } => {
                podns::observe_sysctl(self.pod_netns.as_deref(), key, value)
            }
            Object::PodMasquerade { ifname } => {
                podns::observe_masquerade(self.pod_netns.as_deref(), ifname)
            }
            Object::PodConnmark {
                policy,
                ifname,
                mark,
                mask,
            } => podns::observe_connmark(self.pod_netns.as_deref(), policy, ifname, *mark, *mask),
            other => Err(Error::kernel(format!(
                "{other}: not a gateway network object"
            ))),
        }
    }

    /// Reads what DEL must restore, before ADD changes anything.
    pub(super) fn capture_gateway(&mut self, obj: &Object) -> Result<Option<Object>> {
        Ok(Some(match obj {
            Object::Mtu {
                side,
                ifname,
                mtu,
                previous: None,
            } => {
                let Some(now) = self.net.link_mtu(*side, ifname)? else {
                    log::warn!("{obj}: no such device; its MTU is left alone");
                    return Ok(None);
                };
                Object::Mtu {
                    side: *side,
                    ifname: ifname.clone(),
                    mtu: *mtu,
                    previous: Some(now),
                }
            }
            Object::PodRoute {
                route,
                previous: None,
                keep: false,
            } => {
                let previous = self
                    .net
                    .route_in_slot(Side::Pod, route)?
                    .filter(|r| r.protocol != crate::model::RTPROT_GWSTEER);
                Object::PodRoute {
                    route: route.clone(),
                    previous,
                    keep: false,
                }
            }
            Object::PodRoute {
                route, keep: true, ..
            } if route.nexthops.is_empty() && route.dev.is_none() => {
                if let Some(there) = self.net.route_in_slot(Side::Pod, route)? {
                    log::debug!("keep {}: the pod has {there} already", route.dst);
                    return Ok(None);
                }
                let Some(path) = self.net.route_get(Side::Pod, route.dst.network())? else {
                    log::info!(
                        "keep {}: the pod has no route there; nothing to keep",
                        route.dst
                    );
                    return Ok(None);
                };
                if path.local {
                    return Ok(None);
                }
                let mut route = route.clone();
                match path.gateway {
                    Some(via) => route.nexthops.push(NextHop {
                        via,
                        dev: path.oif,
                        weight: 1,
                    }),
                    None => route.dev = path.oif,
                }
                Object::PodRoute {
                    route,
                    previous: None,
                    keep: true,
                }
            }
            Object::PodSysctl {
                key,
                value,
                previous: None,
            } => Object::PodSysctl {
                key: key.clone(),
                value: value.clone(),
                previous: Some(podns::read_sysctl(self.pod_netns.as_deref(), key)?),
            },
            other => other.clone(),
        }))
    }
}
