use serde_json::{Value, json};

use super::*;
use crate::config::{Config, Role};
use crate::error::{Error, Result, code};

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
