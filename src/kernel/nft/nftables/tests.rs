//! Kernel tests of the nftables backend. They run as root, each in network
//! namespaces of its own, and read the kernel back with `nft -j`, `iptables
//! -S` and real traffic.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::{Value, json};

use super::testlab::*;
use super::*;
use crate::model::{FwExemption, FwPolicy, FwScope, Marking, MemberSet};

const NET: &str = "net1";
const TABLE: &str = "gwsteer-net1";

fn nets(cidrs: &[&str]) -> Vec<IpNet> {
    cidrs.iter().map(|c| c.parse().expect("a CIDR")).collect()
}

fn mark_policy(name: &str, egress_to: &[&str], exclude: &[&str], mark: u32, mask: u32) -> FwObject {
    FwObject::Policy(FwPolicy {
        scope: FwScope::Pod,
        network: NET.into(),
        policy: name.into(),
        mark,
        mask,
        marking: Marking::Mark {
            egress_to: nets(egress_to),
            exclude: nets(exclude),
        },
    })
}

fn connmark_policy(name: &str, ingress: &[&str], mark: u32, mask: u32) -> FwObject {
    FwObject::Policy(FwPolicy {
        scope: FwScope::Pod,
        network: NET.into(),
        policy: name.into(),
        mark,
        mask,
        marking: Marking::Connmark {
            ingress: ingress.iter().map(|s| s.to_string()).collect(),
        },
    })
}

fn member(policy: &str, addr: &str) -> FwObject {
    let ip: IpAddr = addr.parse().expect("an address");
    FwObject::Member(FwMember {
        set: MemberSet::Pod,
        network: NET.into(),
        policy: policy.into(),
        addr: IpNet::from(ip),
    })
}

/// `obj` (a policy) with `scope: subnet`.
fn per_subnet(obj: FwObject) -> FwObject {
    match obj {
        FwObject::Policy(p) => FwObject::Policy(FwPolicy {
            scope: FwScope::Subnet,
            ..p
        }),
        other => other,
    }
}

/// An element of a `scope: subnet` policy's sets: a subnet or an opt-out.
fn element(policy: &str, addr: &str, set: MemberSet) -> FwObject {
    FwObject::Member(FwMember {
        set,
        network: NET.into(),
        policy: policy.into(),
        addr: addr.parse().expect("a CIDR"),
    })
}

fn exemption(cidrs: &[&str], chains: &[&str]) -> FwObject {
    FwObject::Exemption(FwExemption {
        network: NET.into(),
        cidrs: nets(cidrs),
        chains: chains.iter().map(|s| s.to_string()).collect(),
    })
}

fn comment_of(obj: &FwObject) -> String {
    let plan = match obj {
        FwObject::Policy(p) => policy_plan(p),
        FwObject::Exemption(e) => exemption_plan(e),
        FwObject::Member(_) => unreachable!("members have no rules"),
    };
    plan.expect("a valid plan").comment
}

fn payload(proto: &str, field: &str) -> Value {
    json!({"payload": {"protocol": proto, "field": field}})
}

