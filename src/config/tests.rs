use serde_json::{Value, json};

use super::steering::parse_mark;
use super::*;
use crate::cni::reader::At;
use crate::model::Family;

fn base() -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "oam-net",
        "type": "gwsteer",
        "steering": [{
            "name": "oam",
            "table": 100,
            "gateways": [{"via": "192.168.2.1", "dev": "eth1"}, {"via": "fd00:2::1"}],
            "exclude": ["10.244.0.0/16"]
        }]
    })
}

fn err_of(v: Value) -> Error {
    Config::from_value(&v).expect_err("config must be refused")
}

#[test]
fn a_full_config_parses_with_defaults() {
    let c = Config::from_value(&base()).unwrap();
    assert_eq!(c.network, "oam-net");
    assert_eq!(c.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
    assert_eq!(c.firewall_backend, FirewallBackend::Auto);
    let p = &c.steering[0];
    assert_eq!(p.priority, 1000);
    assert_eq!(p.matcher, Match::Source);
    assert_eq!(p.destinations.len(), 2);
    assert_eq!(p.gateways[0].weight, 1);
    assert_eq!(p.namespaces, None);
}

#[test]
fn default_priorities_step_by_ten() {
    let mut v = base();
    v["steering"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "b", "table": 101, "gateways": [{"via": "10.0.0.1"}]}));
    let c = Config::from_value(&v).unwrap();
    assert_eq!(c.steering[1].priority, 1010);
    assert_eq!(
        c.steering[1].destinations,
        vec!["0.0.0.0/0".parse::<IpNet>().unwrap()]
    );
}

/// Each malformed config, the CNI code it must get, and a piece of the message.
#[test]
fn malformed_configs_name_the_field() {
    let cases: Vec<(Value, u32, &str)> = vec![
        (
            json!({"cniVersion": "1.0.0", "type": "gwsteer"}),
            7,
            "name: required",
        ),
        (
            json!({"name": "n", "type": "gwsteer"}),
            7,
            "cniVersion: required",
        ),
        (
            json!({"cniVersion": "0.2.0", "name": "n"}),
            1,
            "\"0.2.0\" is not supported",
        ),
        (
            json!({"cniVersion": "1.0.0", "name": "bad name!"}),
            7,
            "name: \"bad name!\" is not a valid network name",
        ),
        (
            json!({"cniVersion": "1.0.0", "name": "n", "stateDir": "relative/dir"}),
            7,
            "stateDir: \"relative/dir\" is not an absolute path",
        ),
        (
            json!({"cniVersion": "1.0.0", "name": "n", "logLevel": "loud"}),
            7,
            "logLevel: \"loud\" is not one of",
        ),
        (
            json!({"cniVersion": "1.0.0", "name": "n", "firewallBackend": "pf"}),
            7,
            "firewallBackend: \"pf\"",
        ),
        (
            json!({"cniVersion": "1.0.0", "name": "n", "steering": {}}),
            7,
            "steering: expected an array",
        ),
        (
            json!({"cniVersion": "1.0.0", "name": "n", "stearing": []}),
            2,
            "stearing: unknown key (did you mean \"steering\"?)",
        ),
    ];
    for (v, code, text) in cases {
        let e = err_of(v.clone());
        assert_eq!(e.code, code, "{v}: {}", e.msg);
        assert!(e.msg.contains(text), "{v}: {:?} lacks {text:?}", e.msg);
    }
}

/// nftables is the one firewall backend: `auto`, `nftables` and `none` are
/// read, `iptables` is refused (code 7) naming the key and saying why.
#[test]
fn firewall_backend_is_auto_nftables_or_none() {
    for (name, want) in [
        ("auto", FirewallBackend::Auto),
        ("nftables", FirewallBackend::Nftables),
        ("none", FirewallBackend::None),
    ] {
        let mut v = json!({"cniVersion": "1.0.0", "name": "n"});
        v["firewallBackend"] = json!(name);
        assert_eq!(Config::from_value(&v).unwrap().firewall_backend, want);
    }
    let mut v = base();
    v["firewallBackend"] = json!("iptables");
    let e = err_of(v);
    assert_eq!(e.code, 7, "{}", e.msg);
    assert_eq!(
        e.msg,
        "firewallBackend: \"iptables\" is no longer supported: nftables is the one firewall \
         backend; it coexists with iptables-legacy and iptables-nft rules of other software"
    );
    let e = err_of(json!({"cniVersion": "1.0.0", "name": "n", "firewallBackend": "pf"}));
    assert!(
        e.msg.ends_with("\"pf\" is not one of auto, nftables, none"),
        "{}",
        e.msg
    );
}

