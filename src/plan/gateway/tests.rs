use serde_json::{Value, json};

use super::*;
use crate::engine::capture;
use crate::error::{Error, Result, code};
use crate::facts::{host_veth, pick_source_v6};
use crate::kernel::Kernel;
use crate::model::{Record, SCHEMA};
use crate::netlink::V6Address;
use crate::plan::Facts;
use std::net::Ipv6Addr;

/// Facts with the nftables backend and these gateway facts.
fn nft(gateway: GatewayFacts) -> Facts {
    Facts {
        firewall: Some(crate::firewall::Backend::Nftables),
        gateway: Some(gateway),
    }
}
use crate::cni::result::PodAddress;
use crate::config::gateway::Vxlan;

fn conf(gw: Value) -> Value {
    json!({"cniVersion": "1.0.0", "name": "gw", "type": "gwsteer", "gatewayNetwork": gw})
}

fn parse(v: Value) -> Result<Config> {
    Config::from_value(&v)
}

fn err(v: Value) -> Error {
    parse(v).expect_err("config must be refused")
}

#[test]
fn defaults_follow_the_contract() {
    let c = parse(conf(json!({"router": "192.168.50.254"}))).unwrap();
    let gw = c.gateway.unwrap();
    assert_eq!(gw.bridge, "gwbr0");
    assert_eq!(gw.vxlan, None);
    assert_eq!(gw.mtu, None);
    assert_eq!(gw.role, Role::Client);
    assert_eq!(
        gw.routes,
        vec!["0.0.0.0/0".parse::<ipnet::IpNet>().unwrap()]
    );
    assert!(gw.keep.is_empty());
    assert!(gw.masquerade);
    // The masquerade exemption is on by default, for the pod's subnet.
    assert_eq!(
        c.masquerade_exemption,
        Some(crate::config::Exemption::default())
    );
}

#[test]
fn vxlan_settings_parse() {
    let c = parse(conf(json!({
        "router": "192.168.50.254",
        "vxlan": {"vni": 42, "remotes": ["10.200.0.1", "10.200.0.2"], "underlay": "under0"}
    })))
    .unwrap();
    assert_eq!(
        c.gateway.unwrap().vxlan,
        Some(Vxlan {
            name: "gwvx0".into(),
            vni: 42,
            bum: Bum::Remotes(vec![
                "10.200.0.1".parse().unwrap(),
                "10.200.0.2".parse().unwrap()
            ]),
            port: 4789,
            underlay: Some("under0".into()),
        })
    );
}