fn matches(op: &str, left: Value, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn set_def(listing: &[Value], name: &str) -> Value {
    let mut set = named(listing, "set", name)
        .unwrap_or_else(|| panic!("set {name} in {listing:#?}"))
        .clone();
    // Handles are the kernel's business.
    set.as_object_mut().map(|o| o.remove("handle"));
    set
}

fn chain_def(listing: &[Value], name: &str) -> (Value, Value, Value) {
    let chain = named(listing, "chain", name).unwrap_or_else(|| panic!("chain {name}"));
    (
        chain["type"].clone(),
        chain["hook"].clone(),
        chain["prio"].clone(),
    )
}

#[test]
fn mark_policy_makes_sets_chain_and_rules() {
    in_netns(|| {
        let mut fw = Nftables::new().expect("nftables works here");
        let policy = mark_policy(
            "egress",
            &["203.0.113.0/24", "198.51.100.9/32"],
            &["203.0.113.128/25", "fd00:99::/64"],
            0x1400,
            0xff00,
        );
        fw.ensure(&policy).unwrap();
        let listing = nft_table("inet", TABLE).expect("the table exists");

        let mut member_v4 =
            json!({"family": "inet", "name": "egress_v4", "table": TABLE, "type": "ipv4_addr"});
        if crate::kernel::probe::element_timeout_updates() {
            member_v4["flags"] = json!(["timeout"]);
        }
        assert_eq!(set_def(&listing, "egress_v4"), member_v4);
        assert_eq!(set_def(&listing, "egress_v6")["type"], "ipv6_addr");
        assert_eq!(
            set_def(&listing, "egress_to_v4"),
            json!({"family": "inet", "name": "egress_to_v4", "table": TABLE, "type": "ipv4_addr",
                   "flags": ["constant", "interval"],
                   "elem": ["198.51.100.9", {"prefix": {"addr": "203.0.113.0", "len": 24}}]})
        );
        // No IPv6 egress CIDRs: an empty set, so the IPv6 rule matches nothing.
        assert!(set_def(&listing, "egress_to_v6").get("elem").is_none());
        assert_eq!(
            set_def(&listing, "egress_ex_v6")["elem"],
            json!([{"prefix": {"addr": "fd00:99::", "len": 64}}])
        );
        assert_eq!(
            chain_def(&listing, "egress"),
            (json!("filter"), json!("prerouting"), json!(-150))
        );

        // nft shows `(mark & ~mask) | mark` folded as `& (~mask | mark) | mark`.
        let set_mark = json!({"mangle": {"key": {"meta": {"key": "mark"}},
            "value": {"|": [{"&": [{"meta": {"key": "mark"}}, 0xffff_14ffu32]}, 0x1400]}}});
        assert_eq!(
            chain_rules(&listing, "egress"),
            vec![
                json!([
                    matches("==", payload("ip", "saddr"), json!("@egress_v4")),
                    matches("==", payload("ip", "daddr"), json!("@egress_to_v4")),
                    matches("!=", payload("ip", "daddr"), json!("@egress_ex_v4")),
                    set_mark,
                ]),
                json!([
                    matches("==", payload("ip6", "saddr"), json!("@egress_v6")),
                    matches("==", payload("ip6", "daddr"), json!("@egress_to_v6")),
                    matches("!=", payload("ip6", "daddr"), json!("@egress_ex_v6")),
                    set_mark,
                ]),
            ]
        );
        let comment = comment_of(&policy);
        assert!(comment.starts_with("gwsteer net1/egress #"), "{comment}");
        assert!(
            items(&listing, "rule")
                .iter()
                .all(|r| r["comment"] == comment.as_str())
        );

        assert_eq!(fw.observe(&policy).unwrap(), Presence::Present);
        fw.remove(&policy).unwrap();
        assert_eq!(
            nft_table("inet", TABLE),
            None,
            "the last policy takes the table along"
        );
        assert_eq!(fw.observe(&policy).unwrap(), Presence::Missing);
        fw.remove(&policy).unwrap();
    });
}

#[test]
fn mark_policy_with_full_mask_sets_the_mark_outright() {
    in_netns(|| {
        let mut fw = Nftables::new().unwrap();
        let policy = mark_policy("all", &[], &[], 0x14, u32::MAX);
        fw.ensure(&policy).unwrap();
        let listing = nft_table("inet", TABLE).unwrap();
        let set_mark = json!({"mangle": {"key": {"meta": {"key": "mark"}}, "value": 0x14}});
        assert_eq!(
            chain_rules(&listing, "all"),
            vec![
                json!([
                    matches("==", payload("ip", "saddr"), json!("@all_v4")),
                    set_mark
                ]),
                json!([
                    matches("==", payload("ip6", "saddr"), json!("@all_v6")),
                    set_mark
                ]),
            ]
        );
        assert_eq!(fw.observe(&policy).unwrap(), Presence::Present);
    });
}

#[test]
fn connmark_policy_makes_ingress_and_reply_chains() {
    in_netns(|| {
        let mut fw = Nftables::new().unwrap();
        let policy = connmark_policy("ingress", &["eth0", "ing0"], 0x1400, 0xff00);
        fw.ensure(&policy).unwrap();
        let listing = nft_table("inet", TABLE).unwrap();
        assert_eq!(
            chain_def(&listing, "ingress_in"),
            (json!("filter"), json!("prerouting"), json!(-90))
        );
        assert_eq!(
            chain_def(&listing, "ingress"),
            (json!("filter"), json!("prerouting"), json!(-150))
        );
        let ct_mark_set = json!({"mangle": {"key": {"ct": {"key": "mark"}},
            "value": {"|": [{"&": [{"ct": {"key": "mark"}}, 0xffff_14ffu32]}, 0x1400]}}});
        let rule = |proto: &str, set: &str| {
            json!([
                matches(
                    "==",
                    json!({"meta": {"key": "iifname"}}),
                    json!({"set": ["eth0", "ing0"]})
                ),
                matches("in", json!({"ct": {"key": "state"}}), json!("new")),
                matches("==", payload(proto, "daddr"), json!(set)),
                ct_mark_set,
            ])
        };
        assert_eq!(
            chain_rules(&listing, "ingress_in"),
            vec![rule("ip", "@ingress_v4"), rule("ip6", "@ingress_v6")]
        );
        assert_eq!(
            chain_rules(&listing, "ingress"),
            vec![json!([
                matches("==", json!({"ct": {"key": "direction"}}), json!("reply")),
                matches("==", json!({"&": [{"ct": {"key": "mark"}}, 0xff00]}), json!(0x1400)),
                {"mangle": {"key": {"meta": {"key": "mark"}},
                    "value": {"|": [{"&": [{"meta": {"key": "mark"}}, 0xffff_14ffu32]}, 0x1400]}}},
            ])]
        );
        assert_eq!(fw.observe(&policy).unwrap(), Presence::Present);

        // A second policy shares the table; removing one leaves the other.
        let other = connmark_policy("single", &["ing0"], 0x2, u32::MAX);
        fw.ensure(&other).unwrap();
        let listing = nft_table("inet", TABLE).unwrap();
        assert_eq!(
            chain_rules(&listing, "single_in")[0][0],
            matches("==", json!({"meta": {"key": "iifname"}}), json!("ing0"))
        );
        fw.remove(&policy).unwrap();
        assert_eq!(fw.observe(&policy).unwrap(), Presence::Missing);
        assert_eq!(fw.observe(&other).unwrap(), Presence::Present);
        let listing = nft_table("inet", TABLE).unwrap();
        assert!(named(&listing, "set", "ingress_v4").is_none());
        assert!(named(&listing, "chain", "ingress_in").is_none());
        fw.remove(&other).unwrap();
        assert_eq!(nft_table("inet", TABLE), None);
    });
}

#[test]
fn members_are_added_observed_and_removed() {
    in_netns(|| {
        let mut fw = Nftables::new().unwrap();
        let pod4 = member("egress", "10.244.1.5");
        let pod6 = member("egress", "fd00:244::5");
        let err = fw.ensure(&pod4).unwrap_err();
        assert_eq!(err.code, code::FIREWALL);
        assert!(
            err.msg.contains("gwsteer-net1") && err.msg.contains("egress_v4"),
            "{err}"
        );
        assert_eq!(fw.observe(&pod4).unwrap(), Presence::Missing);
        fw.remove(&pod4).unwrap();

        fw.ensure(&mark_policy("egress", &[], &[], 0x14, u32::MAX))
            .unwrap();
        let runs = fw.batches;
        for pod in [&pod4, &pod6] {
            fw.ensure(pod).unwrap();
            fw.ensure(pod).unwrap();
            assert_eq!(fw.observe(pod).unwrap(), Presence::Present);
        }
        assert_eq!(fw.batches, runs, "members commit no ruleset batch");
        let listing = nft_table("inet", TABLE).unwrap();
        assert_eq!(
            set_def(&listing, "egress_v4")["elem"],
            json!(["10.244.1.5"])
        );
        assert_eq!(
            set_def(&listing, "egress_v6")["elem"],
            json!(["fd00:244::5"])
        );
        assert_eq!(
            fw.observe(&member("egress", "10.244.1.6")).unwrap(),
            Presence::Missing
        );

        for pod in [&pod4, &pod6] {
            fw.remove(pod).unwrap();
            assert!(
                gone_within_a_tick(&mut fw, pod),
                "{pod} still an element two ticks after its removal"
            );
            fw.remove(pod).unwrap();
        }
        let listing = nft_table("inet", TABLE).unwrap();
        assert!(set_def(&listing, "egress_v4").get("elem").is_none());

        let subnet = FwObject::Member(FwMember {
            set: MemberSet::Pod,
            network: NET.into(),
            policy: "egress".into(),
            addr: "10.244.1.0/24".parse().unwrap(),
        });
        assert_eq!(fw.ensure(&subnet).unwrap_err().code, code::INVALID_CONFIG);
    });
}

#[test]
fn ensure_of_an_intact_policy_runs_nothing() {
    in_netns(|| {
        let mut fw = Nftables::new().unwrap();
        let policies = [
            mark_policy("egress", &["203.0.113.0/24"], &["10.96.0.0/12"], 0x14, 0xff),
            connmark_policy("ingress", &["eth0"], 0x1400, 0xff00),
            exemption(&["10.20.0.0/24", "fd00:20::/64"], &[]),
        ];
        for p in &policies {
            fw.ensure(p).unwrap();
        }
        let runs = fw.batches;
        let generation = fw.nl.generation().unwrap();
        for p in &policies {
            fw.ensure(p).unwrap();
        }
        assert_eq!(fw.batches, runs, "a second ensure commits nothing");
        assert_eq!(
            fw.nl.generation().unwrap(),
            generation,
            "a second ensure commits nothing"
        );
        for p in &policies {
            assert_eq!(fw.observe(p).unwrap(), Presence::Present, "{p}");
        }
    });
}

#[test]
fn a_damaged_policy_is_detected_and_repaired_keeping_its_members() {
    in_netns(|| {
        let mut fw = Nftables::new().unwrap();
        let policy = mark_policy("egress", &["203.0.113.0/24"], &[], 0x14, u32::MAX);
        let pod = member("egress", "10.244.1.5");
        fw.ensure(&policy).unwrap();
        fw.ensure(&pod).unwrap();

        // A chain deleted by hand.
        run("nft", &["delete", "chain", "inet", TABLE, "egress"]);
        match fw.observe(&policy).unwrap() {
            Presence::Drifted(why) => assert!(why.contains("chain egress is missing"), "{why}"),
            other => panic!("expected drift, got {other:?}"),
        }
        fw.ensure(&policy).unwrap();
        assert_eq!(fw.observe(&policy).unwrap(), Presence::Present);
        assert_eq!(
            fw.observe(&pod).unwrap(),
            Presence::Present,
            "members survive a repair"
        );

        // A foreign rule slipped into gwsteer's chain.
        run("nft", &["add", "rule", "inet", TABLE, "egress", "counter"]);
        assert!(matches!(fw.observe(&policy).unwrap(), Presence::Drifted(_)));
        fw.ensure(&policy).unwrap();
        assert_eq!(fw.observe(&policy).unwrap(), Presence::Present);
        assert_eq!(
            chain_rules(&nft_table("inet", TABLE).unwrap(), "egress").len(),
            2
        );

        // A repair planned from a stale listing (it saw no table) applies
        // over the complete policy all the same.
        let FwObject::Policy(spec) = &policy else {
            unreachable!()
        };
        let timeouts = crate::kernel::probe::element_timeout_updates();
        fw.commit(&policy_plan(spec).unwrap().transaction(None, timeouts))
            .unwrap();
        assert_eq!(fw.observe(&policy).unwrap(), Presence::Present);
        assert_eq!(fw.observe(&pod).unwrap(), Presence::Present);

        // The whole table deleted.
        run("nft", &["delete", "table", "inet", TABLE]);
        assert_eq!(fw.observe(&policy).unwrap(), Presence::Missing);
        fw.ensure(&policy).unwrap();
        assert_eq!(fw.observe(&policy).unwrap(), Presence::Present);

        // A member set re-made by hand with the wrong type.
        run("nft", &["delete", "chain", "inet", TABLE, "egress"]);
        run("nft", &["delete", "set", "inet", TABLE, "egress_v4"]);
        run(
            "nft",
            &[
                "add",
                "set",
                "inet",
                TABLE,
                "egress_v4",
                "{ type ipv6_addr; }",
            ],
        );
        assert!(matches!(fw.observe(&policy).unwrap(), Presence::Drifted(_)));
        fw.ensure(&policy).unwrap();
        assert_eq!(fw.observe(&policy).unwrap(), Presence::Present);
        assert_eq!(
            fw.observe(&pod).unwrap(),
            Presence::Missing,
            "its elements went with it"
        );
        fw.ensure(&pod).unwrap();

        // The spec changed: new egress CIDRs, an exclude, another mark.
        let changed = mark_policy(
            "egress",
            &["192.0.2.0/24"],
            &["192.0.2.1/32"],
            0x15,
            u32::MAX,
        );
        match fw.observe(&changed).unwrap() {
            Presence::Drifted(_) => {}
            other => panic!("a changed spec is drift, got {other:?}"),
        }
        fw.ensure(&pod).unwrap();
        fw.ensure(&changed).unwrap();
        assert_eq!(fw.observe(&changed).unwrap(), Presence::Present);
        assert_eq!(fw.observe(&pod).unwrap(), Presence::Present);
        let listing = nft_table("inet", TABLE).unwrap();
        assert_eq!(
            set_def(&listing, "egress_to_v4")["elem"],
            json!([{"prefix": {"addr": "192.0.2.0", "len": 24}}])
        );

        // Back to the old spec: the exclude sets are stale and go.
        fw.ensure(&policy).unwrap();
        assert_eq!(fw.observe(&policy).unwrap(), Presence::Present);
        let listing = nft_table("inet", TABLE).unwrap();
        assert!(named(&listing, "set", "egress_ex_v4").is_none());

        // Switching marking mode leaves nothing of the old one.
        let connmark = connmark_policy("egress", &["eth0"], 0x14, u32::MAX);
        fw.ensure(&connmark).unwrap();
        assert_eq!(fw.observe(&connmark).unwrap(), Presence::Present);
        assert!(named(&nft_table("inet", TABLE).unwrap(), "set", "egress_to_v4").is_none());
        fw.ensure(&policy).unwrap();
        assert!(named(&nft_table("inet", TABLE).unwrap(), "chain", "egress_in").is_none());
        assert_eq!(fw.observe(&policy).unwrap(), Presence::Present);
        assert_eq!(fw.observe(&pod).unwrap(), Presence::Present);
    });
}

#[test]
fn cleanup_removes_all_and_only_gwsteer_objects() {
    in_netns(|| {
        let mut fw = Nftables::new().unwrap();
        fw.ensure(&mark_policy("egress", &[], &[], 0x14, u32::MAX))
            .unwrap();
        fw.ensure(&FwObject::Exemption(FwExemption {
            network: "net2".into(),
            cidrs: nets(&["10.30.0.0/24"]),
            chains: vec!["KIND-MASQ-AGENT".into()],
        }))
        .unwrap();
        run("nft", &["add", "table", "ip", "gwsteer-old"]);
        run("nft", &["add", "table", "inet", "foreign"]);
        run("nft", &["add", "table", "inet", "gwsteerish"]);
        for bin in ["iptables-legacy", "iptables-nft"] {
            run(bin, &["-w", "-t", "nat", "-N", "KIND-MASQ-AGENT"]);
            run(
                bin,
                &[
                    "-w",
                    "-t",
                    "nat",
                    "-A",
                    "KIND-MASQ-AGENT",
                    "-j",
                    "MASQUERADE",
                ],
            );
            run(
                bin,
                &[
                    "-w",
                    "-t",
                    "nat",
                    "-A",
                    "POSTROUTING",
                    "-s",
                    "10.9.0.0/16",
                    "-m",
                    "comment",
                    "--comment",
                    "kube: not ours",
                    "-j",
                    "RETURN",
                ],
            );
        }
        fw.ensure(&FwObject::Exemption(FwExemption {
            network: "net2".into(),
            cidrs: nets(&["10.30.0.0/24"]),
            chains: vec!["KIND-MASQ-AGENT".into()],
        }))
        .unwrap();

        let tables_before = nft_tables();
        let mut planned = fw.cleanup(true).unwrap();
        planned.sort();
        assert_eq!(
            planned,
            [
                "iptables-legacy -t nat -A KIND-MASQ-AGENT -s 10.30.0.0/24 -m comment --comment gwsteer:net2 -j RETURN",
                "iptables-nft -t nat -A KIND-MASQ-AGENT -s 10.30.0.0/24 -m comment --comment gwsteer:net2 -j RETURN",
                "nftables table inet gwsteer-net1",
                "nftables table inet gwsteer-net2",
                "nftables table ip gwsteer-old",
            ]
        );
        assert_eq!(nft_tables(), tables_before, "a dry run removes nothing");

        let mut done = fw.cleanup(false).unwrap();
        done.sort();
        assert_eq!(done, planned);
        let mut left = nft_tables();
        left.sort();
        assert_eq!(
            left,
            [
                ("inet".to_string(), "foreign".to_string()),
                ("inet".to_string(), "gwsteerish".to_string()),
                ("ip".to_string(), "nat".to_string()),
            ]
        );
        for bin in ["iptables-legacy", "iptables-nft"] {
            assert_eq!(
                xt_rules(bin, "KIND-MASQ-AGENT"),
                ["-A KIND-MASQ-AGENT -j MASQUERADE"]
            );
            assert_eq!(
                xt_rules(bin, "POSTROUTING").len(),
                1,
                "{bin}: foreign rules stay"
            );
        }
        assert!(fw.cleanup(false).unwrap().is_empty());
    });
}

#[test]
fn exemption_puts_returns_at_the_top_of_foreign_chains() {
    in_netns(|| {
        let mut fw = Nftables::new().unwrap();
        for bin in ["iptables-legacy", "iptables-nft"] {
            run(bin, &["-w", "-t", "nat", "-N", "KIND-MASQ-AGENT"]);
            run(
                bin,
                &[
                    "-w",
                    "-t",
                    "nat",
                    "-A",
                    "KIND-MASQ-AGENT",
                    "-d",
                    "10.244.0.0/16",
                    "-j",
                    "RETURN",
                ],
            );
            run(
                bin,
                &[
                    "-w",
                    "-t",
                    "nat",
                    "-A",
                    "KIND-MASQ-AGENT",
                    "-j",
                    "MASQUERADE",
                ],
            );
        }
        let exempt = exemption(
            &["10.20.0.0/24", "10.21.0.0/24", "fd00:20::/64"],
            &["KIND-MASQ-AGENT", "NO-SUCH-CHAIN"],
        );
        fw.ensure(&exempt).unwrap();
        let ours = |cidr: &str| {
            format!("-A KIND-MASQ-AGENT -s {cidr} -m comment --comment \"gwsteer:net1\" -j RETURN")
        };
        let expected = vec![
            ours("10.20.0.0/24"),
            ours("10.21.0.0/24"),
            "-A KIND-MASQ-AGENT -d 10.244.0.0/16 -j RETURN".to_string(),
            "-A KIND-MASQ-AGENT -j MASQUERADE".to_string(),
        ];
        for bin in ["iptables-legacy", "iptables-nft"] {
            assert_eq!(xt_rules(bin, "KIND-MASQ-AGENT"), expected, "{bin}");
        }
        // No IPv6 chain exists: nothing was made for the IPv6 CIDR.
        assert!(
            !std::fs::read_to_string("/proc/thread-self/net/ip6_tables_names")
                .unwrap_or_default()
                .contains("nat"),
            "gwsteer made ip6tables-legacy load its nat table"
        );

        // The nat chain before srcnat: an identity mapping per family.
        let listing = nft_table("inet", TABLE).unwrap();
        assert_eq!(
            chain_def(
                &listing,
                "masq_exempt_10.20.0.0_24+10.21.0.0_24+fd00.20.._64"
            ),
            (json!("nat"), json!("postrouting"), json!(90))
        );
        assert_eq!(
            chain_rules(
                &listing,
                "masq_exempt_10.20.0.0_24+10.21.0.0_24+fd00.20.._64"
            ),
            vec![
                json!([
                    matches("==", payload("ip", "saddr"), json!({"set": [
                        {"prefix": {"addr": "10.20.0.0", "len": 24}},
                        {"prefix": {"addr": "10.21.0.0", "len": 24}}]})),
                    {"snat": {"family": "ip", "addr": payload("ip", "saddr")}},
                ]),
                json!([
                    matches("==", payload("ip6", "saddr"), json!({"prefix": {"addr": "fd00:20::", "len": 64}})),
                    {"snat": {"family": "ip6", "addr": payload("ip6", "saddr")}},
                ]),
            ]
        );
        assert_eq!(fw.observe(&exempt).unwrap(), Presence::Present);

        // The masq agent rewrote its chain: drift, then repair at the top.
        run(
            "iptables-legacy",
            &["-w", "-t", "nat", "-F", "KIND-MASQ-AGENT"],
        );
        run(
            "iptables-legacy",
            &[
                "-w",
                "-t",
                "nat",
                "-A",
                "KIND-MASQ-AGENT",
                "-j",
                "MASQUERADE",
            ],
        );
        match fw.observe(&exempt).unwrap() {
            Presence::Drifted(why) => assert!(
                why.contains("iptables-legacy nat chain KIND-MASQ-AGENT"),
                "{why}"
            ),
            other => panic!("expected drift, got {other:?}"),
        }
        fw.ensure(&exempt).unwrap();
        assert_eq!(
            xt_rules("iptables-legacy", "KIND-MASQ-AGENT"),
            [
                ours("10.20.0.0/24"),
                ours("10.21.0.0/24"),
                "-A KIND-MASQ-AGENT -j MASQUERADE".into()
            ]
        );
        assert_eq!(fw.observe(&exempt).unwrap(), Presence::Present);

        fw.remove(&exempt).unwrap();
        assert_eq!(
            xt_rules("iptables-legacy", "KIND-MASQ-AGENT"),
            ["-A KIND-MASQ-AGENT -j MASQUERADE"]
        );
        assert_eq!(xt_rules("iptables-nft", "KIND-MASQ-AGENT"), expected[2..]);
        assert_eq!(nft_table("inet", TABLE), None);
        assert_eq!(fw.observe(&exempt).unwrap(), Presence::Missing);
        fw.remove(&exempt).unwrap();
    });
}

#[test]
fn iptables_readers_see_what_iptables_writes() {
    use super::super::foreign::ChainState;
    use crate::kernel::nft::xtables::Variant;
    in_netns(|| {
        let mut fw = Nftables::new().unwrap();
        let cases = [
            (
                Family::V4,
                &[
                    "10.20.16.0/20",
                    "10.20.0.5/32",
                    "10.21.0.0/16",
                    "10.22.0.0/25",
                    "0.0.0.0/1",
                ][..],
            ),
            (
                Family::V6,
                &[
                    "fd00:20::/64",
                    "fd00:21::/60",
                    "fd00:22::1/128",
                    "fd00:23::/127",
                ][..],
            ),
        ];
        for variant in [Variant::Legacy, Variant::Nft] {
            for (family, ours) in cases {
                let tool = Tool { variant, family };
                let bin = tool.binary();
                let xt = |args: &[&str]| {
                    let mut all = vec!["-w", "-t", "nat"];
                    all.extend_from_slice(args);
                    run(bin, &all);
                };
                let foreign = if family == Family::V4 {
                    "10.30.0.0/16"
                } else {
                    "fd00:30::/64"
                };
                let read = |fw: &mut Nftables, chain: &str| {
                    fw.xt.read_chain(&mut fw.nl, tool, chain, "n1").unwrap()
                };
                assert_eq!(
                    read(&mut fw, "KIND-MASQ-AGENT"),
                    ChainState::Absent,
                    "{bin}"
                );
                xt(&["-N", "KIND-MASQ-AGENT"]);
                assert_eq!(
                    read(&mut fw, "KIND-MASQ-AGENT"),
                    ChainState::Present(vec![]),
                    "{bin}"
                );
                xt(&["-A", "KIND-MASQ-AGENT", "-s", foreign, "-j", "RETURN"]);
                xt(&[
                    "-A",
                    "KIND-MASQ-AGENT",
                    "-s",
                    foreign,
                    "-m",
                    "comment",
                    "--comment",
                    "gwsteer:n2",
                    "-j",
                    "RETURN",
                ]);
                for (chain, position) in [("KIND-MASQ-AGENT", None), ("POSTROUTING", Some("1"))] {
                    for cidr in ours {
                        let mut args = vec![if position.is_some() { "-I" } else { "-A" }, chain];
                        args.extend(position);
                        args.extend([
                            "-s",
                            cidr,
                            "-m",
                            "comment",
                            "--comment",
                            "gwsteer:n1",
                            "-j",
                            "RETURN",
                        ]);
                        xt(&args);
                    }
                }
                xt(&["-A", "KIND-MASQ-AGENT", "-j", "MASQUERADE"]);
                let mut want: Vec<IpNet> = nets(ours);
                assert_eq!(
                    read(&mut fw, "KIND-MASQ-AGENT"),
                    ChainState::Present(want.clone()),
                    "{bin}"
                );
                want.reverse();
                assert_eq!(
                    read(&mut fw, "POSTROUTING"),
                    ChainState::Present(want),
                    "{bin}"
                );

                // Same comment, other conditions: never taken for gwsteer's.
                let odd: [&[&str]; 3] = [
                    &["!", "-s", foreign],
                    &["-s", foreign, "-o", "eth0"],
                    &["-s", foreign, "-p", "tcp"],
                ];
                for extra in odd {
                    let mut args = vec!["-A", "KIND-MASQ-AGENT"];
                    args.extend_from_slice(extra);
                    args.extend(["-m", "comment", "--comment", "gwsteer:n1", "-j", "RETURN"]);
                    xt(&args);
                }
                let state = read(&mut fw, "KIND-MASQ-AGENT");
                match variant {
                    Variant::Legacy => assert_eq!(state, ChainState::Present(nets(ours)), "{bin}"),
                    // An unknown shape with gwsteer's comment: ask iptables.
                    Variant::Nft => assert_eq!(state, ChainState::Unreadable, "{bin}"),
                }
            }
        }
    });
}

#[test]
fn nftables_is_unavailable_when_the_kernel_refuses() {
    in_netns(|| {
        assert!(find_binary("nft").is_some());
        assert!(find_binary("gwsteer-no-such-binary").is_none());
        drop_net_admin();
        let err = Nftables::new()
            .err()
            .expect("no CAP_NET_ADMIN, no nf_tables");
        assert_eq!(err.code, code::NOT_AVAILABLE, "{err}");
        assert!(err.to_string().contains("CAP_NET_ADMIN"), "{err}");
    });
}

/// Drops CAP_NET_ADMIN from the calling thread's effective capabilities
/// (capabilities are per thread; the rest of the test process keeps it).
fn drop_net_admin() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    const CAP_NET_ADMIN: u32 = 12;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data structs, as the
    // ABI asks; both live across the calls.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()),
            0
        );
        data[0].effective &= !(1 << CAP_NET_ADMIN);
        assert_eq!(
            libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()),
            0
        );
    }
}