#[test]
fn malformed_policies_name_the_field() {
    let cases: Vec<(&str, Value, u32, &str)> = vec![
        (
            "/steering/0/gateways/0/via",
            json!("10.0.0.300"),
            7,
            "steering[0].gateways[0].via: \"10.0.0.300\" is not an IP address",
        ),
        (
            "/steering/0/gateways/1/weight",
            json!(0),
            7,
            "steering[0].gateways[1].weight: 0 is out of range 1…256",
        ),
        (
            "/steering/0/gateways/1/weight",
            json!(257),
            7,
            "weight: 257 is out of range",
        ),
        (
            "/steering/0/gateways",
            json!([]),
            7,
            "steering[0].gateways: at least one gateway",
        ),
        (
            "/steering/0/gateways/0/dev",
            json!("a-very-long-interface-name"),
            7,
            "steering[0].gateways[0].dev: \"a-very-long-interface-name\" is not an interface name",
        ),
        (
            "/steering/0/gateways/0/gw",
            json!("1.2.3.4"),
            2,
            "steering[0].gateways[0].gw: unknown key",
        ),
        (
            "/steering/0/table",
            json!(254),
            7,
            "steering[0].table: 254 is a reserved table",
        ),
        (
            "/steering/0/table",
            json!(0),
            7,
            "steering[0].table: 0 is out of range",
        ),
        (
            "/steering/0/table",
            json!(4294967296u64),
            7,
            "steering[0].table: 4294967296 is out of range",
        ),
        (
            "/steering/0/table",
            json!("100"),
            7,
            "steering[0].table: expected a non-negative whole number, found a string \"100\"",
        ),
        (
            "/steering/0/name",
            json!("OAM"),
            7,
            "steering[0].name: \"OAM\" must be 1 to 15",
        ),
        (
            "/steering/0/name",
            json!("sixteen-chars-xx"),
            7,
            "must be 1 to 15",
        ),
        (
            "/steering/0/priority",
            json!(32766),
            7,
            "steering[0].priority: 32766 is out of range 2…32765",
        ),
        (
            "/steering/0/priority",
            json!(1),
            7,
            "priority: 1 is out of range",
        ),
        (
            "/steering/0/match",
            json!("dscp"),
            7,
            "steering[0].match: \"dscp\" is not one of source, mark, connmark",
        ),
        (
            "/steering/0/exclude",
            json!(["10.244.0.1/16"]),
            7,
            "steering[0].exclude[0]: \"10.244.0.1/16\" has host bits set; did you mean \"10.244.0.0/16\"?",
        ),
        (
            "/steering/0/exclude",
            json!(["10.244.0.0"]),
            7,
            "steering[0].exclude[0]: \"10.244.0.0\" is not a CIDR",
        ),
        ("/steering/0/destinations", json!(["2001:db8::/32"]), 7, ""),
        (
            "/steering/0/mark",
            json!("0x14"),
            7,
            "steering[0].mark: only used with match",
        ),
        (
            "/steering/0/namespaces",
            json!("default"),
            7,
            "steering[0].namespaces: expected an array",
        ),
    ];
    for (pointer, value, code, text) in cases {
        let mut v = base();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let target = v.pointer_mut(parent).unwrap();
        match target {
            Value::Object(m) => {
                m.insert(key.into(), value.clone());
            }
            Value::Array(a) => a[key.parse::<usize>().unwrap()] = value.clone(),
            _ => unreachable!(),
        }
        match Config::from_value(&v) {
            Err(e) => {
                assert_eq!(e.code, code, "{pointer}={value}: {}", e.msg);
                assert!(
                    e.msg.contains(text),
                    "{pointer}={value}: {:?} lacks {text:?}",
                    e.msg
                );
            }
            // An IPv6-only destination list is fine when there is an IPv6 gateway.
            Ok(_) if text.is_empty() => {}
            Ok(_) => panic!("{pointer}={value} was accepted"),
        }
    }
}

#[test]
fn destinations_need_a_gateway_of_their_family() {
    let mut v = base();
    v["steering"][0]["gateways"] = json!([{"via": "192.168.2.1"}]);
    v["steering"][0]["destinations"] = json!(["0.0.0.0/0", "::/0"]);
    let e = err_of(v);
    assert_eq!(
        e.msg,
        "steering[0].destinations[1]: ::/0 has no gateway of its address family in steering[0].gateways"
    );
}

#[test]
fn duplicates_between_policies_are_refused() {
    for (key, value, text) in [
        ("name", json!("oam"), "name \"oam\" is already used"),
        ("table", json!(100), "table 100 is already used"),
        ("priority", json!(1000), "priority 1000 is already used"),
    ] {
        let mut v = base();
        let mut second = json!({"name": "other", "table": 200, "priority": 2000, "gateways": [{"via": "10.0.0.1"}]});
        second[key] = value;
        v["steering"].as_array_mut().unwrap().push(second);
        let e = err_of(v);
        assert!(e.msg.starts_with("steering[1]: "), "{}", e.msg);
        assert!(e.msg.contains(text), "{}", e.msg);
    }
}

