//! Read-only probes of the node that planning needs: the gateway network's
//! underlay, MTU, VXLAN source and which `remotes` are this node's own; the
//! kernel features a section needs. They fill [`plan::Facts`]; the plan
//! itself never reads the kernel, and the config is never rewritten.

use std::net::{IpAddr, Ipv6Addr};

use serde_json::Value;

use crate::cni::Env;
use crate::config::gateway::{Bum, Vxlan};
use crate::config::{Config, Match, SideChoice};
use crate::error::{Error, Result, code};
use crate::kernel::rtnl::{NetlinkKernel, V6Address};
use crate::model::{Backend, Family, Side};
use crate::plan::{self, GatewayFacts};

/// What the node says for this attachment. `firewall` is the backend the
/// caller opened (when the config needs one).
/// A probe that needs netlink opens it in `net` (for the node and, lazily,
/// the pod's `CNI_NETNS`), where the caller finds it to make the changes
/// with: one set of sockets per process, not two.
pub fn collect(
    config: &Config,
    env: &Env,
    firewall: Option<Backend>,
    net: &mut Option<NetlinkKernel>,
) -> Result<plan::Facts> {
    Ok(plan::Facts {
        firewall,
        gateway: gateway(config, env, net)?,
        pod_link: pod_link(config, env, net)?,
    })
}

/// The connection in `slot`, opened on first use.
fn netlink<'a>(env: &Env, slot: &'a mut Option<NetlinkKernel>) -> Result<&'a mut NetlinkKernel> {
    Ok(match slot {
        Some(net) => net,
        None => slot.insert(NetlinkKernel::new(env.netns.clone())?),
    })
}

/// Whether prevResult lists an interface outside the sandbox (a host-side
/// veth, a bridge): `None` when it lists no interfaces at all.
fn lists_host_side(prev: Option<&Value>) -> Option<bool> {
    let list = prev?["interfaces"].as_array().filter(|l| !l.is_empty())?;
    Some(
        list.iter()
            .any(|i| i["sandbox"].as_str().is_none_or(str::is_empty)),
    )
}

/// Pod interfaces of these kinds have a peer on the host side: their
/// traffic reaches the node through it.
const KINDS_WITH_HOST_PEER: &[&str] = &["veth", "netkit"];

/// The attachment's pod interface, when a steering policy selects the
/// pod: whether it has a host-side peer and, when a policy may steer on
/// the pod side, its index there. prevResult answers for the common case
/// (a primary that reports its host-side veth); otherwise the kind of the
/// pod's interface does (one `RTM_GETLINK` in the pod's namespace): veth
/// and netkit have a host-side peer, macvlan, ipvlan, a moved device or a
/// VF do not.
fn pod_link(
    config: &Config,
    env: &Env,
    slot: &mut Option<NetlinkKernel>,
) -> Result<Option<plan::PodLink>> {
    let probe_pod = plan::Pod {
        namespace: env.pod_namespace.clone(),
        ..plan::Pod::default()
    };
    let selected = plan::selected(config, &probe_pod);
    if selected.is_empty() {
        return Ok(None);
    }
    let mut link = plan::PodLink {
        ifname: env.ifname.clone(),
        ..plan::PodLink::default()
    };
    let host_side = lists_host_side(config.prev_result.as_ref());
    let forced_pod = selected.iter().any(|p| p.side == SideChoice::Pod);
    if host_side == Some(true) && !forced_pod {
        return Ok(Some(link));
    }
    if env.netns.is_none() {
        return Ok(Some(link));
    }
    let probed = netlink(env, slot).and_then(|net| {
        net.get_link(Side::Pod, &env.ifname)?.ok_or_else(|| {
            Error::kernel(format!(
                "no device named {} in the pod's network namespace (did the primary plugin make it?)",
                env.ifname
            ))
        })
    });
    let state = match probed {
        Ok(state) => state,
        // Only a policy forced to the pod side needs the answer; `auto`
        // steers on the node, as it would without the probe.
        Err(e) if !forced_pod => {
            log::warn!(
                "reading {} in the pod to choose the steering side: {e}; steering on the node side",
                env.ifname
            );
            return Ok(Some(link));
        }
        Err(e) => return Err(e),
    };
    link.index = Some(state.index);
    if host_side != Some(true) {
        let ifname = &env.ifname;
        link.peerless = match state.kind.as_deref() {
            Some(kind) if KINDS_WITH_HOST_PEER.contains(&kind) => None,
            Some(kind) => Some(format!(
                "{ifname} is a {kind} device, with no host-side peer"
            )),
            None => Some(format!(
                "{ifname} is a device of no kind (a moved host device or a VF), with no host-side peer"
            )),
        };
    }
    // Only a connmark policy that steers in the pod can meet another
    // attachment's mark there (plan::mark_conflict): the pod's rules are
    // read for nothing else.
    if selected.iter().any(|p| {
        matches!(p.matcher, Match::Connmark { .. })
            && plan::pod::side_of(p, Some(&link)) == Side::Pod
    }) {
        link.fwmark_rules = netlink(env, slot)?.pod_fwmark_rules()?;
    }
    Ok(Some(link))
}