/// Per-operation cost of the hot paths, printed (`--nocapture`) for the
/// record; the bounds are loose so that a busy machine does not fail them.
#[test]
fn hot_paths_are_cheap() {
    in_netns(|| {
        let mut fw = Nftables::new().unwrap();
        let policy = mark_policy("egress", &["203.0.113.0/24"], &["10.96.0.0/12"], 0x14, 0xff);
        let connmark = connmark_policy("ingress", &["eth0"], 0x1400, 0xff00);
        fw.ensure(&policy).unwrap();
        fw.ensure(&connmark).unwrap();
        // A realistic set: a few hundred pods already in it.
        for i in 0..300u32 {
            let ip = format!("10.244.{}.{}", i / 250, i % 250 + 1);
            fw.ensure(&member("egress", &ip)).unwrap();
        }
        const N: u32 = 2000;
        let time = |f: &mut dyn FnMut(u32)| {
            let start = Instant::now();
            for i in 0..N {
                f(i);
            }
            start.elapsed() / N
        };
        // Warm up first: the first few hundred calls pay for cold caches.
        let _ = time(&mut |_| fw.ensure(&policy).unwrap());
        let ensure_policy = time(&mut |_| fw.ensure(&policy).unwrap());
        let ensure_connmark = time(&mut |_| fw.ensure(&connmark).unwrap());
        let pod = |i: u32| member("egress", &format!("10.245.{}.{}", i / 250, i % 250 + 1));
        let add = time(&mut |i| fw.ensure(&pod(i)).unwrap());
        let observe = time(&mut |i| assert_eq!(fw.observe(&pod(i)).unwrap(), Presence::Present));
        let remove = time(&mut |i| fw.remove(&pod(i)).unwrap());
        // What one CNI invocation pays: a new backend and a first ensure.
        let cold = Instant::now();
        let mut fresh = Nftables::new().unwrap();
        let opened = cold.elapsed();
        fresh.ensure(&policy).unwrap();
        let first = cold.elapsed() - opened;
        println!("cold: Nftables::new() {opened:?}, first ensure(existing mark policy) {first:?}");
        println!(
            "per operation: ensure(existing mark policy) {ensure_policy:?}, \
             ensure(existing connmark policy) {ensure_connmark:?}, member add {add:?}, \
             member observe {observe:?}, member remove {remove:?}"
        );
        // An exemption whose chain exists in both iptables variants.
        for bin in ["iptables-legacy", "iptables-nft"] {
            run(bin, &["-w", "-t", "nat", "-N", "KIND-MASQ-AGENT"]);
        }
        let exempt = exemption(&["10.20.0.0/24"], &["KIND-MASQ-AGENT"]);
        fw.ensure(&exempt).unwrap();
        let start = Instant::now();
        for _ in 0..50 {
            fw.ensure(&exempt).unwrap();
        }
        let ensure_exemption = start.elapsed() / 50;
        println!(
            "per operation: ensure(existing exemption with RETURNs in legacy and nft) {ensure_exemption:?}"
        );
        let bound = Duration::from_millis(2);
        for (what, took) in [
            ("ensure policy", ensure_policy),
            ("member add", add),
            ("member remove", remove),
        ] {
            assert!(took < bound, "{what} took {took:?}");
        }
    });
}