#[test]
fn pod_args_are_validated() {
    let mut v = base();
    v["args"] = json!({"cni": {"gwsteer": {"steering": ["nope"]}}});
    assert_eq!(
        err_of(v.clone()).msg,
        "args.cni.gwsteer.steering[0]: no steering policy is named \"nope\""
    );
    v["args"] = json!({"cni": {"gwsteer": {"role": "boss"}}});
    assert!(
        err_of(v.clone())
            .msg
            .starts_with("args.cni.gwsteer.role: \"boss\"")
    );
    v["args"] = json!({"cni": {"gwsteer": {"steering": ["oam"], "role": "client"}}});
    let c = Config::from_value(&v).unwrap();
    assert_eq!(c.pod_args.steering, Some(vec!["oam".to_string()]));
    assert_eq!(c.pod_args.role, Some(Role::Client));
    // Other plugins' cni-args are none of our business.
    v["args"] = json!({"cni": {"ips": ["10.0.0.5/24"]}});
    assert_eq!(Config::from_value(&v).unwrap().pod_args, PodArgs::default());
}

#[test]
fn scope_subnet_is_for_node_side_policies_of_every_namespace() {
    let mut v = base();
    v["steering"][0]["scope"] = json!("subnet");
    let c = Config::from_value(&v).unwrap();
    assert_eq!(c.steering[0].scope, Scope::Subnet);
    assert_eq!(c.steering[0].rule_priorities(), vec![1000, 999]);
    v["steering"][0]["scope"] = json!("pod");
    assert_eq!(
        Config::from_value(&v).unwrap().steering[0].scope,
        Scope::Pod
    );
    for (key, value, why) in [
        ("scope", json!("node"), "\"node\" is not one of pod, subnet"),
        ("namespaces", json!(["oam"]), "cannot select by namespace"),
        ("side", json!("pod"), "node-side scope"),
    ] {
        let mut v = base();
        v["steering"][0]["scope"] = json!("subnet");
        v["steering"][0][key] = value;
        if key == "side" {
            v["steering"][0].as_object_mut().unwrap().remove("table");
        }
        let e = err_of(v);
        assert!(e.msg.contains(why), "{key}: {}", e.msg);
        assert!(
            e.msg.starts_with("steering[0].scope: ") || key == "scope",
            "{}",
            e.msg
        );
    }
    // Mark and connmark policies have it too, and their priority only.
    for (matcher, extra) in [
        ("mark", json!({})),
        ("connmark", json!({"ingressInterfaces": ["eth1"]})),
    ] {
        let mut v = base();
        v["steering"][0]["scope"] = json!("subnet");
        v["steering"][0]["match"] = json!(matcher);
        v["steering"][0]["mark"] = json!("0x14");
        for (key, value) in extra.as_object().unwrap() {
            v["steering"][0][key] = value.clone();
        }
        let c = Config::from_value(&v).unwrap();
        assert_eq!(c.steering[0].scope, Scope::Subnet, "{matcher}");
        assert_eq!(c.steering[0].rule_priorities(), vec![1000], "{matcher}");
    }
    // Its exception rules take priority − 1 even without exclude: a
    // policy at 999 meets them.
    let mut v = base();
    v["steering"][0]["scope"] = json!("subnet");
    v["steering"][0].as_object_mut().unwrap().remove("exclude");
    v["steering"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "b", "table": 101,
        "priority": 999, "gateways": [{"via": "192.168.2.1"}]}));
    assert!(err_of(v).msg.contains("exclusion rules"));
}

#[test]
fn marks_parse_as_ip_rule_prints_them() {
    assert_eq!(parse_mark(&At::root(&json!("0x14"))).unwrap(), 0x14);
    assert_eq!(parse_mark(&At::root(&json!("20"))).unwrap(), 20);
    assert_eq!(parse_mark(&At::root(&json!(20))).unwrap(), 20);
    assert!(parse_mark(&At::root(&json!("0xzz"))).is_err());
}

#[test]
fn valid_attachments_are_read_for_gc() {
    let mut v = base();
    v["cniVersion"] = json!("1.1.0");
    v["cni.dev/valid-attachments"] = json!([{"containerID": "abc", "ifname": "eth0"}]);
    let c = Config::from_value(&v).unwrap();
    assert_eq!(
        c.valid_attachments,
        Some(vec![("abc".into(), "eth0".into())])
    );
    v["cni.dev/valid-attachments"] = json!([{"containerID": "abc"}]);
    assert_eq!(
        err_of(v).msg,
        "cni.dev/valid-attachments[0].ifname: required"
    );
}

