use std::net::IpAddr;

use netlink_packet_route::IpProtocol;
use netlink_packet_route::route::RouteType;
use netlink_packet_route::rule::{
    RuleAction, RuleAttribute, RuleFlags, RuleMessage, RulePortRange,
};
use netlink_packet_route::{AddressFamily, route::RouteProtocol};
use serde_json::json;

use super::*;

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[test]
fn parses_selectors() {
    let q = parse(&args(&[
        "10.2.0.2",
        "--from",
        "10.244.1.5",
        "--iif",
        "cni0",
        "--mark",
        "0x10",
        "--json",
    ]))
    .unwrap();
    assert_eq!(q.dst, "10.2.0.2".parse::<IpAddr>().unwrap());
    assert_eq!(q.from, Some("10.244.1.5".parse().unwrap()));
    assert_eq!(q.iif.as_deref(), Some("cni0"));
    assert_eq!(q.mark, Some(16));
    assert!(q.json);
    assert!(parse(&args(&[])).is_err());
    assert!(parse(&args(&["10.0.0.1", "--from", "fd00::1"])).is_err());
    assert!(parse(&args(&["10.0.0.1", "--mark", "x"])).is_err());
    assert!(parse(&args(&["10.0.0.1", "10.0.0.2"])).is_err());
}

/// An IPv4 rule message as the kernel dumps it: `lookup table` unless the
/// attributes or `edit` say otherwise.
fn message(
    priority: u32,
    table: u32,
    attrs: Vec<RuleAttribute>,
    edit: impl FnOnce(&mut RuleMessage),
) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.action = RuleAction::ToTable;
    msg.attributes = vec![
        RuleAttribute::Priority(priority),
        RuleAttribute::Table(table),
        RuleAttribute::SuppressPrefixLen(u32::MAX),
        RuleAttribute::Protocol(RouteProtocol::Boot),
    ];
    msg.attributes.extend(attrs);
    edit(&mut msg);
    msg
}

fn parsed(msg: &RuleMessage) -> KernelRule {
    rule_from_message(msg).expect("an IPv4 rule")
}

fn source(addr: &str, len: u8) -> impl FnOnce(&mut RuleMessage) {
    let addr: IpAddr = addr.parse().unwrap();
    move |m| {
        m.header.src_len = len;
        m.attributes.push(RuleAttribute::Source(addr));
    }
}

fn query() -> Query {
    Query {
        dst: "10.2.0.2".parse().unwrap(),
        from: Some("10.244.1.5".parse().unwrap()),
        iif: Some("cni0".into()),
        mark: None,
        netns: None,
        json: false,
        state_dir: std::path::PathBuf::new(),
    }
}

#[test]
fn rule_matching_follows_the_kernel() {
    let q = query();
    let from_pod = parsed(&message(1000, 100, vec![], source("10.244.1.5", 32)));
    assert!(matches(&from_pod, &q));
    let to_cluster = |m: &mut RuleMessage| {
        source("10.244.1.5", 32)(m);
        m.header.dst_len = 16;
        m.attributes
            .push(RuleAttribute::Destination("10.244.0.0".parse().unwrap()));
    };
    assert!(!matches(
        &parsed(&message(999, 254, vec![], to_cluster)),
        &q
    ));
    let not_to_cluster = |m: &mut RuleMessage| {
        to_cluster(m);
        m.header.flags = RuleFlags::Invert;
    };
    assert!(matches(
        &parsed(&message(999, 254, vec![], not_to_cluster)),
        &q
    ));
    let lo = parsed(&message(
        10,
        100,
        vec![RuleAttribute::Iifname("lo".into())],
        |_| {},
    ));
    assert!(!matches(&lo, &q));
    assert!(matches(
        &lo,
        &Query {
            iif: None,
            ..q.clone()
        }
    ));
    let marked = parsed(&message(
        10,
        100,
        vec![RuleAttribute::FwMark(0x10), RuleAttribute::FwMask(0xf0)],
        |_| {},
    ));
    assert!(!matches(&marked, &q));
    assert!(matches(
        &marked,
        &Query {
            mark: Some(0x11),
            ..q.clone()
        }
    ));
    // Selectors explain cannot evaluate: taken as not matching.
    let tcp = parsed(&message(
        10,
        100,
        vec![RuleAttribute::IpProtocol(IpProtocol::Tcp)],
        |_| {},
    ));
    assert!(!matches(&tcp, &q));
    let oif = parsed(&message(
        10,
        100,
        vec![RuleAttribute::Oifname("eth0".into())],
        |_| {},
    ));
    assert!(!matches(&oif, &q));
}