// ---- real traffic ----

/// pod (10.20.0.2) — node (10.20.0.1 | 192.0.2.1) — peer (192.0.2.2), the
/// peer routing the pod network back via the node.
struct RoutedLab {
    pod: Netns,
    node: Netns,
    peer: Netns,
}

impl RoutedLab {
    fn new() -> RoutedLab {
        let lab = RoutedLab {
            pod: Netns::new("pod"),
            node: Netns::new("node"),
            peer: Netns::new("peer"),
        };
        veth(
            &lab.node,
            "host0",
            "10.20.0.1/24",
            &lab.pod,
            "eth0",
            "10.20.0.2/24",
        );
        veth(
            &lab.node,
            "np0",
            "192.0.2.1/24",
            &lab.peer,
            "eth0",
            "192.0.2.2/24",
        );
        lab.node.sysctl("net.ipv4.ip_forward=1");
        lab.pod.ip(&["route", "add", "default", "via", "10.20.0.1"]);
        lab.peer
            .ip(&["route", "add", "10.20.0.0/24", "via", "192.0.2.1"]);
        lab
    }

    /// The source address the peer sees for a TCP connection from the pod.
    fn seen_by_peer(&self, port: u16) -> IpAddr {
        let to = SocketAddr::new("192.0.2.2".parse().unwrap(), port);
        let seen = serve_once(&self.peer, to);
        round_trip(&self.pod, None, to).expect("the pod reaches the peer");
        seen.recv_timeout(Duration::from_secs(5))
            .expect("the peer saw a client")
            .ip()
    }
}