#[test]
fn lock_timeout_defaults_to_ten_seconds_and_is_bounded() {
    let c = Config::from_value(&base()).unwrap();
    assert_eq!(c.lock_timeout, std::time::Duration::from_secs(10));
    let mut v = base();
    v["lockTimeoutMs"] = json!(250);
    let c = Config::from_value(&v).unwrap();
    assert_eq!(c.lock_timeout, std::time::Duration::from_millis(250));
    for bad in [json!(0), json!(600_001), json!("100")] {
        v["lockTimeoutMs"] = bad;
        let e = err_of(v.clone());
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(e.msg.starts_with("lockTimeoutMs: "), "{}", e.msg);
    }
}

fn with_vrf(vrf: Value) -> Value {
    let mut v = base();
    v["vrf"] = vrf;
    v
}

fn vrf_base() -> Value {
    json!({
        "name": "vrf-oam",
        "table": 10,
        "uplinks": ["eth1"],
        "legs": {
            "host": {"name": "oam-def", "addresses": ["192.169.1.1/30", "fd00:169::1/64"]},
            "vrf": {"name": "oam-vrf", "addresses": ["192.169.1.2/30", "fd00:169::2/64"]}
        },
        "gateways": [{"via": "10.111.221.21"}]
    })
}

/// What `vrf.masquerade` leaves to connmark policies: any mark below bit 31
/// on other interfaces, and on the VRF leg a mask without bit 31.
#[test]
fn vrf_masquerade_leaves_connmark_the_other_bits() {
    for (mark, mask, ifaces) in [
        ("0x14", None, json!(["eth0"])),
        ("0x7fffffff", None, json!(["eth0", "eth1"])),
        ("0x14", Some("0xffff"), json!(["oam-vrf"])),
    ] {
        let mut v = with_vrf(vrf_base());
        v["vrf"]["masquerade"] = json!(true);
        let mut p = json!({
            "name": "oam", "table": 100, "match": "connmark", "mark": mark,
            "ingressInterfaces": ifaces, "gateways": [{"via": "10.30.0.2"}]
        });
        if let Some(mask) = mask {
            p["mask"] = json!(mask);
        }
        v["steering"] = json!([p]);
        if let Err(e) = Config::from_value(&v) {
            panic!("{mark}/{mask:?} on {ifaces}: {}", e.msg);
        }
    }
}

#[test]
fn vrf_parses_with_defaults() {
    let c = Config::from_value(&with_vrf(vrf_base())).unwrap();
    let v = c.vrf.unwrap();
    assert_eq!(v.name, "vrf-oam");
    assert_eq!(v.table, 10);
    assert_eq!(v.uplinks, vec!["eth1".to_string()]);
    assert_eq!(v.host_leg.name, "oam-def");
    assert_eq!(
        v.vrf_leg.addresses,
        vec![
            "192.169.1.2/30".parse::<IpNet>().unwrap(),
            "fd00:169::2/64".parse().unwrap()
        ]
    );
    assert_eq!(v.gateways[0].weight, 1);
    // Only the families that have a gateway get a default destination.
    assert_eq!(v.destinations, vec!["0.0.0.0/0".parse::<IpNet>().unwrap()]);
    assert_eq!(v.leak, vrf::Leak::Pod);
    assert!(!v.masquerade);
    assert!(v.unreachable_default);
    assert_eq!(v.entry(Family::V4), Some("192.169.1.2".parse().unwrap()));
    assert_eq!(v.entry(Family::V6), Some("fd00:169::2".parse().unwrap()));
}

#[test]
fn vrf_options_parse() {
    let mut vrf = vrf_base();
    vrf["leak"] = json!("cidr");
    vrf["podCidrs"] = json!(["10.244.0.0/16", "fd00:244::/56"]);
    vrf["masquerade"] = json!(true);
    vrf["unreachableDefault"] = json!(false);
    vrf["gateways"] =
        json!([{"via": "10.111.221.21", "dev": "eth1", "weight": 3}, {"via": "fd00:221::21"}]);
    vrf["destinations"] = json!(["10.111.0.0/16", "fd00:111::/48"]);
    let v = Config::from_value(&with_vrf(vrf)).unwrap().vrf.unwrap();
    assert_eq!(
        v.leak,
        vrf::Leak::Cidr(vec![
            "10.244.0.0/16".parse().unwrap(),
            "fd00:244::/56".parse().unwrap()
        ])
    );
    assert!(v.masquerade);
    assert!(!v.unreachable_default);
    assert_eq!(v.gateways[0].dev.as_deref(), Some("eth1"));
    assert_eq!(v.gateways[0].weight, 3);
    assert_eq!(v.destinations.len(), 2);

    let mut vrf = vrf_base();
    vrf["leak"] = json!("none");
    vrf.as_object_mut().unwrap().remove("gateways");
    let v = Config::from_value(&with_vrf(vrf)).unwrap().vrf.unwrap();
    assert_eq!(v.leak, vrf::Leak::None);
    assert!(v.gateways.is_empty() && v.destinations.is_empty());
}

