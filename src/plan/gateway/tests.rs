use std::net::IpAddr;

use serde_json::{Value, json};

use super::*;
use crate::cni::result::PodAddress;
use crate::plan::Facts;

/// Facts with the nftables backend and these gateway facts.
fn nft(gateway: GatewayFacts) -> Facts {
    Facts {
        firewall: Some(crate::model::Backend::Nftables),
        gateway: Some(gateway),
        pod_link: None,
    }
}

fn gw_of(v: Value) -> GatewayNetwork {
    Config::from_value(&conf(v)).unwrap().gateway.unwrap()
}

fn conf(gw: Value) -> Value {
    json!({"cniVersion": "1.0.0", "name": "gw", "type": "gwsteer", "gatewayNetwork": gw})
}

fn pod(addr: &str) -> Pod {
    Pod {
        namespace: Some("default".into()),
        name: Some("p".into()),
        addresses: vec![PodAddress {
            address: addr.parse().unwrap(),
            gateway: None,
            interface: Some("net1".into()),
        }],
    }
}

fn planned(mut v: Value, facts: GatewayFacts) -> Plan {
    v["firewallBackend"] = json!("nftables");
    let c = Config::from_value(&v).unwrap();
    crate::plan::plan(&c, &pod("192.168.50.7/24"), &nft(facts))
}

fn texts(objs: &[Object]) -> Vec<String> {
    objs.iter().map(|o| o.to_string()).collect()
}

fn facts() -> GatewayFacts {
    GatewayFacts {
        ifname: "net1".into(),
        host_veth: Some("veth1234".into()),
        underlay: Some("eth0".into()),
        mtu: Some(1450),
        remotes: vec!["10.200.0.2".parse().unwrap(), "10.200.0.3".parse().unwrap()],
        local: None,
    }
}

#[test]
fn a_client_pod_on_a_unicast_vxlan() {
    let p = planned(
        conf(json!({"router": "192.168.50.254", "keep": ["10.96.0.0/12"],
            "vxlan": {"vni": 42, "remotes": ["10.200.0.1", "10.200.0.2", "10.200.0.3"]}})),
        facts(),
    );
    assert_eq!(
        texts(&p.pod_objects),
        vec![
            "link veth1234 mtu 1450",
            "pod link net1 mtu 1450",
            "pod inet route 10.96.0.0/12 table 254 (keep)",
            "pod inet route default table 254 via 192.168.50.254 dev net1",
        ]
    );
    let keys: Vec<String> = p.groups.iter().map(|g| g.key.to_string()).collect();
    assert_eq!(keys, vec!["exemption.192.168.50.0_24", "infra.gateway"]);
    assert!(GroupKey::GatewayInfra.is_infrastructure() && !p.groups[0].key.is_infrastructure());
    assert_eq!(
        texts(&p.groups[1].objects),
        vec![
            "link gwbr0 type bridge mtu 1450",
            "link gwvx0 type vxlan id 42 dev eth0 dstport 4789 mtu 1450 master gwbr0",
            "fdb 00:00:00:00:00:00 dev gwvx0 dst 10.200.0.2",
            "fdb 00:00:00:00:00:00 dev gwvx0 dst 10.200.0.3",
        ]
    );
}

#[test]
fn a_router_pod_on_a_multicast_vxlan() {
    let mut v = conf(json!({"vxlan": {"vni": 42, "group": "239.1.1.1", "port": 8472}}));
    v["args"] = json!({"cni": {"gwsteer": {"role": "router"}}});
    let p = planned(
        v,
        GatewayFacts {
            remotes: vec![],
            ..facts()
        },
    );
    assert_eq!(
        texts(&p.pod_objects),
        vec![
            "link veth1234 mtu 1450",
            "pod link net1 mtu 1450",
            "pod sysctl net.ipv4.ip_forward = 1",
            "pod nftables masquerade out of every interface but net1",
        ]
    );
    assert_eq!(
        texts(&p.groups[1].objects),
        vec![
            "link gwbr0 type bridge mtu 1450",
            "link gwvx0 type vxlan id 42 group 239.1.1.1 dev eth0 dstport 8472 mtu 1450 master gwbr0",
        ]
    );
}

#[test]
fn role_none_and_no_vxlan_leave_the_pod_alone() {
    let p = planned(
        conf(json!({"role": "none"})),
        GatewayFacts {
            ifname: "net1".into(),
            ..GatewayFacts::default()
        },
    );
    assert!(p.pod_objects.is_empty(), "{:?}", texts(&p.pod_objects));
    assert_eq!(texts(&p.groups[1].objects), vec!["link gwbr0 type bridge"]);
}

#[test]
fn new_objects_round_trip_through_json() {
    let p = planned(
        conf(json!({"router": "192.168.50.254", "keep": ["10.96.0.0/12"],
            "vxlan": {"vni": 42, "group": "239.1.1.1"}})),
        facts(),
    );
    for obj in p.pod_objects.iter().chain(&p.groups[1].objects) {
        let text = serde_json::to_string(obj).unwrap();
        let back: Object = serde_json::from_str(&text).unwrap();
        assert_eq!(&back, obj, "{text}");
    }
}