#[derive(Clone, Copy, Debug)]
enum Masquerade {
    IptablesLegacy,
    IptablesNft,
    Nftables,
}

fn exemption_beats(masq: Masquerade) {
    let lab = RoutedLab::new();
    match masq {
        Masquerade::IptablesLegacy | Masquerade::IptablesNft => {
            let bin = match masq {
                Masquerade::IptablesLegacy => "iptables-legacy",
                _ => "iptables-nft",
            };
            lab.node.exec(
                bin,
                &["-w", "-t", "nat", "-A", "POSTROUTING", "-j", "MASQUERADE"],
            );
        }
        Masquerade::Nftables => {
            lab.node.exec("nft", &["add", "table", "ip", "primary"]);
            lab.node.exec(
                "nft",
                &[
                    "add",
                    "chain",
                    "ip",
                    "primary",
                    "post",
                    "{ type nat hook postrouting priority srcnat; }",
                ],
            );
            lab.node.exec(
                "nft",
                &["add", "rule", "ip", "primary", "post", "masquerade"],
            );
        }
    }
    let node: IpAddr = "192.0.2.1".parse().unwrap();
    let pod: IpAddr = "10.20.0.2".parse().unwrap();
    assert_eq!(
        lab.seen_by_peer(7001),
        node,
        "{masq:?}: masqueraded without the exemption"
    );

    let exempt = exemption(&["10.20.0.0/24"], &[]);
    let obj = exempt.clone();
    lab.node
        .run(move || Nftables::new().unwrap().ensure(&obj))
        .unwrap();
    assert_eq!(
        lab.seen_by_peer(7002),
        pod,
        "{masq:?}: the exemption keeps the pod's address"
    );

    let obj = exempt.clone();
    lab.node
        .run(move || Nftables::new().unwrap().remove(&obj))
        .unwrap();
    assert_eq!(
        lab.seen_by_peer(7003),
        node,
        "{masq:?}: masqueraded again after removal"
    );
}

#[test]
fn exemption_beats_iptables_legacy_masquerade() {
    exemption_beats(Masquerade::IptablesLegacy);
}

#[test]
fn exemption_beats_iptables_nft_masquerade() {
    exemption_beats(Masquerade::IptablesNft);
}

#[test]
fn exemption_beats_nftables_masquerade() {
    exemption_beats(Masquerade::Nftables);
}

/// pod (10.20.0.2) — node — ext, over two paths: A (node ing0 192.0.2.1 ↔
/// ext extA 192.0.2.2) and B (node gw0 198.51.100.1 ↔ ext extB
/// 198.51.100.2). ext owns 203.0.113.7 and .8 (on lo) and routes the pod
/// network via A from 203.0.113.7. The node's main table reaches ext's
/// addresses via A; table 100 (`fwmark 0x1400/0xff00`) sends everything via
/// B. ext counts packets from the pod per path.
struct TwoPathLab {
    pod: Netns,
    node: Netns,
    ext: Netns,
}

const POD: &str = "10.20.0.2";
/// The node's address in the pod subnet (the pod's gateway).
const NODE_POD_SIDE: &str = "10.20.0.1";

impl TwoPathLab {
    fn new() -> TwoPathLab {
        let lab = TwoPathLab {
            pod: Netns::new("pod"),
            node: Netns::new("node"),
            ext: Netns::new("ext"),
        };
        veth(
            &lab.node,
            "host0",
            "10.20.0.1/24",
            &lab.pod,
            "eth0",
            "10.20.0.2/24",
        );
        veth(
            &lab.node,
            "ing0",
            "192.0.2.1/24",
            &lab.ext,
            "extA",
            "192.0.2.2/24",
        );
        veth(
            &lab.node,
            "gw0",
            "198.51.100.1/24",
            &lab.ext,
            "extB",
            "198.51.100.2/24",
        );
        lab.node.sysctl("net.ipv4.ip_forward=1");
        lab.pod.ip(&["route", "add", "default", "via", "10.20.0.1"]);
        lab.ext.ip(&["addr", "add", "203.0.113.7/32", "dev", "lo"]);
        lab.ext.ip(&["addr", "add", "203.0.113.8/32", "dev", "lo"]);
        lab.ext.ip(&[
            "route",
            "add",
            "10.20.0.0/24",
            "via",
            "192.0.2.1",
            "src",
            "203.0.113.7",
        ]);
        lab.node
            .ip(&["route", "add", "203.0.113.0/24", "via", "192.0.2.2"]);
        lab.node.ip(&[
            "route",
            "add",
            "default",
            "via",
            "198.51.100.2",
            "table",
            "100",
        ]);
        lab.node.ip(&[
            "rule",
            "add",
            "fwmark",
            "0x1400/0xff00",
            "lookup",
            "100",
            "priority",
            "100",
        ]);
        lab.ext.exec("nft", &["add", "table", "inet", "probe"]);
        lab.ext.exec(
            "nft",
            &[
                "add",
                "chain",
                "inet",
                "probe",
                "pre",
                "{ type filter hook prerouting priority 0; }",
            ],
        );
        for (dev, from, comment) in [
            ("extA", POD, "from-pod-via-A"),
            ("extB", POD, "from-pod-via-B"),
            ("extA", NODE_POD_SIDE, "from-node-via-A"),
            ("extB", NODE_POD_SIDE, "from-node-via-B"),
        ] {
            lab.ext.exec(
                "nft",
                &[
                    "add", "rule", "inet", "probe", "pre", "iifname", dev, "ip", "saddr", from,
                    "counter", "comment", comment,
                ],
            );
        }
        lab
    }