/// Each broken `vrf`, and the start of its message.
#[test]
fn malformed_vrf_names_the_field() {
    type Edit = fn(&mut Value);
    let cases: Vec<(Edit, &str)> = vec![
        (|v| v["vrf"] = json!("vrf-oam"), "vrf: expected an object"),
        (|v| v["vrf"]["colour"] = json!(1), "vrf.colour: unknown key"),
        (
            |v| {
                v["vrf"].as_object_mut().unwrap().remove("name");
            },
            "vrf.name: required",
        ),
        (
            |v| v["vrf"]["name"] = json!("a-much-too-long-name"),
            "vrf.name: \"a-much-too-long-name\" is not an interface name",
        ),
        (
            |v| {
                v["vrf"].as_object_mut().unwrap().remove("table");
            },
            "vrf.table: required",
        ),
        (
            |v| v["vrf"]["table"] = json!(0),
            "vrf.table: 0 is out of range 1…4294967295",
        ),
        (
            |v| v["vrf"]["table"] = json!(254),
            "vrf.table: 254 is a reserved table (253 default, 254 main, 255 local)",
        ),
        (
            |v| v["vrf"]["table"] = json!(100),
            "vrf.table: table 100 is already used by steering policy \"oam\"",
        ),
        (
            |v| {
                v["vrf"].as_object_mut().unwrap().remove("legs");
            },
            "vrf.legs: required",
        ),
        (
            |v| {
                v["vrf"]["legs"].as_object_mut().unwrap().remove("vrf");
            },
            "vrf.legs.vrf: required",
        ),
        (
            |v| v["vrf"]["legs"]["host"]["mtu"] = json!(1500),
            "vrf.legs.host.mtu: unknown key",
        ),
        (
            |v| v["vrf"]["legs"]["host"]["addresses"] = json!([]),
            "vrf.legs.host.addresses: at least one address is required",
        ),
        (
            |v| v["vrf"]["legs"]["host"]["addresses"][0] = json!("192.169.1.1"),
            "vrf.legs.host.addresses[0]: \"192.169.1.1\" is not an interface address (address/prefix length, e.g. \"192.169.1.1/30\")",
        ),
        (
            |v| v["vrf"]["legs"]["host"]["addresses"][0] = json!("192.169.1.0/30"),
            "vrf.legs.host.addresses[0]: 192.169.1.0 is the network address of 192.169.1.0/30, not a host's",
        ),
        (
            |v| v["vrf"]["legs"]["vrf"]["addresses"][0] = json!("192.169.1.3/30"),
            "vrf.legs.vrf.addresses[0]: 192.169.1.3 is the broadcast address of 192.169.1.0/30, not a host's",
        ),
        (
            |v| v["vrf"]["legs"]["host"]["addresses"][1] = json!("192.169.1.5/30"),
            "vrf.legs.host.addresses[1]: 192.169.1.5/30 is a second inet address; give one per address family",
        ),
        (
            |v| v["vrf"]["legs"]["vrf"]["name"] = json!("oam-def"),
            "vrf.legs.vrf.name: \"oam-def\" is the host leg's name too",
        ),
        (
            |v| v["vrf"]["legs"]["host"]["name"] = json!("vrf-oam"),
            "vrf.legs.host.name: \"vrf-oam\" is the VRF device's name too",
        ),
        (
            |v| v["vrf"]["legs"]["vrf"]["addresses"][0] = json!("192.169.2.2/30"),
            "vrf.legs.vrf.addresses[0]: 192.169.2.2/30 is not in the host leg's subnet 192.169.1.0/30 (the legs are the two ends of one link)",
        ),
        (
            |v| v["vrf"]["legs"]["vrf"]["addresses"][0] = json!("192.169.1.1/30"),
            "vrf.legs.vrf.addresses[0]: 192.169.1.1 is the host leg's address too",
        ),
        (
            |v| v["vrf"]["legs"]["vrf"]["addresses"] = json!(["192.169.1.2/30"]),
            "vrf.legs.vrf.addresses: no inet6 address, but the host leg has fd00:169::1/64; give both legs an address of each family",
        ),
        (
            |v| v["vrf"]["legs"]["host"]["addresses"] = json!(["192.169.1.1/30"]),
            "vrf.legs.vrf.addresses[1]: fd00:169::2/64 has no inet6 address on the host leg; give both legs an address of each family",
        ),
        (
            |v| v["vrf"]["uplinks"] = json!(["eth1", "eth1"]),
            "vrf.uplinks[1]: \"eth1\" is listed twice",
        ),
        (
            |v| v["vrf"]["uplinks"] = json!(["oam-vrf"]),
            "vrf.uplinks[0]: \"oam-vrf\" is the VRF device or one of its legs, not an uplink",
        ),
        (
            |v| v["vrf"]["gateways"][0]["via"] = json!("10.0.0.300"),
            "vrf.gateways[0].via: \"10.0.0.300\" is not an IP address",
        ),
        (
            |v| v["vrf"]["destinations"] = json!(["fd00::/8"]),
            "vrf.destinations[0]: fd00::/8 has no gateway of its address family in vrf.gateways",
        ),
        (
            |v| v["vrf"]["leak"] = json!("all"),
            "vrf.leak: \"all\" is not one of pod, cidr, none",
        ),
        (
            |v| v["vrf"]["leak"] = json!("cidr"),
            "vrf.podCidrs: required for leak \"cidr\"",
        ),
        (
            |v| {
                v["vrf"]["leak"] = json!("cidr");
                v["vrf"]["podCidrs"] = json!([]);
            },
            "vrf.podCidrs: at least one CIDR is required for leak \"cidr\"",
        ),
        (
            |v| {
                v["vrf"]["leak"] = json!("cidr");
                v["vrf"]["podCidrs"] = json!(["10.244.0.1/16"]);
            },
            "vrf.podCidrs[0]: \"10.244.0.1/16\" has host bits set; did you mean \"10.244.0.0/16\"?",
        ),
        (
            |v| {
                v["vrf"]["leak"] = json!("cidr");
                v["vrf"]["legs"]["host"]["addresses"] = json!(["192.169.1.1/30"]);
                v["vrf"]["legs"]["vrf"]["addresses"] = json!(["192.169.1.2/30"]);
                v["vrf"]["podCidrs"] = json!(["fd00:244::/56"]);
            },
            "vrf.podCidrs[0]: fd00:244::/56 has no inet6 address on the legs to be leaked through",
        ),
        (
            |v| v["vrf"]["podCidrs"] = json!(["10.244.0.0/16"]),
            "vrf.podCidrs: only used with leak \"cidr\" (leak is \"pod\")",
        ),
        (
            |v| v["vrf"]["masquerade"] = json!("yes"),
            "vrf.masquerade: expected true or false",
        ),
        (
            |v| v["vrf"]["unreachableDefault"] = json!(0),
            "vrf.unreachableDefault: expected true or false",
        ),
        (
            |v| {
                v["vrf"]["masquerade"] = json!(true);
                v["firewallBackend"] = json!("none");
            },
            "vrf.masquerade: needs a firewall, but firewallBackend is \"none\"",
        ),
        (
            |v| {
                v["vrf"]["masquerade"] = json!(true);
                v["vrf"].as_object_mut().unwrap().remove("uplinks");
            },
            "vrf.masquerade: needs uplinks",
        ),
        (
            |v| {
                v["vrf"]["masquerade"] = json!(true);
                v["steering"] = json!([{
                    "name": "oam", "table": 100, "match": "connmark", "mark": "0x80000014",
                    "ingressInterfaces": ["eth1"], "gateways": [{"via": "10.30.0.2"}]
                }]);
            },
            "steering[0].mark: 0x80000014 uses bit 31 (0x80000000) of the conntrack mark",
        ),
        (
            |v| {
                v["vrf"]["masquerade"] = json!(true);
                v["steering"] = json!([{
                    "name": "oam", "table": 100, "match": "connmark", "mark": "0x14",
                    "ingressInterfaces": ["eth0", "oam-vrf"], "gateways": [{"via": "10.30.0.2"}]
                }]);
            },
            "steering[0].ingressInterfaces[1]: oam-vrf is the VRF leg",
        ),
    ];
    for (edit, want) in cases {
        let mut v = with_vrf(vrf_base());
        edit(&mut v);
        let e = err_of(v);
        // An unknown key is an unsupported field (2), the rest invalid (7).
        let want_code = if want.ends_with("unknown key") {
            code::UNSUPPORTED_FIELD
        } else {
            code::INVALID_CONFIG
        };
        assert_eq!(e.code, want_code, "{want}: {}", e.msg);
        assert!(
            e.msg.starts_with(want),
            "{} does not start with {want}",
            e.msg
        );
    }
}