#[test]
fn matched_rule_reads_like_ip_rule() {
    let mut msg = message(1000, 100, vec![], source("10.244.1.5", 32));
    msg.attributes
        .push(RuleAttribute::Protocol(RouteProtocol::Other(211)));
    let rule = MatchedRule::of(&parsed(&msg));
    assert_eq!(rule.text, "from 10.244.1.5 lookup 100");
    assert!(rule.gwsteer);
    assert_eq!(
        serde_json::to_string(&rule).unwrap(),
        r#"{"action":"totable","gwsteer":true,"priority":1000,"protocol":211,"selectors":{"from":"10.244.1.5/32"},"table":100,"tableName":"100","text":"from 10.244.1.5 lookup 100"}"#
    );

    // `ip rule add fwmark 0x10 lookup main`: the kernel reports the full
    // mask too, `ip rule` does not print it.
    let marked = MatchedRule::of(&parsed(&message(
        5,
        254,
        vec![RuleAttribute::FwMark(0x10), RuleAttribute::FwMask(u32::MAX)],
        |_| {},
    )));
    assert_eq!(marked.text, "from all fwmark 0x10 lookup main");
    assert_eq!(
        serde_json::to_value(&marked.selectors).unwrap(),
        json!({"fwmark": "0x10", "fwmask": "0xffffffff"})
    );
    let masked = MatchedRule::of(&parsed(&message(
        5,
        254,
        vec![RuleAttribute::FwMark(0x10), RuleAttribute::FwMask(0xf0)],
        |_| {},
    )));
    assert_eq!(masked.text, "from all fwmark 0x10/0xf0 lookup main");
    // A mark of 0 the kernel reports by its mask alone.
    let zero = MatchedRule::of(&parsed(&message(
        5,
        254,
        vec![RuleAttribute::FwMask(0xff)],
        |_| {},
    )));
    assert_eq!(
        serde_json::to_value(&zero.selectors).unwrap(),
        json!({"fwmask": "0xff"})
    );

    let suppress = MatchedRule::of(&parsed(&message(
        20,
        254,
        vec![RuleAttribute::SuppressPrefixLen(0)],
        |_| {},
    )));
    assert_eq!(
        suppress.text,
        "from all lookup main suppress_prefixlength 0"
    );

    let unreachable = MatchedRule::of(&parsed(&message(
        30,
        0,
        vec![RuleAttribute::Iifname("cni0".into())],
        |m| {
            m.header.action = RuleAction::Unreachable;
            m.header.dst_len = 24;
            m.attributes
                .push(RuleAttribute::Destination("192.0.2.0".parse().unwrap()));
        },
    )));
    assert_eq!(
        unreachable.text,
        "from all to 192.0.2.0/24 iif cni0 unreachable"
    );
    assert_eq!(
        serde_json::to_string(&unreachable).unwrap(),
        r#"{"action":"unreachable","gwsteer":false,"priority":30,"protocol":3,"selectors":{"iif":"cni0","to":"192.0.2.0/24"},"table":0,"tableName":"0","text":"from all to 192.0.2.0/24 iif cni0 unreachable"}"#
    );

    // Selector keys are sorted, those explain cannot evaluate among them.
    let many = MatchedRule::of(&parsed(&message(
        40,
        100,
        vec![
            RuleAttribute::Oifname("eth0".into()),
            RuleAttribute::L3MDev(true),
            RuleAttribute::IpProtocol(IpProtocol::Tcp),
            RuleAttribute::DestinationPortRange(RulePortRange { start: 80, end: 80 }),
        ],
        |m| {
            m.header.flags = RuleFlags::Invert;
            m.header.tos = 0x10;
        },
    )));
    assert_eq!(
        serde_json::to_string(&many.selectors).unwrap(),
        r#"{"dport 80-80":true,"ipproto Tcp":true,"l3mdev":true,"not":true,"oif":"eth0","tos":16}"#
    );
    assert_eq!(
        many.text,
        "not from all oif eth0 l3mdev dport 80-80 ipproto Tcp lookup 100"
    );
}

fn report() -> Report {
    let via = |a: &str| Some(a.parse::<IpAddr>().unwrap());
    let rule = MatchedRule::of(&parsed(&message(
        1000,
        100,
        vec![RuleAttribute::Protocol(RouteProtocol::Other(211))],
        source("10.244.1.5", 32),
    )));
    Report {
        chosen: Some(Chosen {
            dev: Some("eth-b".into()),
            src: via("10.0.2.1"),
            kind: RouteType::Unicast,
            via: via("10.0.2.254"),
        }),
        error: None,
        query: query(),
        route: Some(Route {
            dst: None,
            gwsteer: true,
            metric: None,
            nexthops: vec![
                Hop {
                    dev: Some("eth-a".into()),
                    via: via("10.0.1.254"),
                    weight: Some(1),
                },
                Hop {
                    dev: Some("eth-b".into()),
                    via: via("10.0.2.254"),
                    weight: Some(3),
                },
            ],
            protocol: 211,
            table: 100,
            table_name: "100".into(),
            kind: RouteType::Unicast,
        }),
        rule: Some(rule),
        rules_matched: vec![999, 1000, 32766],
        table: Some(100),
        table_name: Some("100".into()),
        pod_side: None,
    }
}