#[test]
fn errors_name_the_field() {
    let cases = [
        (
            json!({"router": "192.168.50.254", "vxlan": {"vni": 0, "group": "239.1.1.1"}}),
            "gatewayNetwork.vxlan.vni: 0 is out of range 1…16777215",
        ),
        (
            json!({"router": "192.168.50.254", "vxlan": {"vni": 16777216, "group": "239.1.1.1"}}),
            "gatewayNetwork.vxlan.vni: 16777216 is out of range",
        ),
        (
            json!({"router": "192.168.50.254", "vxlan": {"vni": 1}}),
            "gatewayNetwork.vxlan: give exactly one of group",
        ),
        (
            json!({"router": "192.168.50.254", "vxlan": {"vni": 1, "group": "239.1.1.1", "remotes": ["10.0.0.1"]}}),
            "gatewayNetwork.vxlan: give exactly one of group",
        ),
        (
            json!({"router": "192.168.50.254", "vxlan": {"vni": 1, "group": "10.1.1.1"}}),
            "gatewayNetwork.vxlan.group: 10.1.1.1 is not a multicast address",
        ),
        (
            json!({"router": "192.168.50.254", "vxlan": {"vni": 1, "remotes": []}}),
            "gatewayNetwork.vxlan.remotes: at least one remote",
        ),
        (
            json!({"router": "192.168.50.254", "vxlan": {"vni": 1, "remotes": ["10.0.0.1", "fd00::1"]}}),
            "gatewayNetwork.vxlan.remotes[1]: fd00::1 is not of the same address family",
        ),
        (
            json!({"router": "192.168.50.254", "vxlan": {"vni": 1, "group": "239.1.1.1", "name": "gwbr0"}}),
            "gatewayNetwork.vxlan.name: \"gwbr0\" is the bridge's name too",
        ),
        (
            json!({"router": "192.168.50.254", "mtu": 100}),
            "gatewayNetwork.mtu: 100 is out of range 576…65535",
        ),
        (json!({}), "gatewayNetwork.router: required for client pods"),
        (
            json!({"router": "300.1.1.1"}),
            "gatewayNetwork.router: \"300.1.1.1\" is not an IP address",
        ),
        (
            json!({"router": "192.168.50.254", "routes": ["::/0"]}),
            "gatewayNetwork.routes[0]: ::/0 is not of the router's address family",
        ),
        (
            json!({"router": "fd00:50::fe", "vxlan": {"vni": 1, "remotes": ["fd00:200::1", "10.200.0.2"]}}),
            "gatewayNetwork.vxlan.remotes[1]: 10.200.0.2 is not of the same address family as fd00:200::1",
        ),
        (
            json!({"router": "fd00:50::fe", "vxlan": {"vni": 1, "remotes": ["fd00:200::1", "ff05::1"]}}),
            "gatewayNetwork.vxlan.remotes[1]: ff05::1 is not a node's unicast address",
        ),
        (
            json!({"router": "fd00:50::fe", "vxlan": {"vni": 1, "group": "fd00::1"}}),
            "gatewayNetwork.vxlan.group: fd00::1 is not a multicast address",
        ),
        (
            json!({"router": "fd00:50::fe", "routes": ["0.0.0.0/0"]}),
            "gatewayNetwork.routes[0]: 0.0.0.0/0 is not of the router's address family (fd00:50::fe); give the router's IPv4 address too",
        ),
        (
            json!({"router": ["192.168.50.254", "192.168.50.253"]}),
            "gatewayNetwork.router[1]: 192.168.50.253 is a second IPv4 router address",
        ),
        (
            json!({"router": ["192.168.50.254", "fd00:50::fe", "fd00:50::fd"]}),
            "gatewayNetwork.router[2]: fd00:50::fd is a second IPv6 router address",
        ),
        (
            json!({"router": ["192.168.50.254", "fd00:50::g"]}),
            "gatewayNetwork.router[1]: \"fd00:50::g\" is not an IP address",
        ),
        (
            json!({"router": []}),
            "gatewayNetwork.router: at least one address is required",
        ),
        (
            json!({"router": 7}),
            "gatewayNetwork.router: expected an IP address or a list of one per address family, found 7",
        ),
        (
            json!({"router": ["192.168.50.254", "ff02::1"]}),
            "gatewayNetwork.router[1]: ff02::1 cannot be a router's address",
        ),
        (
            json!({"router": ["192.168.50.254", "fd00:50::fe"], "keep": ["::/0"]}),
            "gatewayNetwork.keep[0]: ::/0 is in routes too",
        ),
        (
            json!({"router": "192.168.50.254", "keep": ["0.0.0.0/0"]}),
            "gatewayNetwork.keep[0]: 0.0.0.0/0 is in routes too",
        ),
        (
            json!({"router": "192.168.50.254", "role": "gateway"}),
            "gatewayNetwork.role: \"gateway\" is not one of client, router, none",
        ),
        (
            json!({"router": "192.168.50.254", "bridge": "a/b"}),
            "gatewayNetwork.bridge: \"a/b\" is not an interface name",
        ),
    ];
    for (gw, want) in cases {
        let e = err(conf(gw.clone()));
        assert!(e.msg.starts_with(want), "{gw}: {}", e.msg);
        assert_eq!(e.code, code::INVALID_CONFIG, "{gw}");
    }
    let e = err(conf(
        json!({"router": "192.168.50.254", "vxlan": {"vni": 1, "group": "239.1.1.1", "gruop": 1}}),
    ));
    assert_eq!(e.code, code::UNSUPPORTED_FIELD, "{}", e.msg);
}