/// Which key makes gwsteer run `nft` (STATUS checks the command for it).
#[test]
fn needs_nft_command_names_the_key_that_runs_nft() {
    let base = || json!({"cniVersion": "1.1.0", "name": "n", "type": "gwsteer"});
    let parse = |v: Value| Config::from_value(&v).unwrap();
    assert_eq!(parse(base()).needs_nft_command(), None);

    let mut gw = base();
    gw["gatewayNetwork"] = json!({"role": "router"});
    assert_eq!(
        parse(gw.clone()).needs_nft_command(),
        Some("gatewayNetwork.masquerade (role router)")
    );
    gw["gatewayNetwork"]["masquerade"] = json!(false);
    assert_eq!(parse(gw).needs_nft_command(), None);
    let mut client = base();
    client["gatewayNetwork"] = json!({"router": "172.31.0.1"});
    assert_eq!(parse(client).needs_nft_command(), None);

    let mut vrf = base();
    vrf["vrf"] = json!({
        "name": "vrf-oam", "table": 10,
        "legs": {
            "host": {"name": "gl-host", "addresses": ["192.169.1.1/30"]},
            "vrf": {"name": "gl-vrf", "addresses": ["192.169.1.2/30"]}
        },
        "gateways": [{"via": "10.30.0.2"}],
        "uplinks": ["eth1"]
    });
    assert_eq!(parse(vrf.clone()).needs_nft_command(), None);
    vrf["vrf"]["masquerade"] = json!(true);
    assert_eq!(parse(vrf).needs_nft_command(), Some("vrf.masquerade"));
}

