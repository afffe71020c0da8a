use serde_json::json;

use super::*;
use crate::cni::result::PodAddress;
use crate::config::Config;
use crate::plan::{Facts, plan};

fn config(steering: serde_json::Value) -> Config {
    let v = json!({"cniVersion": "1.0.0", "name": "lan", "type": "gwsteer", "steering": steering});
    Config::from_value(&v).unwrap()
}

/// A pod whose `net1` has these addresses, each with its prevResult gateway.
fn pod(addrs: &[(&str, Option<&str>)]) -> Pod {
    Pod {
        namespace: Some("default".into()),
        name: Some("p".into()),
        addresses: addrs
            .iter()
            .map(|(a, gw)| PodAddress {
                address: a.parse().unwrap(),
                gateway: gw.map(|g| g.parse().unwrap()),
                interface: Some("net1".into()),
            })
            .collect(),
    }
}

fn facts(peerless: bool, index: Option<u32>) -> Facts {
    Facts {
        firewall: None,
        gateway: None,
        pod_link: Some(PodLink {
            ifname: "net1".into(),
            peerless: peerless.then(|| "net1 is a macvlan device, with no host-side peer".into()),
            index,
            fwmark_rules: Vec::new(),
        }),
    }
}

fn texts(objs: &[Object]) -> Vec<String> {
    objs.iter().map(|o| o.to_string()).collect()
}

#[test]
fn a_peerless_interface_is_steered_in_the_pod_with_prevresult_gateways() {
    let c = config(json!([{"name": "lan", "side": "pod", "exclude": ["10.96.0.0/12"]}]));
    let p = plan(
        &c,
        &pod(&[
            ("192.168.60.10/24", Some("192.168.60.1")),
            ("fd00:60::10/64", Some("fd00:60::1")),
        ]),
        &facts(true, Some(3)),
    );
    let t = 0x8000_0000u32 + 3 * 256;
    assert_eq!(
        texts(&p.pod_objects),
        vec![
            format!("pod inet route 192.168.60.0/24 table {t} dev net1"),
            format!("pod inet route default table {t} via 192.168.60.1 dev net1"),
            format!("pod inet6 route fd00:60::/64 table {t} dev net1"),
            format!("pod inet6 route default table {t} via fd00:60::1 dev net1"),
            "pod inet rule 999: from 192.168.60.10 to 10.96.0.0/12 lookup main".to_string(),
            format!("pod inet rule 1000: from 192.168.60.10 lookup {t}"),
            format!("pod inet6 rule 1000: from fd00:60::10 lookup {t}"),
        ]
    );
    // Nothing on the node: no node group, no claim.
    assert!(p.groups.is_empty(), "{:?}", p.groups);
    assert_eq!(p.notes.len(), 1);
    assert!(!p.notes[0].warning);
    assert!(
        p.notes[0].text.contains("on the pod side of net1"),
        "{:?}",
        p.notes
    );
}

#[test]
fn auto_follows_the_interface_and_mark_stays_on_the_node() {
    let c = config(json!([
        {"name": "src", "table": 200, "gateways": [{"via": "192.168.60.1"}]},
        {"name": "egress", "table": 201, "match": "mark", "mark": "0x20",
         "gateways": [{"via": "192.168.60.1"}]}
    ]));
    let addrs = [("192.168.60.10/24", Some("192.168.60.1"))];
    // A veth (host-side peer): both on the node, as before.
    let node = plan(&c, &pod(&addrs), &facts(false, None));
    assert!(node.pod_objects.iter().all(|o| o.side() == Side::Node));
    assert!(node.notes.is_empty(), "{:?}", node.notes);
    // A macvlan: source goes into the pod with the policy's gateway;
    // mark stays on the node and says it relies on the detour.
    let peerless = plan(&c, &pod(&addrs), &facts(true, Some(7)));
    let t = 0x8000_0000u32 + 7 * 256;
    assert!(
        texts(&peerless.pod_objects).contains(&format!(
            "pod inet rule 1000: from 192.168.60.10 lookup {t}"
        )),
        "{:?}",
        peerless.pod_objects
    );
    let keys: Vec<String> = peerless.groups.iter().map(|g| g.key.to_string()).collect();
    assert_eq!(keys, vec!["steering.egress"]);
    let warned: Vec<&Note> = peerless.notes.iter().filter(|n| n.warning).collect();
    assert_eq!(warned.len(), 1, "{:?}", peerless.notes);
    assert!(warned[0].text.contains("steering egress"));
    assert!(warned[0].text.contains("rely on the detour"));
}

#[test]
fn forcing_the_node_side_on_a_peerless_interface_is_a_warning() {
    let c = config(json!([{"name": "lan", "side": "node", "table": 200,
                            "gateways": [{"via": "192.168.60.1"}]}]));
    let p = plan(
        &c,
        &pod(&[("192.168.60.10/24", None)]),
        &facts(true, Some(3)),
    );
    assert_eq!(
        texts(&p.pod_objects),
        vec!["inet rule 1000: from 192.168.60.10 lookup 200"]
    );
    assert!(p.notes[0].warning);
    assert!(p.notes[0].text.contains("side \"node\""), "{:?}", p.notes);
    assert!(
        p.notes[0].text.contains("strict rp_filter"),
        "{:?}",
        p.notes
    );
}

/// The tables of a plan's routes.
fn route_tables(p: &crate::plan::Plan) -> std::collections::BTreeSet<u32> {
    p.pod_objects
        .iter()
        .filter_map(|o| match o {
            Object::Route { spec, .. } => Some(spec.table),
            _ => None,
        })
        .collect()
}