#[test]
fn routers_need_no_router_address_and_cni_args_pick_the_role() {
    assert!(parse(conf(json!({"role": "router"}))).is_ok());
    assert!(parse(conf(json!({"role": "none"}))).is_ok());
    let mut v = conf(json!({}));
    v["args"] = json!({"cni": {"gwsteer": {"role": "router"}}});
    assert!(parse(v).is_ok());
    let mut v = conf(json!({"role": "router"}));
    v["args"] = json!({"cni": {"gwsteer": {"role": "client"}}});
    assert!(err(v).msg.contains("router: required for client pods"));
}

#[test]
fn the_exemption_can_be_set_or_switched_off() {
    let mut v = conf(json!({"router": "192.168.50.254", "masqueradeExemption": false}));
    assert_eq!(parse(v.clone()).unwrap().masquerade_exemption, None);
    v["gatewayNetwork"]["masqueradeExemption"] =
        json!({"cidrs": ["192.168.50.0/24"], "chains": ["KIND-MASQ-AGENT"]});
    let ex = parse(v.clone()).unwrap().masquerade_exemption.unwrap();
    assert_eq!(ex.chains, vec!["KIND-MASQ-AGENT".to_string()]);
    v["masqueradeExemption"] = json!(true);
    assert!(err(v).msg.contains("set masqueradeExemption in one place"));
    let mut v = conf(json!({"router": "192.168.50.254"}));
    v["firewallBackend"] = json!("none");
    assert_eq!(parse(v).unwrap().masquerade_exemption, None);
}

fn gw_of(v: Value) -> GatewayNetwork {
    parse(conf(v)).unwrap().gateway.unwrap()
}