#[test]
fn network_names_are_bounded_and_the_message_names_the_limit() {
    let mut v = base();
    v["name"] = json!("n".repeat(MAX_NETWORK_NAME));
    assert!(Config::from_value(&v).is_ok());
    v["name"] = json!("n".repeat(MAX_NETWORK_NAME + 1));
    let e = err_of(v);
    assert_eq!(e.code, code::INVALID_CONFIG);
    assert!(
        e.msg
            .starts_with("name: the network name is 201 bytes long; the limit is 200"),
        "{e}"
    );
}

#[test]
fn interface_names_are_literal() {
    let cases = [
        (
            "eth*",
            "\"eth*\" is not a literal interface name: holds '*', which nftables reads as a wildcard",
        ),
        ("e*t", "holds '*'"),
        ("eth\\1", "holds '\\', which nftables reads as an escape"),
        (
            "eth\u{0}1",
            "\"eth\\01\" is not an interface name: holds '\\0'",
        ),
        (
            "eth\n1",
            "\"eth\\n1\" is not an interface name: holds '\\n'",
        ),
        ("eth\u{1b}", "holds '\\u{1b}'"),
        ("eth 1", "holds a space"),
        ("a/b", "holds '/'"),
        ("a:b", "holds ':'"),
        (
            "0123456789abcdef",
            "is 16 bytes long; an interface name has at most 15",
        ),
    ];
    for (name, want) in cases {
        let mut v = base();
        v["steering"][0]["gateways"][0]["dev"] = json!(name);
        let e = err_of(v);
        assert_eq!(e.code, code::INVALID_CONFIG, "{name:?}: {e}");
        assert!(
            e.msg.starts_with("steering[0].gateways[0].dev: ") && e.msg.contains(want),
            "{name:?}: {e}"
        );
    }
    // Literal in nftables and in Linux: '+' (a wildcard only in iptables,
    // which gwsteer no longer uses) and the characters nft's own syntax
    // would trip on, since names reach nft as JSON strings.
    for name in ["eth+", "g\"{}$", "a.b"] {
        let mut v = base();
        v["steering"][0]["gateways"][0]["dev"] = json!(name);
        assert!(Config::from_value(&v).is_ok(), "{name:?}");
    }
    // Every interface name of the config is read the same way.
    let mut v = base();
    v["steering"][0]["match"] = json!("connmark");
    v["steering"][0]["mark"] = json!("0x10");
    v["steering"][0]["ingressInterfaces"] = json!(["eth1", "eth*"]);
    let e = err_of(v);
    assert!(
        e.msg
            .starts_with("steering[0].ingressInterfaces[1]: \"eth*\" is not a literal"),
        "{e}"
    );
    let mut v = with_vrf(vrf_base());
    v["vrf"]["uplinks"] = json!(["up\\*"]);
    let e = err_of(v);
    assert!(e.msg.starts_with("vrf.uplinks[0]: "), "{e}");
    let mut v = with_vrf(vrf_base());
    v["vrf"]["legs"]["vrf"]["name"] = json!("leg*");
    let e = err_of(v);
    assert!(e.msg.starts_with("vrf.legs.vrf.name: "), "{e}");
}