    /// Packets from the pod that reached ext (via A, via B) since the start.
    fn arrivals(&self) -> (u64, u64) {
        let listing: Vec<Value> = {
            let out = self
                .ext
                .exec("nft", &["-j", "list", "table", "inet", "probe"]);
            let doc: Value = serde_json::from_str(&out).unwrap();
            doc["nftables"].as_array().cloned().unwrap()
        };
        (
            counter(&listing, "from-pod-via-A"),
            counter(&listing, "from-pod-via-B"),
        )
    }

    /// Packets from the node's pod-side address that reached ext (via A,
    /// via B) since the start.
    fn node_arrivals(&self) -> (u64, u64) {
        let out = self
            .ext
            .exec("nft", &["-j", "list", "table", "inet", "probe"]);
        let doc: Value = serde_json::from_str(&out).unwrap();
        let listing = doc["nftables"].as_array().cloned().unwrap();
        (
            counter(&listing, "from-node-via-A"),
            counter(&listing, "from-node-via-B"),
        )
    }

    /// The node connects from its pod-side address to ext's `addr`; the
    /// change in its arrivals (via A, via B).
    fn node_connects(&self, addr: &str, port: u16) -> (u64, u64) {
        let to = SocketAddr::new(addr.parse().unwrap(), port);
        let _seen = serve_once(&self.ext, to);
        let before = self.node_arrivals();
        let from = Some(NODE_POD_SIDE.parse().unwrap());
        round_trip(&self.node, from, to).unwrap_or_else(|e| panic!("node → {addr}: {e}"));
        let after = self.node_arrivals();
        (after.0 - before.0, after.1 - before.1)
    }

    /// Change in arrivals over `f`.
    fn delta(&self, f: impl FnOnce()) -> (u64, u64) {
        let before = self.arrivals();
        f();
        let after = self.arrivals();
        (after.0 - before.0, after.1 - before.1)
    }

    fn on_node<T: Send + 'static>(&self, f: impl FnOnce(&mut Nftables) -> T + Send + 'static) -> T {
        self.node.run(move || f(&mut Nftables::new().unwrap()))
    }

    /// The pod connects to ext's `addr`; panics unless the echo comes back.
    fn pod_connects(&self, addr: &str, port: u16) {
        let to = SocketAddr::new(addr.parse().unwrap(), port);
        let _seen = serve_once(&self.ext, to);
        round_trip(&self.pod, None, to).unwrap_or_else(|e| panic!("pod → {addr}: {e}"));
    }
}

#[test]
fn mark_policy_marks_real_traffic() {
    let lab = TwoPathLab::new();
    let policy = mark_policy(
        "egress",
        &["203.0.113.0/24"],
        &["203.0.113.8/32"],
        0x1400,
        0xff00,
    );
    let obj = policy.clone();
    lab.on_node(move |fw| fw.ensure(&obj)).unwrap();

    // Not a member yet: unmarked, main table, path A.
    let (a, b) = lab.delta(|| lab.pod_connects("203.0.113.7", 7101));
    assert!(a > 0 && b == 0, "before membership: via A {a}, via B {b}");

    lab.on_node(|fw| fw.ensure(&member("egress", POD))).unwrap();
    let (a, b) = lab.delta(|| lab.pod_connects("203.0.113.7", 7102));
    assert!(
        a == 0 && b > 0,
        "a member's egress is marked: via A {a}, via B {b}"
    );

    // Excluded destination: never marked.
    let (a, b) = lab.delta(|| lab.pod_connects("203.0.113.8", 7103));
    assert!(a > 0 && b == 0, "excluded: via A {a}, via B {b}");

    lab.on_node(|fw| fw.remove(&member("egress", POD))).unwrap();
    let (a, b) = lab.delta(|| lab.pod_connects("203.0.113.7", 7104));
    assert!(a > 0 && b == 0, "after removal: via A {a}, via B {b}");
}

#[test]
fn mark_policy_leaves_destinations_outside_egress_to_alone() {
    let lab = TwoPathLab::new();
    // Only 198.18.0.0/15 is steered; 203.0.113.7 is not in it.
    let policy = mark_policy("egress", &["198.18.0.0/15"], &[], 0x1400, 0xff00);
    let obj = policy.clone();
    lab.on_node(move |fw| {
        fw.ensure(&obj)?;
        fw.ensure(&member("egress", POD))
    })
    .unwrap();
    let (a, b) = lab.delta(|| lab.pod_connects("203.0.113.7", 7201));
    assert!(a > 0 && b == 0, "outside egressTo: via A {a}, via B {b}");
}

#[test]
fn connmark_policy_steers_replies_only() {
    let lab = TwoPathLab::new();
    // The node has no way back to ext's 203.0.113.7 but path A in main; the
    // pod's replies to ext's connections must take path B (table 100).
    let policy = connmark_policy("ingress", &["ing0"], 0x1400, 0xff00);
    let pod_server = SocketAddr::new(POD.parse().unwrap(), 7301);
    let from: IpAddr = "203.0.113.7".parse().unwrap();

    // Without the policy, replies follow the main table: path A.
    let _seen = serve_once(&lab.pod, pod_server);
    let (a, b) = lab.delta(|| round_trip(&lab.ext, Some(from), pod_server).unwrap());
    assert!(a > 0 && b == 0, "no policy: replies via A {a}, via B {b}");

    let obj = policy.clone();
    lab.on_node(move |fw| {
        fw.ensure(&obj)?;
        fw.ensure(&member("ingress", POD))
    })
    .unwrap();

    // ext → pod over A: every reply comes back over B. The echo proves the
    // client's own later packets (same ct mark, original direction) still
    // reach the pod: `ct direction reply` keeps them unmarked.
    let pod_server = SocketAddr::new(POD.parse().unwrap(), 7302);
    let _seen = serve_once(&lab.pod, pod_server);
    let (a, b) = lab.delta(|| round_trip(&lab.ext, Some(from), pod_server).unwrap());
    assert!(
        a == 0 && b >= 3,
        "ingress connection: replies via A {a}, via B {b}"
    );

    // Pod-initiated connections are untouched: main table, path A.
    let (a, b) = lab.delta(|| lab.pod_connects("203.0.113.7", 7303));
    assert!(a > 0 && b == 0, "pod-initiated: via A {a}, via B {b}");

    // The node saw the mark on the connection.
    let ct = lab.node.exec(
        "conntrack",
        &["-L", "-p", "tcp", "--dport", "7302", "-o", "extended"],
    );
    assert!(ct.contains("mark=5120"), "conntrack: {ct}");
}

/// The kernel's tick here (CONFIG_HZ=250): an element that expires in 1 ms
/// stops matching at the next one.
const TICK: std::time::Duration = std::time::Duration::from_millis(4);