#[test]
fn auto_mtu_is_the_underlays_less_the_encapsulation() {
    let v4 = gw_of(json!({"router": "192.168.50.254", "vxlan": {"vni": 7, "group": "239.1.1.1"}}));
    assert_eq!(v4.mtu_for(Some(1500)).unwrap(), Some(1450));
    assert_eq!(v4.mtu_for(Some(9000)).unwrap(), Some(8950));
    let v6 = gw_of(json!({"router": "192.168.50.254", "vxlan": {"vni": 7, "group": "ff05::42"}}));
    assert_eq!(v6.mtu_for(Some(1500)).unwrap(), Some(1430));
    // An explicit MTU wins when it fits, is a config error when it cannot.
    let explicit = gw_of(
        json!({"router": "192.168.50.254", "mtu": 1400, "vxlan": {"vni": 7, "group": "239.1.1.1"}}),
    );
    assert_eq!(explicit.mtu_for(Some(1500)).unwrap(), Some(1400));
    let e = explicit.mtu_for(Some(1420)).unwrap_err();
    assert_eq!(e.code, code::INVALID_CONFIG);
    assert!(
        e.msg.starts_with("gatewayNetwork.mtu: 1400 is impossible"),
        "{}",
        e.msg
    );
    // Without a VXLAN: the explicit MTU, or leave MTUs alone.
    assert_eq!(
        gw_of(json!({"router": "192.168.50.254"}))
            .mtu_for(None)
            .unwrap(),
        None
    );
    assert_eq!(
        gw_of(json!({"router": "192.168.50.254", "mtu": 1400}))
            .mtu_for(None)
            .unwrap(),
        Some(1400)
    );
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
    let keys: Vec<&str> = p.groups.iter().map(|g| g.key.as_str()).collect();
    assert_eq!(keys, vec!["exemption.192.168.50.0_24", "infra.gateway"]);
    assert!(is_infrastructure("infra.gateway") && !is_infrastructure(&p.groups[0].key));
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
fn capture_reuses_an_earlier_records_values() {
    struct Reader;
    impl Kernel for Reader {
        fn ensure(&mut self, _: &Object) -> Result<()> {
            unreachable!()
        }
        fn remove(&mut self, _: &Object) -> Result<()> {
            unreachable!()
        }
        fn observe(&mut self, _: &Object) -> Result<crate::objects::Presence> {
            unreachable!()
        }
        fn owned_rules(&mut self, _: &[u32]) -> Result<Vec<crate::objects::RuleSpec>> {
            unreachable!()
        }
        fn table_routes(&mut self, _: u32) -> Result<Vec<(RouteSpec, u8)>> {
            unreachable!()
        }
        fn capture(&mut self, obj: &Object) -> Result<Option<Object>> {
            Ok(Some(match obj {
                Object::Mtu {
                    side, ifname, mtu, ..
                } => Object::Mtu {
                    side: *side,
                    ifname: ifname.clone(),
                    mtu: *mtu,
                    previous: Some(1450),
                },
                other => other.clone(),
            }))
        }
    }
    let planned = vec![Object::Mtu {
        side: Side::Pod,
        ifname: "net1".into(),
        mtu: 1450,
        previous: None,
    }];
    // First ADD: read from the kernel.
    let first = capture(&mut Reader, &planned, None).unwrap();
    assert_eq!(first[0].to_string(), "pod link net1 mtu 1450 (was 1450)");
    // A re-ADD keeps what the first ADD found (1500), not gwsteer's own 1450.
    let old = Record {
        schema: SCHEMA,
        network: "gw".into(),
        id: crate::store::AttachmentId {
            container_id: "c".into(),
            ifname: "net1".into(),
        },
        netns: None,
        pod_namespace: None,
        pod_name: None,
        objects: vec![Object::Mtu {
            side: Side::Pod,
            ifname: "net1".into(),
            mtu: 1450,
            previous: Some(1500),
        }],
        holds: vec![],
        created: 0,
    };
    let again = capture(&mut Reader, &planned, Some(&old)).unwrap();
    assert_eq!(again, old.objects);
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
fn the_host_veth_is_the_primarys_interface_outside_the_pod() {
    let prev = json!({"interfaces": [
        {"name": "gwbr0", "mac": "aa:aa:aa:aa:aa:01"},
        {"name": "veth42", "mac": "aa:aa:aa:aa:aa:02"},
        {"name": "net1", "mac": "aa:aa:aa:aa:aa:03", "sandbox": "/run/netns/p"}
    ]});
    assert_eq!(host_veth(Some(&prev), "gwbr0"), Some("veth42".into()));
    assert_eq!(host_veth(None, "gwbr0"), None);
}

#[test]
fn ipv6_underlays_parse_remotes_and_groups() {
    let c = parse(conf(json!({
        "router": "192.168.50.254",
        "vxlan": {"vni": 42, "remotes": ["fd00:200::1", "fd00:200::2"], "underlay": "under0"}
    })))
    .unwrap();
    let vx = c.gateway.unwrap().vxlan.unwrap();
    assert_eq!(
        vx.bum,
        Bum::Remotes(vec![
            "fd00:200::1".parse().unwrap(),
            "fd00:200::2".parse().unwrap()
        ])
    );
    assert_eq!(vx.bum.family(), Family::V6);
    assert_eq!(vx.overhead(), 70);
    let vx = gw_of(json!({"router": "192.168.50.254", "vxlan": {"vni": 7, "group": "ff05::42"}}))
        .vxlan
        .unwrap();
    assert_eq!(vx.bum, Bum::Group("ff05::42".parse().unwrap()));
    assert_eq!(vx.overhead(), 70);
    let v6 =
        gw_of(json!({"router": "fd00:50::fe", "vxlan": {"vni": 7, "remotes": ["fd00:200::2"]}}));
    assert_eq!(v6.mtu_for(Some(1500)).unwrap(), Some(1430));
    let e = gw_of(json!({"router": "fd00:50::fe", "mtu": 1450,
        "vxlan": {"vni": 7, "remotes": ["fd00:200::2"], "underlay": "under0"}}))
    .mtu_for(Some(1500))
    .unwrap_err();
    assert!(
        e.msg
            .starts_with("gatewayNetwork.mtu: 1450 is impossible over underlay under0 (MTU 1500): a VXLAN over it carries at most 1430"),
        "{}",
        e.msg
    );
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
    let infra = p.groups.iter().find(|g| g.key == INFRA_GROUP).unwrap();
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
    let infra = p.groups.iter().find(|g| g.key == INFRA_GROUP).unwrap();
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