#[test]
fn unusable_gateways_are_refused_with_the_field() {
    for (via, why) in [
        ("0.0.0.0", "it is the unspecified address"),
        ("::", "it is the unspecified address"),
        ("255.255.255.255", "it is the broadcast address"),
        ("224.0.0.1", "it is a multicast address"),
        ("ff02::1", "it is a multicast address"),
        ("127.0.0.1", "it is a loopback address"),
        ("::1", "it is a loopback address"),
    ] {
        let mut v = base();
        v["steering"][0]["gateways"][1]["via"] = json!(via);
        let e = err_of(v);
        assert_eq!(e.code, code::INVALID_CONFIG, "{via}: {e}");
        assert_eq!(
            e.msg,
            format!("steering[0].gateways[1].via: {via} cannot be a gateway: {why}")
        );
    }
    let mut v = with_vrf(vrf_base());
    v["vrf"]["gateways"] = json!([{"via": "0.0.0.0"}]);
    let e = err_of(v);
    assert!(
        e.msg
            .starts_with("vrf.gateways[0].via: 0.0.0.0 cannot be a gateway"),
        "{e}"
    );
    let mut v = base();
    v["gatewayNetwork"] = json!({"router": "255.255.255.255"});
    let e = err_of(v);
    assert!(
        e.msg
            .starts_with("gatewayNetwork.router: 255.255.255.255 cannot be a router's address"),
        "{e}"
    );
    // A link-local IPv6 gateway is a neighbour like any other.
    let mut v = base();
    v["steering"][0]["gateways"][1] = json!({"via": "fe80::1", "dev": "eth1"});
    assert!(Config::from_value(&v).is_ok());
}

#[test]
fn paths_are_bounded() {
    let long = format!("/{}", "d/".repeat(MAX_PATH / 2));
    for key in ["stateDir", "logFile"] {
        let mut v = base();
        v[key] = json!(format!("/{}", "x".repeat(MAX_PATH - 1)));
        assert!(Config::from_value(&v).is_ok(), "{key}");
        v[key] = json!(long);
        let e = err_of(v);
        assert_eq!(
            e.msg,
            format!(
                "{key}: the path is {} bytes long; the limit is {MAX_PATH}",
                long.len()
            )
        );
        let mut v = base();
        v[key] = json!("/run/a\u{0}b");
        assert!(
            err_of(v)
                .msg
                .starts_with(&format!("{key}: \"/run/a\\0b\" holds a NUL"))
        );
    }
}

#[test]
fn side_pod_needs_neither_table_nor_gateways_and_refuses_what_it_does_not_use() {
    let pod_policy = |extra: Value| {
        let mut p = json!({"name": "lan", "side": "pod"});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        json!({"cniVersion": "1.0.0", "name": "lan", "type": "gwsteer", "steering": [p]})
    };
    let c = Config::from_value(&pod_policy(json!({}))).unwrap();
    let p = &c.steering[0];
    assert_eq!(p.side, SideChoice::Pod);
    assert_eq!(p.table, None);
    assert!(p.gateways.is_empty());
    assert_eq!(p.destinations.len(), 2, "{:?}", p.destinations);
    let cases = [
        (
            json!({"table": 200}),
            "steering[0].table: not used with side \"pod\"",
        ),
        (
            json!({"match": "mark", "mark": "0x1"}),
            "steering[0].match: \"mark\" steers on the node only",
        ),
        (
            json!({"match": "connmark", "mark": "0x1", "ingressInterfaces": ["eth1"]}),
            "steering[0].ingressInterfaces: not used with side \"pod\"",
        ),
        (
            json!({"side": "inside"}),
            "steering[0].side: \"inside\" is not one of auto, node, pod",
        ),
    ];
    for (extra, want) in cases {
        let e = err_of(pod_policy(extra.clone()));
        assert!(e.msg.starts_with(want), "{extra}: {e}");
    }
    // Connmark on the pod side needs no ingressInterfaces.
    let c = Config::from_value(&pod_policy(json!({"match": "connmark", "mark": "0x14"}))).unwrap();
    assert!(c.steering[0].ingress_interfaces.is_empty());
}

#[test]
fn auto_and_node_sides_still_need_a_table_and_gateways() {
    for side in [None, Some("auto"), Some("node")] {
        let mut v = base();
        if let Some(side) = side {
            v["steering"][0]["side"] = json!(side);
        }
        let mut no_table = v.clone();
        no_table["steering"][0]
            .as_object_mut()
            .unwrap()
            .remove("table");
        let e = err_of(no_table);
        assert!(
            e.msg
                .starts_with("steering[0].table: required (unless side is \"pod\")"),
            "{side:?}: {e}"
        );
        let mut no_gw = v.clone();
        no_gw["steering"][0]
            .as_object_mut()
            .unwrap()
            .remove("gateways");
        let e = err_of(no_gw);
        assert!(
            e.msg.starts_with("steering[0].gateways: required"),
            "{side:?}: {e}"
        );
        let c = Config::from_value(&v).unwrap();
        assert_eq!(c.steering[0].table, Some(100));
    }
}