/// A probe destination per family: nothing routes it specially, so the
/// route to it is the default route (`ip route get 192.0.2.1`).
fn default_route_probe(family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::from([192, 0, 2, 1]),
        Family::V6 => "2001:db8::1".parse().expect("an IPv6 address"),
    }
}

/// The host end of the pod's veth in a prevResult: an interface outside
/// the sandbox that is not the bridge.
pub fn host_veth(prev: Option<&Value>, bridge: &str) -> Option<String> {
    prev?["interfaces"]
        .as_array()?
        .iter()
        .filter(|i| i["sandbox"].as_str().is_none_or(str::is_empty))
        .filter_map(|i| i["name"].as_str())
        .find(|name| *name != bridge)
        .map(str::to_string)
}

/// The gateway network's facts (`None` when the config has none). Errors
/// for what the node makes impossible (an MTU over the underlay's) are
/// config errors.
fn gateway(
    config: &Config,
    env: &Env,
    slot: &mut Option<NetlinkKernel>,
) -> Result<Option<GatewayFacts>> {
    let Some(gw) = &config.gateway else {
        return Ok(None);
    };
    let mut facts = GatewayFacts {
        ifname: env.ifname.clone(),
        host_veth: host_veth(config.prev_result.as_ref(), &gw.bridge),
        ..GatewayFacts::default()
    };
    let mut underlay_mtu = None;
    if let Some(vx) = &gw.vxlan {
        let net = netlink(env, slot)?;
        let family = vx.bum.family();
        // The source the kernel would choose towards the first remote that
        // is not this node (an IPv6 underlay's VXLAN prefers it).
        let mut first_prefsrc = None;
        if let Bum::Remotes(remotes) = &vx.bum {
            for remote in remotes {
                match net.route_get(Side::Node, *remote)? {
                    Some(answer) if answer.local => {
                        log::debug!("vxlan remote {remote} is this node: skipped");
                    }
                    answer => {
                        if facts.remotes.is_empty() {
                            first_prefsrc = answer.and_then(|a| a.prefsrc);
                        }
                        facts.remotes.push(*remote);
                    }
                }
            }
        }
        let underlay = match &vx.underlay {
            Some(dev) => dev.clone(),
            None => net
                .route_get(Side::Node, default_route_probe(family))?
                .and_then(|a| a.oif)
                .ok_or_else(|| {
                    Error::config(format!(
                        "gatewayNetwork.vxlan.underlay: not given, and the node has no {family} default route to take it from"
                    ))
                })?,
        };
        let mtu = net.link_mtu(Side::Node, &underlay)?.ok_or_else(|| {
            Error::config(format!(
                "gatewayNetwork.vxlan.underlay: the node has no device named {underlay}"
            ))
        })?;
        underlay_mtu = Some(mtu);
        if family == Family::V6 {
            facts.local = Some(IpAddr::V6(vxlan_source_v6(
                net,
                vx,
                &underlay,
                first_prefsrc,
            )?));
        }
        facts.underlay = Some(underlay);
    }
    facts.mtu = gw.mtu_for(underlay_mtu).map_err(|e| {
        if let Some(dev) = &facts.underlay {
            Error::new(
                code::INVALID_CONFIG,
                e.msg.replace("(default route device)", dev),
            )
        } else {
            e
        }
    })?;
    Ok(Some(facts))
}

/// The source address of a VXLAN over an IPv6 underlay: a global,
/// usable (not tentative, deprecated or failed) IPv6 address of the
/// underlay. The one the VXLAN has already if it still qualifies (a new
/// one would re-make the VXLAN), else `towards_remote` (the one the kernel
/// chose towards the first remote), else the first stable one.
fn vxlan_source_v6(
    net: &mut NetlinkKernel,
    vx: &Vxlan,
    underlay: &str,
    towards_remote: Option<IpAddr>,
) -> Result<Ipv6Addr> {
    let addresses = net.ipv6_addresses(underlay)?.ok_or_else(|| {
        Error::config(format!(
            "gatewayNetwork.vxlan.underlay: the node has no device named {underlay}"
        ))
    })?;
    let mut prefer = Vec::new();
    if let Some(IpAddr::V6(now)) = net
        .get_link(Side::Node, &vx.name)?
        .and_then(|st| st.vxlan)
        .and_then(|v| v.local)
    {
        prefer.push(now);
    }
    if let Some(IpAddr::V6(src)) = towards_remote {
        prefer.push(src);
    }
    pick_source_v6(&addresses, &prefer).map_err(|why| {
        let given = if vx.underlay.is_some() {
            String::new()
        } else {
            " (the device of the node's IPv6 default route)".to_string()
        };
        let tentative = addresses.iter().any(|a| a.global && a.tentative);
        Error::new(
            if tentative {
                code::TRY_AGAIN_LATER
            } else {
                code::INVALID_CONFIG
            },
            format!(
                "gatewayNetwork.vxlan.underlay: {underlay}{given} has no usable global IPv6 address to send the VXLAN from ({why}){}",
                if tentative {
                    "; its address is still tentative (duplicate address detection): try again in a moment"
                } else {
                    "; give the underlay a global IPv6 address, or use IPv4 remotes or group"
                }
            ),
        )
    })
}