#[test]
fn report_json_keeps_its_keys_and_shapes() {
    assert_eq!(
        serde_json::to_string(&report()).unwrap(),
        concat!(
            r#"{"chosen":{"dev":"eth-b","src":"10.0.2.1","type":"unicast","via":"10.0.2.254"},"#,
            r#""error":null,"#,
            r#""query":{"dst":"10.2.0.2","from":"10.244.1.5","iif":"cni0","mark":null},"#,
            r#""route":{"dst":"default","gwsteer":true,"metric":null,"nexthops":["#,
            r#"{"dev":"eth-a","via":"10.0.1.254","weight":1},"#,
            r#"{"dev":"eth-b","via":"10.0.2.254","weight":3}],"#,
            r#""protocol":211,"table":100,"tableName":"100","type":"unicast"},"#,
            r#""rule":{"action":"totable","gwsteer":true,"priority":1000,"protocol":211,"#,
            r#""selectors":{"from":"10.244.1.5/32"},"table":100,"tableName":"100","#,
            r#""text":"from 10.244.1.5 lookup 100"},"#,
            r#""rulesMatched":[999,1000,32766],"table":100,"tableName":"100"}"#
        )
    );
    let none = Report {
        chosen: None,
        error: Some("No route to host (os error 113)".into()),
        route: None,
        rule: None,
        rules_matched: vec![],
        table: None,
        table_name: None,
        pod_side: None,
        query: Query {
            from: None,
            iif: None,
            mark: Some(16),
            ..query()
        },
    };
    assert_eq!(
        serde_json::to_value(&none).unwrap(),
        json!({
            "chosen": null,
            "error": "No route to host (os error 113)",
            "query": {"dst": "10.2.0.2", "from": null, "iif": null, "mark": 16},
            "route": null,
            "rule": null,
            "rulesMatched": [],
            "table": null,
            "tableName": null,
        })
    );
}

#[test]
fn report_text_names_each_step() {
    assert_eq!(
        report().to_string(),
        "packet to 10.2.0.2 from 10.244.1.5 arriving on cni0\n\
         \x20 rule     1000: from 10.244.1.5 lookup 100  [gwsteer's (protocol 211)]\n\
         \x20 table    100\n\
         \x20 route    unicast default proto 211 (gwsteer's)\n\
         \x20          nexthop via 10.0.1.254 dev eth-a weight 1\n\
         \x20          nexthop via 10.0.2.254 dev eth-b weight 3\n\
         \x20 chosen   via 10.0.2.254 dev eth-b src 10.0.2.1\n"
    );
    let mut single = report();
    if let Some(route) = &mut single.route {
        route.dst = Some("10.2.0.0/16".parse().unwrap());
        route.gwsteer = false;
        route.protocol = 4;
        route.nexthops.truncate(1);
        route.nexthops[0].weight = None;
    }
    single.rule = None;
    single.chosen = None;
    single.error = Some("Network is unreachable (os error 101)".into());
    single.query.iif = None;
    single.query.mark = Some(0x10);
    assert_eq!(
        single.to_string(),
        "packet to 10.2.0.2 from 10.244.1.5 sent by the node with mark 0x10\n\
         \x20 rule     none identified\n\
         \x20 table    100\n\
         \x20 route    unicast 10.2.0.0/16 proto 4\n\
         \x20 chosen   none: Network is unreachable (os error 101)\n"
    );
    let none = Report {
        route: None,
        ..single
    };
    assert_eq!(
        none.to_string(),
        "packet to 10.2.0.2 from 10.244.1.5 sent by the node with mark 0x10\n\
         \x20 rule     none identified\n\
         \x20 route    none: Network is unreachable (os error 101)\n"
    );
}

#[test]
fn an_address_steered_inside_its_pod_is_named_with_the_way_to_its_path() {
    let mut r = report();
    r.route = None;
    r.chosen = None;
    r.error = Some("Network is unreachable (os error 101)".into());
    r.pod_side = Some(PodSide {
        network: "lan".into(),
        attachment: "ctr1/net1".into(),
        netns: Some("/run/netns/pod".into()),
    });
    let text = r.to_string();
    assert!(
        text.ends_with(
            "  route    none: Network is unreachable (os error 101)\n\
             \x20 pod side 10.244.1.5 is steered inside its pod by network lan (ctr1/net1): this is the node's path, not the reply's\n\
             \x20          the pod's: gwsteer explain 10.2.0.2 --from 10.244.1.5 --netns /run/netns/pod\n"
        ),
        "{text}"
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        json["podSide"],
        json!({"network": "lan", "attachment": "ctr1/net1", "netns": "/run/netns/pod"})
    );
    // Without it, the key is absent: `--json` output keeps its keys.
    r.pod_side = None;
    assert!(serde_json::to_value(&r).unwrap().get("podSide").is_none());
}