#[test]
fn two_interfaces_of_one_pod_get_two_tables() {
    let c = config(json!([{"name": "lan", "side": "pod"}]));
    let addrs = [("192.168.60.10/24", Some("192.168.60.1"))];
    let on = |index| route_tables(&plan(&c, &pod(&addrs), &facts(true, Some(index))));
    let (a, b) = (on(2), on(3));
    assert_eq!(a.len(), 1);
    assert!(a.is_disjoint(&b), "{a:?} {b:?}");
    // And two policies of one network on one interface.
    let two = config(json!([
        {"name": "a", "side": "pod", "destinations": ["198.51.100.0/24"]},
        {"name": "b", "side": "pod", "destinations": ["203.0.113.0/24"]}
    ]));
    let p = plan(&two, &pod(&addrs), &facts(true, Some(2)));
    assert_eq!(route_tables(&p).len(), 2, "{:?}", p.pod_objects);
}

#[test]
fn connmark_in_the_pod_marks_the_interface_and_routes_the_mark() {
    let c = config(json!([{"name": "vip", "side": "pod", "match": "connmark", "mark": "0x14"}]));
    let p = plan(
        &c,
        &pod(&[("192.168.60.10/24", Some("192.168.60.1"))]),
        &facts(true, Some(4)),
    );
    let t = 0x8000_0000u32 + 4 * 256;
    assert_eq!(
        texts(&p.pod_objects),
        vec![
            format!("pod inet route 192.168.60.0/24 table {t} dev net1"),
            format!("pod inet route default table {t} via 192.168.60.1 dev net1"),
            format!("pod inet rule 1000: from all fwmark 0x14 lookup {t}"),
            "pod nftables connmark vip: connections arriving on net1 marked 0x14".to_string(),
        ]
    );
}

#[test]
fn an_address_without_any_gateway_is_not_steered_and_said_so() {
    let c = config(json!([{"name": "lan", "side": "pod"}]));
    let p = plan(
        &c,
        &pod(&[("192.168.60.10/24", None)]),
        &facts(true, Some(4)),
    );
    assert!(p.pod_objects.is_empty());
    assert!(
        p.notes
            .iter()
            .any(|n| n.warning && n.text.contains("has no gateway")),
        "{:?}",
        p.notes
    );
}

#[test]
fn table_ids_stay_within_32_bits() {
    let c = config(json!([{"name": "lan", "side": "pod"}]));
    let policy = &c.steering[0];
    assert_eq!(table_id(1, policy), Some(0x8000_0100));
    assert_eq!(table_id((1 << 23) - 1, policy), Some(0xffff_ff00));
    assert_eq!(table_id(1 << 23, policy), None);
}

#[test]
fn a_mark_another_attachment_of_the_pod_steers_is_a_conflict() {
    let c = config(
        json!([{"name": "vip", "side": "pod", "match": "connmark", "mark": "0x14", "mask": "0xff"}]),
    );
    let p = pod(&[("192.168.60.10/24", Some("192.168.60.1"))]);
    let own = 0x8000_0000u32 + 3 * 256;
    let other = 0x8000_0000u32 + 4 * 256;
    // The rule a pod-side connmark policy makes: the plan's own builder.
    let fwmark_rule = |mark, mask, table| {
        crate::plan::steering::fwmark_rule(&c.steering[0], table, Family::V4, mark, mask)
    };
    let with = |rules: Vec<RuleSpec>| {
        let mut f = facts(true, Some(3));
        if let Some(link) = f.pod_link.as_mut() {
            link.fwmark_rules = rules;
        }
        mark_conflict(&c, &p, &f)
    };
    assert_eq!(with(Vec::new()), None);
    // Its own rule (a re-ADD) is no conflict, also from before its
    // policies were reordered (another policy index, the same interface).
    assert_eq!(with(vec![fwmark_rule(0x14, Some(0xff), own)]), None);
    assert_eq!(with(vec![fwmark_rule(0x14, Some(0xff), own + 1)]), None);
    let why = with(vec![fwmark_rule(0x14, Some(0xff), other)]).expect("a conflict");
    assert!(
        why.contains("mark 0x14/0xff on net1") && why.contains(&format!("table {other}")),
        "{why}"
    );
    // The same bits under a wider mask, or a full-mask rule of that mark.
    assert!(with(vec![fwmark_rule(0x114, Some(0xfff), other)]).is_some());
    assert!(with(vec![fwmark_rule(0x14, None, other)]).is_some());
    // Another mark, or bits this mask does not cover.
    assert_eq!(with(vec![fwmark_rule(0x15, Some(0xff), other)]), None);
    assert_eq!(with(vec![fwmark_rule(0x100, Some(0xf00), other)]), None);
    // A node-side policy, or `source` in the pod, has no mark to meet.
    let node = config(
        json!([{"name": "vip", "side": "node", "match": "connmark", "mark": "0x14", "ingressInterfaces": ["eth1"], "table": 200, "gateways": [{"via": "192.168.60.1"}]}]),
    );
    let mut f = facts(true, Some(3));
    if let Some(link) = f.pod_link.as_mut() {
        link.fwmark_rules = vec![fwmark_rule(0x14, Some(0xff), other)];
    }
    assert_eq!(mark_conflict(&node, &p, &f), None);
    let source = config(json!([{"name": "lan", "side": "pod"}]));
    assert_eq!(mark_conflict(&source, &p, &f), None);
}