/// Polls until `member` is no element any more, for at most two ticks.
fn gone_within_a_tick(fw: &mut Nftables, member: &FwObject) -> bool {
    let deadline = std::time::Instant::now() + 2 * TICK;
    loop {
        if fw.observe(member).unwrap() == Presence::Missing {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

/// A pod's element goes by expiring (no deleting transaction) where the
/// kernel can update an element's timeout: gone within a tick; an ADD of
/// the same address a moment later (a new pod that got it) is an element
/// again, for good; and a member set made without the timeout flag (by an
/// earlier version) keeps its elements and still loses them, by delete.
#[test]
fn members_go_by_expiring_and_a_readded_address_stays() {
    if !crate::kernel::probe::element_timeout_updates() {
        eprintln!("skipped: this kernel cannot update an element's timeout (< 6.10)");
        return;
    }
    in_netns(|| {
        let mut fw = Nftables::new().unwrap();
        let policy = mark_policy("egress", &[], &[], 0x14, u32::MAX);
        fw.ensure(&policy).unwrap();
        let listing = nft_table("inet", TABLE).unwrap();
        assert_eq!(set_def(&listing, "egress_v4")["flags"], json!(["timeout"]));
        let pod = member("egress", "10.244.1.5");
        fw.ensure(&pod).unwrap();
        fw.remove(&pod).unwrap();
        // Removed, and the address taken again at once by a new pod.
        fw.ensure(&pod).unwrap();
        std::thread::sleep(5 * TICK);
        assert_eq!(fw.observe(&pod).unwrap(), Presence::Present);
        let listing = nft_table("inet", TABLE).unwrap();
        assert_eq!(
            set_def(&listing, "egress_v4")["elem"],
            json!(["10.244.1.5"])
        );
        fw.remove(&pod).unwrap();
        assert!(gone_within_a_tick(&mut fw, &pod));

        // The earlier shape: a member set without flags, with an element.
        run_nft(&format!(
            "delete table inet {TABLE}\n\
             add table inet {TABLE}\n\
             add set inet {TABLE} egress_v4 {{ type ipv4_addr; }}\n\
             add element inet {TABLE} egress_v4 {{ 10.244.1.7 }}\n"
        ));
        fw.ensure(&policy).unwrap();
        let old = member("egress", "10.244.1.7");
        assert_eq!(fw.observe(&old).unwrap(), Presence::Present, "kept");
        let listing = nft_table("inet", TABLE).unwrap();
        assert!(set_def(&listing, "egress_v4").get("flags").is_none());
        fw.remove(&old).unwrap();
        assert_eq!(
            fw.observe(&old).unwrap(),
            Presence::Missing,
            "deleted at once"
        );
    });
}

/// `nft -f -` with `script`, in the calling thread's namespace.
fn run_nft(script: &str) {
    run_nft_args(&["-f", "-"], script);
}

fn run_nft_args(args: &[&str], script: &str) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("nft")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("nft");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "nft {}: {script}",
        args.join(" ")
    );
}

/// A listing without what the kernel numbers (handles) and with anonymous
/// sets' elements sorted (hash order).
fn normalised(listing: Vec<Value>) -> Vec<Value> {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.remove("handle");
                for (key, item) in map.iter_mut() {
                    if let (true, Value::Array(elems)) = (key == "set", &mut *item) {
                        elems.sort_by_key(|e| e.to_string());
                    }
                    walk(item);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut listing: Vec<Value> = listing
        .into_iter()
        .filter(|i| i.get("metainfo").is_none())
        .collect();
    listing.iter_mut().for_each(walk);
    listing
}

/// What one making does to the table, step by step: the listing after
/// each step (`None`: no table).
fn make_steps(by_nft: bool, plans: &[Plan], member: Option<&FwObject>) -> Vec<Option<Vec<Value>>> {
    let plans = plans.to_vec();
    let member = member.cloned();
    let table = plans[0].table.clone();
    in_netns(move || {
        let mut fw = Nftables::new().unwrap();
        let timeouts = crate::kernel::probe::element_timeout_updates();
        let apply = |fw: &mut Nftables, tx: &Transaction| {
            if by_nft {
                run_nft_json(&tx.to_json());
            } else {
                fw.commit(tx).unwrap();
            }
        };
        let listing = || nft_table("inet", &table).map(normalised);
        let mut steps = Vec::new();
        // Made on a node without the table (the first by the creation that
        // deletes nothing, the others created beside it), each plan in turn.
        let mut stale = None;
        for (i, plan) in plans.iter().enumerate() {
            let view = fw.read_table(&plan.table, false).unwrap();
            if i == 1 {
                stale = view.clone();
            }
            assert_eq!(view.is_none(), i == 0);
            match view {
                None => apply(&mut fw, &plan.creation(timeouts)),
                Some(view) => apply(&mut fw, &plan.transaction(Some(&view), timeouts)),
            }
            steps.push(listing());
        }
        // A creation over the existing table is refused whole.
        let before = listing();
        let refused = fw.commit_batch(&plans[1 % plans.len()].creation(timeouts));
        assert_eq!(refused.unwrap_err().errno(), Some(libc::EEXIST));
        assert_eq!(listing(), before, "a refused creation changes nothing");
        // So is one planned from a listing that did not show what it creates.
        if let Some(stale) = stale {
            let refused = fw.commit_batch(&plans[1].transaction(Some(&stale), timeouts));
            assert_eq!(refused.unwrap_err().errno(), Some(libc::EEXIST));
            assert_eq!(listing(), before, "a refused transaction changes nothing");
        }
        // A pod in the first plan's member set; the plan re-made over
        // itself (from a listing, and as if the table were missing) keeps it.
        if let Some(member) = &member {
            fw.ensure(member).unwrap();
        }
        let view = fw.read_table(&plans[0].table, false).unwrap();
        apply(&mut fw, &plans[0].transaction(view.as_ref(), timeouts));
        steps.push(listing());
        apply(&mut fw, &plans[0].transaction(None, timeouts));
        steps.push(listing());
        // Removed one by one: the last takes the table.
        for plan in &plans {
            let view = fw.read_table(&plan.table, false).unwrap().unwrap();
            if let Some(tx) = plan.removal(&view) {
                apply(&mut fw, &tx);
            }
            steps.push(listing());
        }
        steps
    })
}

/// Every plan shape, made, re-made and removed by a netlink batch and by
/// `nft -j -f -` with the same transaction as JSON: the kernel holds the
/// same, as `nft -j list table` shows it, after every step. (The JSON
/// rendering is pinned by `rendering_is_pinned`; this ties the netlink
/// making to it.)
#[test]
fn netlink_batches_make_what_nft_makes() {
    let shapes: Vec<Vec<FwObject>> = vec![
        vec![
            mark_policy(
                "egress",
                &[
                    "203.0.113.0/24",
                    "198.51.100.7/32",
                    "10.16.0.0/12",
                    "fd00::/7",
                ],
                &["203.0.113.7/32", "fd00:1::/64"],
                0x1400,
                0xff00,
            ),
            connmark_policy("in", &["eth-b", "eth-a", "eth-c"], 0x2, 0x2),
            exemption(&["10.20.0.0/24", "10.21.0.0/24", "fd00:20::/64"], &[]),
        ],
        vec![
            mark_policy("all", &["0.0.0.0/0", "::/0"], &[], 0x7, u32::MAX),
            connmark_policy("one", &["eth1"], 0x100, u32::MAX),
            exemption(&["10.16.0.0/12", "192.0.2.7/32", "fd00::/7"], &[]),
        ],
        vec![
            mark_policy("plain", &[], &["10.0.0.0/8"], 0x10, 0xf0),
            exemption(&["192.0.2.0/31"], &[]),
        ],
        vec![
            per_subnet(mark_policy(
                "nets",
                &["203.0.113.0/24"],
                &[],
                0x1400,
                0xff00,
            )),
            per_subnet(connmark_policy("back", &["eth-b"], 0x2, 0x2)),
        ],
    ];
    // The pod side of connmark: a table of its own, full and partial mask.
    for (mark, mask) in [(0x14, u32::MAX), (0x100, 0xff00)] {
        let plans = [pod_connmark_plan("vip", "net1", mark, mask).unwrap()];
        assert_eq!(
            make_steps(true, &plans, None),
            make_steps(false, &plans, None)
        );
    }
    for shape in shapes {
        let plans: Vec<Plan> = shape
            .iter()
            .map(|obj| match obj {
                FwObject::Policy(p) => policy_plan(p).unwrap(),
                FwObject::Exemption(e) => exemption_plan(e).unwrap(),
                FwObject::Member(_) => unreachable!(),
            })
            .collect();
        let FwObject::Policy(first) = &shape[0] else {
            unreachable!()
        };
        let pod = match first.scope {
            FwScope::Pod => member(&first.policy, "10.244.1.7"),
            FwScope::Subnet => element(&first.policy, "10.244.1.0/24", MemberSet::Subnet),
        };
        let by_nft = make_steps(true, &plans, Some(&pod));
        let by_netlink = make_steps(false, &plans, Some(&pod));
        assert!(by_nft[0].is_some(), "the first making makes the table");
        assert_eq!(
            by_nft.last(),
            Some(&None),
            "the last removal takes the table"
        );
        for (i, (want, got)) in by_nft.iter().zip(&by_netlink).enumerate() {
            let only = |a: &Option<Vec<Value>>, b: &Option<Vec<Value>>| -> Vec<String> {
                let b = b.clone().unwrap_or_default();
                a.iter()
                    .flatten()
                    .filter(|i| !b.contains(i))
                    .map(|i| i.to_string())
                    .collect()
            };
            assert_eq!(
                got,
                want,
                "step {i} of {}: only the netlink batch made {:#?}\nonly nft made {:#?}",
                plans
                    .iter()
                    .map(|p| p.what.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                only(got, want),
                only(want, got),
            );
        }
    }
}

/// `nft -j -f -` with `doc`, in the calling thread's namespace.
fn run_nft_json(doc: &Value) {
    run_nft_args(&["-j", "-f", "-"], &doc.to_string());
}

#[test]
fn subnets_are_ranges_and_opt_outs_are_elements() {
    in_netns(|| {
        let mut fw = Nftables::new().unwrap();
        let policy = per_subnet(mark_policy("egress", &[], &[], 0x1400, 0xff00));
        fw.ensure(&policy).unwrap();
        assert_eq!(fw.observe(&policy).unwrap(), Presence::Present);
        let v4 = element("egress", "10.244.1.0/24", MemberSet::Subnet);
        let v6 = element("egress", "fd00:244:1::/64", MemberSet::Subnet);
        let other = element("egress", "10.244.2.0/24", MemberSet::Subnet);
        let out = element("egress", "10.244.1.7/32", MemberSet::OptOut);
        for obj in [&v4, &v6, &out] {
            assert_eq!(fw.observe(obj).unwrap(), Presence::Missing, "{obj}");
            fw.ensure(obj).unwrap();
            // Again: the pods of a subnet each re-assert it.
            fw.ensure(obj).unwrap();
            assert_eq!(fw.observe(obj).unwrap(), Presence::Present, "{obj}");
        }
        assert_eq!(fw.observe(&other).unwrap(), Presence::Missing);
        let listing = nft_table("inet", TABLE).unwrap();
        assert_eq!(
            set_def(&listing, "egress_net_v4")["elem"],
            json!([{"prefix": {"addr": "10.244.1.0", "len": 24}}])
        );
        assert_eq!(
            set_def(&listing, "egress_net_v6")["elem"],
            json!([{"prefix": {"addr": "fd00:244:1::", "len": 64}}])
        );
        assert_eq!(
            set_def(&listing, "egress_out_v4")["elem"],
            json!(["10.244.1.7"])
        );
        // Each rule: in the subnet set, not in the opt-out set.
        let rules = chain_rules(&listing, "egress");
        assert_eq!(rules.len(), 2);
        assert_eq!(
            rules[0].as_array().unwrap()[0..2],
            [
                matches("==", payload("ip", "saddr"), json!("@egress_net_v4")),
                matches("!=", payload("ip", "saddr"), json!("@egress_out_v4")),
            ]
        );
        // A policy re-made keeps its subnets.
        run("nft", &["delete", "chain", "inet", TABLE, "egress"]);
        fw.ensure(&policy).unwrap();
        assert_eq!(fw.observe(&v4).unwrap(), Presence::Present);

        for obj in [&v4, &out] {
            fw.remove(obj).unwrap();
            fw.remove(obj).unwrap();
        }
        assert_eq!(fw.observe(&v4).unwrap(), Presence::Missing);
        assert!(gone_within_a_tick(&mut fw, &out));
        assert_eq!(fw.observe(&v6).unwrap(), Presence::Present);
    });
}

#[test]
fn subnet_mark_policy_marks_the_subnet_but_not_opt_outs_or_the_node() {
    let lab = TwoPathLab::new();
    let policy = per_subnet(mark_policy(
        "egress",
        &["203.0.113.0/24"],
        &["203.0.113.8/32"],
        0x1400,
        0xff00,
    ));
    let subnet = element("egress", "10.20.0.0/24", MemberSet::Subnet);
    let out = element("egress", &format!("{POD}/32"), MemberSet::OptOut);
    let (p, n) = (policy.clone(), subnet.clone());
    lab.on_node(move |fw| {
        fw.ensure(&p)?;
        fw.ensure(&n)
    })
    .unwrap();

    // Any address of the subnet is marked: path B.
    let (a, b) = lab.delta(|| lab.pod_connects("203.0.113.7", 7401));
    assert!(a == 0 && b > 0, "the subnet's pod: via A {a}, via B {b}");
    let (a, b) = lab.delta(|| lab.pod_connects("203.0.113.8", 7402));
    assert!(a > 0 && b == 0, "excluded: via A {a}, via B {b}");
    // The node's own address in the subnet is not: it never passes
    // prerouting.
    lab.node.ip(&[
        "route",
        "add",
        "203.0.113.7/32",
        "via",
        "192.0.2.2",
        "src",
        NODE_POD_SIDE,
    ]);
    let (a, b) = lab.node_connects("203.0.113.7", 7403);
    assert!(a > 0 && b == 0, "the node's own: via A {a}, via B {b}");

    // A pod that opts out keeps the main table.
    let o = out.clone();
    lab.on_node(move |fw| fw.ensure(&o)).unwrap();
    let (a, b) = lab.delta(|| lab.pod_connects("203.0.113.7", 7404));
    assert!(a > 0 && b == 0, "opted out: via A {a}, via B {b}");
    let o = out.clone();
    lab.on_node(move |fw| fw.remove(&o)).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let (a, b) = lab.delta(|| lab.pod_connects("203.0.113.7", 7405));
    assert!(a == 0 && b > 0, "opted in again: via A {a}, via B {b}");

    // The subnet's last pod gone: unmarked.
    lab.on_node(move |fw| fw.remove(&subnet)).unwrap();
    let (a, b) = lab.delta(|| lab.pod_connects("203.0.113.7", 7406));
    assert!(a > 0 && b == 0, "subnet removed: via A {a}, via B {b}");
}

#[test]
fn subnet_connmark_policy_steers_replies_of_the_subnet_but_not_opt_outs() {
    let lab = TwoPathLab::new();
    let policy = per_subnet(connmark_policy("ingress", &["ing0"], 0x1400, 0xff00));
    let subnet = element("ingress", "10.20.0.0/24", MemberSet::Subnet);
    let out = element("ingress", &format!("{POD}/32"), MemberSet::OptOut);
    let from: IpAddr = "203.0.113.7".parse().unwrap();
    let (p, n) = (policy.clone(), subnet.clone());
    lab.on_node(move |fw| {
        fw.ensure(&p)?;
        fw.ensure(&n)
    })
    .unwrap();

    let pod_server = SocketAddr::new(POD.parse().unwrap(), 7501);
    let _seen = serve_once(&lab.pod, pod_server);
    let (a, b) = lab.delta(|| round_trip(&lab.ext, Some(from), pod_server).unwrap());
    assert!(
        a == 0 && b >= 3,
        "the subnet's pod: replies via A {a}, via B {b}"
    );

    lab.on_node(move |fw| fw.ensure(&out)).unwrap();
    let pod_server = SocketAddr::new(POD.parse().unwrap(), 7502);
    let _seen = serve_once(&lab.pod, pod_server);
    let (a, b) = lab.delta(|| round_trip(&lab.ext, Some(from), pod_server).unwrap());
    assert!(a > 0 && b == 0, "opted out: replies via A {a}, via B {b}");
}

#[test]
fn a_policy_that_changes_scope_keeps_no_set_of_the_other() {
    in_netns(|| {
        let mut fw = Nftables::new().unwrap();
        let per_pod = connmark_policy("in", &["eth1"], 0x2, 0x2);
        let whole = per_subnet(per_pod.clone());
        let sets = || -> Vec<String> {
            let listing = nft_table("inet", TABLE).unwrap();
            let mut names: Vec<String> = items(&listing, "set")
                .iter()
                .map(|s| s["name"].as_str().unwrap().to_string())
                .collect();
            names.sort();
            names
        };
        fw.ensure(&per_pod).unwrap();
        fw.ensure(&member("in", "10.244.1.7")).unwrap();
        assert_eq!(sets(), ["in_v4", "in_v6"]);
        fw.ensure(&whole).unwrap();
        assert_eq!(fw.observe(&whole).unwrap(), Presence::Present);
        assert_eq!(sets(), ["in_net_v4", "in_net_v6", "in_out_v4", "in_out_v6"]);
        fw.ensure(&per_pod).unwrap();
        assert_eq!(fw.observe(&per_pod).unwrap(), Presence::Present);
        assert_eq!(sets(), ["in_v4", "in_v6"]);
    });
}