/// Pure: the address [`vxlan_source_v6`] picks, or what the device has.
pub fn pick_source_v6(
    addresses: &[V6Address],
    prefer: &[Ipv6Addr],
) -> std::result::Result<Ipv6Addr, String> {
    let usable: Vec<&V6Address> = addresses
        .iter()
        .filter(|a| a.global && !a.tentative && !a.dadfailed && !a.deprecated)
        .collect();
    if let Some(p) = prefer.iter().find(|p| usable.iter().any(|a| a.addr == **p)) {
        return Ok(*p);
    }
    if let Some(a) = usable
        .iter()
        .find(|a| !a.temporary)
        .or_else(|| usable.first())
    {
        return Ok(a.addr);
    }
    if addresses.is_empty() {
        return Err("it has no IPv6 address at all".to_string());
    }
    let seen: Vec<String> = addresses.iter().map(V6Address::to_string).collect();
    Err(format!("it has {}", seen.join(", ")))
}

/// ADD: a `vrf` section needs kernel VRF (103 naming `CONFIG_NET_VRF`).
pub fn admit(config: &Config) -> Result<()> {
    if config.vrf.is_none() {
        return Ok(());
    }
    crate::kernel::require_vrf()
}

/// STATUS: 50 on a kernel without VRF.
pub fn status(config: &Config) -> Result<()> {
    if config.vrf.is_none() {
        return Ok(());
    }
    crate::kernel::require_vrf().map_err(|e| {
        Error::new(code::NOT_AVAILABLE, format!("vrf: {}", e.msg)).with_details(e.details)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn host_side_interfaces_are_those_outside_the_sandbox() {
        let bridge = json!({"interfaces": [
            {"name": "cni0"}, {"name": "veth1", "sandbox": ""},
            {"name": "eth0", "sandbox": "/run/netns/p"}]});
        assert_eq!(lists_host_side(Some(&bridge)), Some(true));
        let macvlan = json!({"interfaces": [{"name": "net1", "sandbox": "/run/netns/p"}]});
        assert_eq!(lists_host_side(Some(&macvlan)), Some(false));
        assert_eq!(lists_host_side(Some(&json!({"interfaces": []}))), None);
        assert_eq!(lists_host_side(Some(&json!({"ips": []}))), None);
        assert_eq!(lists_host_side(None), None);
    }

    #[test]
    fn the_host_veth_is_the_primarys_interface_outside_the_pod() {
        let prev = json!({"interfaces": [
            {"name": "gwbr0", "mac": "aa:aa:aa:aa:aa:01"},
            {"name": "veth42", "mac": "aa:aa:aa:aa:aa:02"},
            {"name": "net1", "mac": "aa:aa:aa:aa:aa:03", "sandbox": "/run/netns/p"}
        ]});
        assert_eq!(host_veth(Some(&prev), "gwbr0"), Some("veth42".into()));
        assert_eq!(host_veth(None, "gwbr0"), None);
    }

    fn v6(addr: &str, global: bool) -> V6Address {
        V6Address {
            addr: addr.parse().unwrap(),
            prefix_len: 64,
            global,
            tentative: false,
            dadfailed: false,
            deprecated: false,
            temporary: false,
        }
    }

    #[test]
    fn the_ipv6_source_is_a_usable_global_address_of_the_underlay() {
        let ll = v6("fe80::1", false);
        let a = v6("fd00:200::1", true);
        let b = v6("2001:db8::1", true);
        let ip = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        // Link-local never; the first global one.
        assert_eq!(pick_source_v6(&[ll, a, b], &[]), Ok(ip("fd00:200::1")));
        // The VXLAN's current one (or the kernel's choice) wins while usable.
        assert_eq!(
            pick_source_v6(&[ll, a, b], &[ip("2001:db8::1")]),
            Ok(ip("2001:db8::1"))
        );
        assert_eq!(
            pick_source_v6(&[ll, a], &[ip("2001:db8::1")]),
            Ok(ip("fd00:200::1"))
        );
        // Tentative, deprecated, failed: unusable; temporary: only as a last resort.
        let t = V6Address {
            tentative: true,
            ..a
        };
        let d = V6Address {
            deprecated: true,
            ..b
        };
        let f = V6Address {
            dadfailed: true,
            ..a
        };
        let tmp = V6Address {
            temporary: true,
            ..b
        };
        assert_eq!(pick_source_v6(&[tmp, a], &[]), Ok(ip("fd00:200::1")));
        assert_eq!(pick_source_v6(&[t, tmp], &[]), Ok(ip("2001:db8::1")));
        let why = pick_source_v6(&[ll, t, d, f], &[ip("fd00:200::1")]).unwrap_err();
        assert_eq!(
            why,
            "it has fe80::1/64 (not global), fd00:200::1/64 tentative, 2001:db8::1/64 deprecated, fd00:200::1/64 dadfailed"
        );
        assert_eq!(
            pick_source_v6(&[], &[]).unwrap_err(),
            "it has no IPv6 address at all"
        );
    }
}