#[test]
fn routers_of_both_families_and_their_default_routes() {
    let one = |r: Value| gw_of(json!({"router": r}));
    let v4 = one(json!("192.168.50.254"));
    assert_eq!(
        v4.routers,
        vec!["192.168.50.254".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        v4.routes,
        vec!["0.0.0.0/0".parse::<ipnet::IpNet>().unwrap()]
    );
    let v6 = one(json!("fd00:50::fe"));
    assert_eq!(v6.routes, vec!["::/0".parse::<ipnet::IpNet>().unwrap()]);
    let both = one(json!(["fd00:50::fe", "192.168.50.254"]));
    assert_eq!(
        both.routers,
        vec![
            "fd00:50::fe".parse::<IpAddr>().unwrap(),
            "192.168.50.254".parse().unwrap()
        ]
    );
    assert_eq!(
        both.routes,
        vec![
            "::/0".parse::<ipnet::IpNet>().unwrap(),
            "0.0.0.0/0".parse().unwrap()
        ]
    );
    // A list of one is the same as the address.
    assert_eq!(one(json!(["192.168.50.254"])), v4);
    // Explicit routes of either family with a dual-stack router.
    let some = gw_of(json!({"router": ["192.168.50.254", "fd00:50::fe"],
        "routes": ["10.0.0.0/8", "2001:db8::/32"], "keep": ["fd00:96::/108", "10.96.0.0/12"]}));
    assert_eq!(some.routes.len(), 2);
    assert_eq!(some.keep.len(), 2);
}

fn facts_v6() -> GatewayFacts {
    GatewayFacts {
        ifname: "net1".into(),
        host_veth: Some("veth1234".into()),
        underlay: Some("under0".into()),
        mtu: Some(1430),
        remotes: vec!["fd00:200::2".parse().unwrap()],
        local: Some("fd00:200::1".parse().unwrap()),
    }
}

fn planned_for(mut v: Value, facts: GatewayFacts, pod: &Pod) -> Plan {
    v["firewallBackend"] = json!("nftables");
    let c = Config::from_value(&v).unwrap();
    crate::plan::plan(&c, pod, &nft(facts))
}

fn dual_stack_pod() -> Pod {
    let mut p = pod("192.168.50.7/24");
    p.addresses.push(PodAddress {
        address: "fd00:50::7/64".parse().unwrap(),
        gateway: None,
        interface: Some("net1".into()),
    });
    p
}

#[test]
fn a_dual_stack_client_on_an_ipv6_unicast_vxlan() {
    let p = planned_for(
        conf(json!({"router": ["192.168.50.254", "fd00:50::fe"],
            "keep": ["10.96.0.0/12", "fd00:96::/108"],
            "vxlan": {"vni": 42, "remotes": ["fd00:200::1", "fd00:200::2"]}})),
        facts_v6(),
        &dual_stack_pod(),
    );
    assert_eq!(
        texts(&p.pod_objects),
        vec![
            "link veth1234 mtu 1430",
            "pod link net1 mtu 1430",
            "pod inet route 10.96.0.0/12 table 254 (keep)",
            "pod inet6 route fd00:96::/108 table 254 (keep)",
            "pod inet route default table 254 via 192.168.50.254 dev net1",
            "pod inet6 route default table 254 via fd00:50::fe dev net1",
        ]
    );
    let infra = p
        .groups
        .iter()
        .find(|g| g.key == GroupKey::GatewayInfra)
        .unwrap();
    assert_eq!(
        texts(&infra.objects),
        vec![
            "link gwbr0 type bridge mtu 1430",
            "link gwvx0 type vxlan id 42 local fd00:200::1 dev under0 dstport 4789 mtu 1430 master gwbr0",
            "fdb 00:00:00:00:00:00 dev gwvx0 dst fd00:200::2",
        ]
    );
}

#[test]
fn an_ipv6_only_client_keeps_only_ipv6_and_a_router_forwards_both() {
    // IPv6-only router: the IPv4 keep CIDR has nothing to do.
    let mut p6 = pod("fd00:50::7/64");
    p6.addresses[0].interface = Some("net1".into());
    let p = planned_for(
        conf(
            json!({"router": "fd00:50::fe", "keep": ["10.96.0.0/12", "fd00:96::/108"],
            "vxlan": {"vni": 42, "group": "ff05::42"}}),
        ),
        GatewayFacts {
            remotes: vec![],
            ..facts_v6()
        },
        &p6,
    );
    assert_eq!(
        texts(&p.pod_objects),
        vec![
            "link veth1234 mtu 1430",
            "pod link net1 mtu 1430",
            "pod inet6 route fd00:96::/108 table 254 (keep)",
            "pod inet6 route default table 254 via fd00:50::fe dev net1",
        ]
    );
    let infra = p
        .groups
        .iter()
        .find(|g| g.key == GroupKey::GatewayInfra)
        .unwrap();
    assert_eq!(
        texts(&infra.objects),
        vec![
            "link gwbr0 type bridge mtu 1430",
            "link gwvx0 type vxlan id 42 group ff05::42 local fd00:200::1 dev under0 dstport 4789 mtu 1430 master gwbr0",
        ]
    );
    // A dual-stack router pod: both forwarding sysctls, one inet masquerade table.
    let mut v = conf(json!({"vxlan": {"vni": 42, "group": "ff05::42"}}));
    v["args"] = json!({"cni": {"gwsteer": {"role": "router"}}});
    let p = planned_for(v, facts_v6(), &dual_stack_pod());
    assert_eq!(
        texts(&p.pod_objects),
        vec![
            "link veth1234 mtu 1430",
            "pod link net1 mtu 1430",
            "pod sysctl net.ipv4.ip_forward = 1",
            "pod sysctl net.ipv6.conf.all.forwarding = 1",
            "pod nftables masquerade out of every interface but net1",
        ]
    );
}
