//! Kernel tests run as root, each in a throw-away network namespace of
//! its own (a thread that `unshare`s, whose `ip` children inherit it),
//! and read the kernel back with `ip -j`.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use super::*;
use crate::model::TABLE_MAIN;

/// Runs `f` on a thread in a fresh network namespace with `lo` up. The
/// namespace goes away with the thread and everything opened in it.
fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let thread = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET): these tests run as root");
        ip(&["link", "set", "lo", "up"]);
        f()
    });
    match thread.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ip -j ARGS`, parsed; protocol 211 shows as "211" or, with
/// rt_protos.d/gwsteer.conf installed, "gwsteer": always "211" here.
fn ip_json(args: &[&str]) -> Value {
    let out = Command::new("ip")
        .arg("-j")
        .args(args)
        .output()
        .expect("running ip");
    assert!(
        out.status.success(),
        "ip -j {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return json!([]);
    }
    let mut v: Value = serde_json::from_slice(&out.stdout).expect("ip -j prints JSON");
    if let Value::Array(items) = &mut v {
        for item in items {
            if item["protocol"] == "gwsteer" {
                item["protocol"] = json!("211");
            }
        }
    }
    v
}

/// Rules of one family with a priority other than the kernel's defaults.
fn rules_json(family: &str) -> Vec<Value> {
    let v = ip_json(&[family, "rule", "show"]);
    v.as_array()
        .expect("an array")
        .iter()
        .filter(|r| ![0, 32766, 32767].contains(&r["priority"].as_u64().unwrap_or(0)))
        .cloned()
        .collect()
}

fn routes_json(family: &str, table: u32) -> Value {
    ip_json(&[family, "route", "show", "table", &table.to_string()])
}

/// Two veth ends, both up, each with an IPv4 and an IPv6 subnet: gateways
/// 10.1.0.1/fd00:1::1 are on v0, 10.2.0.1/fd00:2::1 on v1.
fn two_links() {
    ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    for (dev, v4, v6) in [
        ("v0", "10.1.0.2/24", "fd00:1::2/64"),
        ("v1", "10.2.0.2/24", "fd00:2::2/64"),
    ] {
        ip(&["link", "set", dev, "up"]);
        ip(&["addr", "add", v4, "dev", dev]);
        ip(&["-6", "addr", "add", v6, "dev", dev, "nodad"]);
    }
}

fn kernel() -> NetlinkKernel {
    NetlinkKernel::new(None).expect("a netlink kernel")
}

fn rule(family: Family, priority: u32, src: &str, table: u32) -> RuleSpec {
    RuleSpec {
        family,
        priority,
        src: Some(src.parse().unwrap()),
        dst: None,
        fwmark: None,
        fwmask: None,
        iif: None,
        table,
    }
}

fn hop(via: &str, dev: Option<&str>, weight: u16) -> NextHop {
    NextHop {
        via: via.parse().unwrap(),
        dev: dev.map(String::from),
        weight,
    }
}

fn route(dst: &str, table: u32, nexthops: Vec<NextHop>) -> RouteSpec {
    RouteSpec {
        dst: dst.parse().unwrap(),
        table,
        kind: RouteKind::Unicast,
        nexthops,
        dev: None,
        metric: None,
    }
}

/// ensure twice, observe Present, `check` the kernel, remove twice,
/// observe Missing.
fn round_trip(k: &mut NetlinkKernel, obj: &Object, check: impl FnOnce()) {
    k.ensure(obj).unwrap();
    k.ensure(obj).unwrap();
    assert_eq!(k.observe(obj).unwrap(), Presence::Present, "{obj}");
    check();
    k.remove(obj).unwrap();
    k.remove(obj).unwrap();
    assert_eq!(k.observe(obj).unwrap(), Presence::Missing, "{obj}");
}

#[test]
fn rules_round_trip_in_both_families_and_large_tables() {
    in_netns(|| {
        two_links();
        let mut k = kernel();

        let v4 = Object::node_rule(rule(Family::V4, 1000, "10.244.0.5/32", 100));
        round_trip(&mut k, &v4, || {
            assert_eq!(
                rules_json("-4"),
                vec![
                    json!({"priority": 1000, "src": "10.244.0.5", "table": "100", "protocol": "211"})
                ]
            );
        });

        let mut marked = rule(Family::V4, 1001, "10.244.0.0/16", 1_000_000);
        marked.dst = Some("10.96.0.0/12".parse().unwrap());
        marked.fwmark = Some(0x10);
        marked.fwmask = Some(0xff);
        marked.iif = Some("v0".into());
        let marked = Object::node_rule(marked);
        round_trip(&mut k, &marked, || {
            assert_eq!(
                rules_json("-4"),
                vec![json!({
                    "priority": 1001, "src": "10.244.0.0", "srclen": 16,
                    "dst": "10.96.0.0", "dstlen": 12,
                    "fwmark": "0x10", "fwmask": "0xff", "iif": "v0",
                    "table": "1000000", "protocol": "211"
                })]
            );
        });

        let v6 = Object::node_rule(rule(Family::V6, 1000, "fd00:244::5/128", 100));
        round_trip(&mut k, &v6, || {
            assert_eq!(
                rules_json("-6"),
                vec![
                    json!({"priority": 1000, "src": "fd00:244::5", "table": "100", "protocol": "211"})
                ]
            );
        });

        let mut v6_big = rule(Family::V6, 1002, "fd00:244::/64", 1_000_000);
        v6_big.fwmark = Some(7); // no mask: the kernel stores 0xffffffff
        let v6_big = Object::node_rule(v6_big);
        round_trip(&mut k, &v6_big, || {
            assert_eq!(
                rules_json("-6"),
                vec![json!({
                    "priority": 1002, "src": "fd00:244::", "srclen": 64,
                    "fwmark": "0x7", "table": "1000000", "protocol": "211"
                })]
            );
        });

        assert!(rules_json("-4").is_empty() && rules_json("-6").is_empty());
    });
}

#[test]
fn rule_observe_needs_every_selector() {
    in_netns(|| {
        let mut k = kernel();
        let spec = rule(Family::V4, 1000, "10.244.0.5/32", 100);
        k.ensure(&Object::node_rule(spec.clone())).unwrap();
        for other in [
            RuleSpec {
                priority: 1001,
                ..spec.clone()
            },
            RuleSpec {
                table: 101,
                ..spec.clone()
            },
            RuleSpec {
                fwmark: Some(1),
                ..spec.clone()
            },
            RuleSpec {
                src: Some("10.244.0.6/32".parse().unwrap()),
                ..spec.clone()
            },
            RuleSpec {
                family: Family::V6,
                src: None,
                ..spec.clone()
            },
        ] {
            let obj = Object::node_rule(other);
            assert_eq!(k.observe(&obj).unwrap(), Presence::Missing, "{obj}");
            // Removing a rule that differs removes nothing.
            k.remove(&obj).unwrap();
        }
        assert_eq!(
            k.observe(&Object::node_rule(spec)).unwrap(),
            Presence::Present
        );
    });
}

#[test]
fn single_nexthop_routes_round_trip() {
    in_netns(|| {
        two_links();
        let mut k = kernel();

        let v4 = Object::node_route(route(
            "10.9.0.0/16",
            100,
            vec![hop("10.1.0.1", Some("v0"), 1)],
        ));
        round_trip(&mut k, &v4, || {
            assert_eq!(
                routes_json("-4", 100),
                json!([{"dst": "10.9.0.0/16", "gateway": "10.1.0.1", "dev": "v0", "protocol": "211", "flags": []}])
            );
        });

        // No device given: the kernel picks it, and observe accepts that.
        let v6 = Object::node_route(route("fd09::/64", 100, vec![hop("fd00:2::1", None, 1)]));
        round_trip(&mut k, &v6, || {
            assert_eq!(
                routes_json("-6", 100),
                json!([{"dst": "fd09::/64", "gateway": "fd00:2::1", "dev": "v1", "protocol": "211",
                        "metric": 1024, "flags": [], "pref": "medium"}])
            );
        });

        let mut metric = route("10.10.0.0/16", 100, vec![hop("10.2.0.1", None, 1)]);
        metric.metric = Some(50);
        let metric = Object::node_route(metric);
        round_trip(&mut k, &metric, || {
            assert_eq!(
                routes_json("-4", 100),
                json!([{"dst": "10.10.0.0/16", "gateway": "10.2.0.1", "dev": "v1", "protocol": "211",
                        "metric": 50, "flags": []}])
            );
        });
        assert_eq!(routes_json("-4", 100), json!([]));
        assert_eq!(routes_json("-6", 100), json!([]));
    });
}

#[test]
fn multipath_routes_carry_weights_in_both_families() {
    in_netns(|| {
        two_links();
        let mut k = kernel();

        let v4 = Object::node_route(route(
            "0.0.0.0/0",
            100,
            vec![
                hop("10.1.0.1", Some("v0"), 1),
                hop("10.2.0.1", Some("v1"), 3),
            ],
        ));
        round_trip(&mut k, &v4, || {
            assert_eq!(
                routes_json("-4", 100),
                json!([{"dst": "default", "protocol": "211", "flags": [], "nexthops": [
                    {"gateway": "10.1.0.1", "dev": "v0", "weight": 1, "flags": []},
                    {"gateway": "10.2.0.1", "dev": "v1", "weight": 3, "flags": []}
                ]}])
            );
        });

        let v6 = Object::node_route(route(
            "::/0",
            1_000_000,
            vec![
                hop("fd00:1::1", Some("v0"), 2),
                hop("fd00:2::1", Some("v1"), 256),
            ],
        ));
        round_trip(&mut k, &v6, || {
            assert_eq!(
                routes_json("-6", 1_000_000),
                json!([{"dst": "default", "protocol": "211", "metric": 1024, "flags": [], "pref": "medium",
                        "nexthops": [
                    {"gateway": "fd00:1::1", "dev": "v0", "weight": 2, "flags": []},
                    {"gateway": "fd00:2::1", "dev": "v1", "weight": 256, "flags": []}
                ]}])
            );
        });
    });
}

#[test]
fn ensure_replaces_a_changed_multipath_route_whole() {
    in_netns(|| {
        two_links();
        let mut k = kernel();
        for (family, gw1, gw2, gw3) in [
            ("-4", "10.1.0.1", "10.2.0.1", "10.2.0.3"),
            ("-6", "fd00:1::1", "fd00:2::1", "fd00:2::3"),
        ] {
            let dst = if family == "-4" { "0.0.0.0/0" } else { "::/0" };
            let first = route(
                dst,
                100,
                vec![hop(gw1, Some("v0"), 1), hop(gw2, Some("v1"), 1)],
            );
            k.ensure(&Object::node_route(first.clone())).unwrap();
            let second = route(
                dst,
                100,
                vec![hop(gw1, Some("v0"), 2), hop(gw3, Some("v1"), 1)],
            );
            let second_obj = Object::node_route(second);
            assert!(matches!(
                k.observe(&second_obj).unwrap(),
                Presence::Drifted(_)
            ));
            k.ensure(&second_obj).unwrap();
            assert_eq!(k.observe(&second_obj).unwrap(), Presence::Present);
            let shown = routes_json(family, 100);
            let hops: Vec<(String, u64)> = shown[0]["nexthops"]
                .as_array()
                .expect("one multipath route")
                .iter()
                .map(|h| {
                    (
                        h["gateway"].as_str().unwrap().to_string(),
                        h["weight"].as_u64().unwrap(),
                    )
                })
                .collect();
            assert_eq!(shown.as_array().unwrap().len(), 1, "{shown}");
            assert_eq!(
                hops,
                vec![(gw1.to_string(), 2), (gw3.to_string(), 1)],
                "{shown}"
            );
            k.remove(&second_obj).unwrap();
            assert_eq!(routes_json(family, 100), json!([]));
        }
    });
}

#[test]
fn unreachable_and_device_routes_round_trip() {
    in_netns(|| {
        two_links();
        let mut k = kernel();

        for (family, dst) in [("-4", "0.0.0.0/0"), ("-6", "::/0")] {
            let unreachable = Object::node_route(RouteSpec {
                kind: RouteKind::Unreachable,
                ..route(dst, 100, vec![])
            });
            round_trip(&mut k, &unreachable, || {
                let shown = routes_json(family, 100);
                assert_eq!(shown[0]["type"], "unreachable", "{shown}");
                assert_eq!(shown[0]["dst"], "default", "{shown}");
                assert_eq!(shown[0]["protocol"], "211", "{shown}");
            });
        }

        let device = Object::node_route(RouteSpec {
            dev: Some("v1".into()),
            ..route("10.7.0.0/16", 1_000_000, vec![])
        });
        round_trip(&mut k, &device, || {
            assert_eq!(
                routes_json("-4", 1_000_000),
                json!([{"dst": "10.7.0.0/16", "dev": "v1", "protocol": "211", "scope": "link", "flags": []}])
            );
        });
    });
}

/// Several routes read back together say what each says alone, from
/// one dump per table, both families in it.
#[test]
fn observe_all_agrees_with_observe_one_by_one() {
    in_netns(|| {
        two_links();
        let mut k = kernel();
        let right = Object::node_route(route(
            "10.9.0.0/16",
            100,
            vec![hop("10.1.0.1", Some("v0"), 1)],
        ));
        let right6 = Object::node_route(route(
            "fd00:9::/64",
            100,
            vec![hop("fd00:1::1", Some("v0"), 1)],
        ));
        let drifted = Object::node_route(route(
            "10.8.0.0/16",
            100,
            vec![hop("10.1.0.1", Some("v0"), 1)],
        ));
        let missing = Object::node_route(route(
            "10.7.0.0/16",
            100,
            vec![hop("10.1.0.1", Some("v0"), 1)],
        ));
        let missing6 = Object::node_route(route(
            "fd00:7::/64",
            100,
            vec![hop("fd00:1::1", Some("v0"), 1)],
        ));
        let elsewhere = Object::node_route(route(
            "10.9.0.0/16",
            101,
            vec![hop("10.2.0.1", Some("v1"), 1)],
        ));
        for obj in [&right, &right6, &drifted, &elsewhere] {
            k.ensure(obj).unwrap();
        }
        ip(&[
            "route",
            "replace",
            "10.8.0.0/16",
            "via",
            "10.2.0.1",
            "table",
            "100",
            "proto",
            "211",
        ]);
        let objs = [&right, &right6, &drifted, &missing, &missing6, &elsewhere];
        let before = k.node_requests();
        let together = k.observe_all(&objs).unwrap();
        // One dump per table (100 and 101), whatever the families.
        assert_eq!(k.node_requests() - before, 2);
        let alone: Vec<Presence> = objs.iter().map(|o| k.observe(o).unwrap()).collect();
        assert_eq!(together, alone);
        assert_eq!(together[0], Presence::Present);
        assert_eq!(together[1], Presence::Present);
        assert!(matches!(together[2], Presence::Drifted(_)), "{together:?}");
        assert_eq!(together[3], Presence::Missing);
        assert_eq!(together[4], Presence::Missing);
        assert_eq!(together[5], Presence::Present);
        // A table that does not exist: both families missing, no error.
        let nowhere = Object::node_route(route("fd00:5::/64", 4242, vec![]));
        let nowhere4 = Object::node_route(route("10.5.0.0/16", 4242, vec![]));
        assert_eq!(
            k.observe_all(&[&nowhere, &nowhere4]).unwrap(),
            [Presence::Missing, Presence::Missing]
        );
    });
}

#[test]
fn observe_reports_drift() {
    in_netns(|| {
        two_links();
        let mut k = kernel();
        let spec = route("10.9.0.0/16", 100, vec![hop("10.1.0.1", Some("v0"), 1)]);
        let obj = Object::node_route(spec.clone());
        k.ensure(&obj).unwrap();

        ip(&[
            "route",
            "replace",
            "10.9.0.0/16",
            "via",
            "10.2.0.1",
            "table",
            "100",
            "proto",
            "211",
        ]);
        match k.observe(&obj).unwrap() {
            Presence::Drifted(why) => {
                assert!(
                    why.contains("expected inet route 10.9.0.0/16 table 100 via 10.1.0.1 dev v0"),
                    "{why}"
                );
                assert!(
                    why.contains(
                        "found inet route 10.9.0.0/16 table 100 via 10.2.0.1 dev v1 proto gwsteer"
                    ),
                    "{why}"
                );
            }
            other => panic!("expected drift, got {other:?}"),
        }

        // Right nexthop, someone else's route.
        ip(&[
            "route",
            "replace",
            "10.9.0.0/16",
            "via",
            "10.1.0.1",
            "table",
            "100",
            "proto",
            "static",
        ]);
        match k.observe(&obj).unwrap() {
            Presence::Drifted(why) => {
                assert!(why.contains("proto static, not gwsteer's"), "{why}")
            }
            other => panic!("expected drift, got {other:?}"),
        }

        // A kind change is drift too.
        ip(&[
            "route",
            "replace",
            "unreachable",
            "10.9.0.0/16",
            "table",
            "100",
            "proto",
            "211",
        ]);
        assert!(matches!(k.observe(&obj).unwrap(), Presence::Drifted(_)));

        // ensure repairs it in place.
        k.ensure(&obj).unwrap();
        assert_eq!(k.observe(&obj).unwrap(), Presence::Present);
        assert_eq!(
            routes_json("-4", 100),
            json!([{"dst": "10.9.0.0/16", "gateway": "10.1.0.1", "dev": "v0", "protocol": "211", "flags": []}])
        );

        // A route with another metric is another route, not drift.
        let other_metric = Object::node_route(RouteSpec {
            metric: Some(7),
            ..spec.clone()
        });
        assert_eq!(k.observe(&other_metric).unwrap(), Presence::Missing);

        // A drifted route of ours (other kind) still goes on remove.
        ip(&[
            "route",
            "replace",
            "unreachable",
            "10.9.0.0/16",
            "table",
            "100",
            "proto",
            "211",
        ]);
        k.remove(&obj).unwrap();
        assert_eq!(routes_json("-4", 100), json!([]));
    });
}

#[test]
fn remove_leaves_other_protocols_routes_alone() {
    in_netns(|| {
        two_links();
        let mut k = kernel();
        ip(&[
            "route",
            "add",
            "10.9.0.0/16",
            "via",
            "10.1.0.1",
            "table",
            "100",
            "proto",
            "static",
        ]);
        ip(&[
            "-6",
            "route",
            "add",
            "fd09::/64",
            "via",
            "fd00:1::1",
            "table",
            "100",
            "proto",
            "static",
        ]);
        k.remove(&Object::node_route(route(
            "10.9.0.0/16",
            100,
            vec![hop("10.1.0.1", None, 1)],
        )))
        .unwrap();
        k.remove(&Object::node_route(route(
            "fd09::/64",
            100,
            vec![hop("fd00:1::1", None, 1)],
        )))
        .unwrap();
        assert_eq!(routes_json("-4", 100).as_array().unwrap().len(), 1);
        assert_eq!(routes_json("-6", 100).as_array().unwrap().len(), 1);
    });
}

#[test]
fn owned_rules_and_table_routes_read_back_specs() {
    in_netns(|| {
        two_links();
        let mut k = kernel();

        let ours_v4 = rule(Family::V4, 1000, "10.244.0.5/32", 100);
        let mut ours_v6 = rule(Family::V6, 1000, "fd00:244::5/128", 1_000_000);
        ours_v6.iif = Some("v1".into());
        ours_v6.fwmark = Some(0x4);
        ours_v6.fwmask = Some(0xf);
        let ours_main = RuleSpec {
            src: None,
            dst: Some("10.96.0.0/12".parse().unwrap()),
            ..rule(Family::V4, 999, "0.0.0.0/0", TABLE_MAIN)
        };
        for r in [&ours_v4, &ours_v6, &ours_main] {
            k.ensure(&Object::node_rule(r.clone())).unwrap();
        }
        // An imposter pointing at our table, and a bystander.
        ip(&[
            "rule",
            "add",
            "from",
            "10.3.0.0/16",
            "priority",
            "2000",
            "table",
            "100",
        ]);
        ip(&[
            "rule",
            "add",
            "from",
            "10.4.0.0/16",
            "priority",
            "2001",
            "table",
            "200",
        ]);

        let mut owned: Vec<RuleSpec> = k
            .rules_with_protocol(&[100, 1_000_000])
            .unwrap()
            .into_iter()
            .map(|(spec, _)| spec)
            .collect();
        owned.sort_by_key(|r| (r.family, r.priority));
        let imposter = RuleSpec {
            src: Some("10.3.0.0/16".parse().unwrap()),
            ..rule(Family::V4, 2000, "10.3.0.0/16", 100)
        };
        assert_eq!(owned, vec![ours_main, ours_v4, imposter, ours_v6]);

        let ours = [
            route(
                "0.0.0.0/0",
                100,
                vec![
                    hop("10.1.0.1", Some("v0"), 1),
                    hop("10.2.0.1", Some("v1"), 4),
                ],
            ),
            route("10.9.0.0/16", 100, vec![hop("10.1.0.1", Some("v0"), 1)]),
            RouteSpec {
                dev: Some("v1".into()),
                metric: Some(20),
                ..route("10.8.0.0/16", 100, vec![])
            },
            RouteSpec {
                kind: RouteKind::Unreachable,
                ..route("::/0", 100, vec![])
            },
            route(
                "fd09::/64",
                100,
                vec![
                    hop("fd00:1::1", Some("v0"), 1),
                    hop("fd00:2::1", Some("v1"), 2),
                ],
            ),
        ];
        for r in &ours {
            k.ensure(&Object::node_route(r.clone())).unwrap();
        }
        ip(&[
            "route",
            "add",
            "10.50.0.0/16",
            "via",
            "10.2.0.1",
            "table",
            "100",
            "proto",
            "static",
        ]);
        // Elsewhere: must not show up.
        ip(&[
            "route",
            "add",
            "10.60.0.0/16",
            "via",
            "10.2.0.1",
            "table",
            "200",
        ]);
        ip(&[
            "-6",
            "route",
            "add",
            "fd60::/64",
            "via",
            "fd00:2::1",
            "table",
            "200",
        ]);

        let mut found = k.table_routes(100).unwrap();
        found.sort_by_key(|(r, _)| r.dst);
        let mut want: Vec<(RouteSpec, u8)> =
            ours.iter().cloned().map(|r| (r, RTPROT_GWSTEER)).collect();
        want.push((
            route("10.50.0.0/16", 100, vec![hop("10.2.0.1", Some("v1"), 1)]),
            4, // RTPROT_STATIC
        ));
        want.sort_by_key(|(r, _)| r.dst);
        assert_eq!(found, want);

        // The kernel itself filtered the dumps to the table asked for.
        for family in [Some(Family::V4), Some(Family::V6), None] {
            let raw = k.dump_route_messages(Side::Node, family, 100).unwrap();
            assert!(!raw.is_empty());
            for msg in &raw {
                let table = msg
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        RouteAttribute::Table(t) => Some(*t),
                        _ => None,
                    })
                    .unwrap();
                assert_eq!(table, 100, "{msg:?}");
            }
        }
        // And a table that does not exist reads as empty.
        assert!(k.table_routes(4242).unwrap().is_empty());
        // The main table holds the kernel's own routes, protocol kernel.
        let main = k.table_routes(TABLE_MAIN).unwrap();
        assert!(
            main.contains(&(
                RouteSpec {
                    dev: Some("v0".into()),
                    ..route("10.1.0.0/24", TABLE_MAIN, vec![])
                },
                2
            )),
            "{main:?}"
        );
    });
}

#[test]
fn errors_name_the_object_and_the_errno() {
    in_netns(|| {
        two_links();
        let mut k = kernel();
        let off_link =
            Object::node_route(route("10.9.0.0/16", 100, vec![hop("192.0.2.1", None, 1)]));
        let err = k.ensure(&off_link).unwrap_err();
        assert_eq!(err.code, code::KERNEL);
        assert!(
            err.msg.starts_with(
                "adding inet route 10.9.0.0/16 table 100 via 192.0.2.1: Network is unreachable (os error 101)"
            ),
            "{err}"
        );
        assert_eq!(
            err.details,
            "is the gateway reachable from the node, on a connected network?"
        );

        let no_dev = Object::node_route(route(
            "10.9.0.0/16",
            100,
            vec![hop("10.1.0.1", Some("nosuch0"), 1)],
        ));
        let err = k.ensure(&no_dev).unwrap_err();
        assert_eq!(
            err.msg,
            "adding inet route 10.9.0.0/16 table 100 via 10.1.0.1 dev nosuch0: no device named nosuch0"
        );

        let bad_weight = Object::node_route(route(
            "10.9.0.0/16",
            100,
            vec![hop("10.1.0.1", None, 0), hop("10.2.0.1", None, 1)],
        ));
        assert_eq!(
            k.ensure(&bad_weight).unwrap_err().code,
            code::INVALID_CONFIG
        );
    });
}

#[test]
fn link_index_and_probe() {
    in_netns(|| {
        two_links();
        let mut k = kernel();
        let links = ip_json(&["link", "show", "v1"]);
        let want = links[0]["ifindex"].as_u64().unwrap() as u32;
        assert_eq!(k.link_index(Side::Node, "v1").unwrap(), Some(want));
        assert_eq!(k.link_index(Side::Node, "lo").unwrap(), Some(1));
        assert_eq!(k.link_index(Side::Node, "nosuch0").unwrap(), None);
        NetlinkKernel::probe().unwrap();
    });
}

/// A named netns (`ip netns add`), deleted on drop, also when a test fails.
struct NamedNetns(String);

impl NamedNetns {
    fn new(tag: &str) -> NamedNetns {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "gwsteer-nltest-{}-{tag}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        NamedNetns(name)
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.0)
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn pod_side_objects_live_in_the_pod_netns() {
    in_netns(|| {
        two_links();
        let pod = NamedNetns::new("pod");
        let n = pod.0.clone();
        ip(&["-n", &n, "link", "set", "lo", "up"]);
        ip(&[
            "-n", &n, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
        ]);
        ip(&["-n", &n, "link", "set", "eth0", "up"]);
        ip(&["-n", &n, "link", "set", "eth1", "up"]);
        ip(&["-n", &n, "addr", "add", "10.5.0.2/24", "dev", "eth0"]);

        let mut k = NetlinkKernel::new(Some(pod.path())).unwrap();
        let pod_route = Object::Route {
            spec: route(
                "10.9.0.0/16",
                TABLE_MAIN,
                vec![hop("10.5.0.1", Some("eth0"), 1)],
            ),
            side: Side::Pod,
        };
        let pod_rule = Object::Rule {
            spec: rule(Family::V4, 1000, "10.5.0.2/32", 100),
            side: Side::Pod,
        };
        k.ensure(&pod_route).unwrap();
        k.ensure(&pod_rule).unwrap();
        assert_eq!(k.observe(&pod_route).unwrap(), Presence::Present);
        assert_eq!(k.observe(&pod_rule).unwrap(), Presence::Present);

        let shown = ip_json(&["-n", &n, "route", "show", "table", "main"]);
        let ours: Vec<&Value> = shown
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["protocol"] == "211")
            .collect();
        assert_eq!(
            ours,
            vec![
                &json!({"dst": "10.9.0.0/16", "gateway": "10.5.0.1", "dev": "eth0", "protocol": "211", "flags": []})
            ]
        );
        let rules = ip_json(&["-n", &n, "rule", "show", "priority", "1000"]);
        assert_eq!(
            rules,
            json!([{"priority": 1000, "src": "10.5.0.2", "table": "100", "protocol": "211"}])
        );
        let eth0 = ip_json(&["-n", &n, "link", "show", "eth0"]);
        assert_eq!(
            k.link_index(Side::Pod, "eth0").unwrap(),
            Some(eth0[0]["ifindex"].as_u64().unwrap() as u32)
        );

        // Nothing leaked into the node's namespace.
        assert_eq!(k.link_index(Side::Node, "eth0").unwrap(), None);
        assert!(rules_json("-4").is_empty());
        assert!(
            k.table_routes(TABLE_MAIN)
                .unwrap()
                .iter()
                .all(|(_, p)| *p != RTPROT_GWSTEER)
        );
        let node_twin = Object::node_route(route(
            "10.9.0.0/16",
            TABLE_MAIN,
            vec![hop("10.5.0.1", None, 1)],
        ));
        assert_eq!(k.observe(&node_twin).unwrap(), Presence::Missing);

        k.remove(&pod_route).unwrap();
        k.remove(&pod_rule).unwrap();
        assert_eq!(k.observe(&pod_route).unwrap(), Presence::Missing);
        assert_eq!(k.observe(&pod_rule).unwrap(), Presence::Missing);
        assert_eq!(
            ip_json(&["-n", &n, "rule", "show", "priority", "1000"]),
            json!([])
        );
    });
}

#[test]
fn a_missing_pod_netns_is_recognisable() {
    in_netns(|| {
        let gone = NamedNetns::new("gone");
        let path = gone.path();
        drop(gone);
        let mut k = NetlinkKernel::new(Some(path.clone())).unwrap();
        let obj = Object::Route {
            spec: route("10.9.0.0/16", TABLE_MAIN, vec![hop("10.5.0.1", None, 1)]),
            side: Side::Pod,
        };
        for err in [k.ensure(&obj).unwrap_err(), k.remove(&obj).unwrap_err()] {
            assert!(is_missing_netns(&err), "{err:?}");
            assert_eq!(err.code, code::UNKNOWN_CONTAINER);
            assert!(err.msg.contains(&path.display().to_string()), "{err}");
            assert!(
                err.msg.starts_with("adding pod inet route")
                    || err.msg.starts_with("removing pod inet route"),
                "{err}"
            );
        }
        // A file that is not a namespace (the mount point a deleted
        // namespace leaves behind) counts as missing too.
        let not_ns =
            std::env::temp_dir().join(format!("gwsteer-nltest-notns-{}", std::process::id()));
        std::fs::write(&not_ns, b"").unwrap();
        let mut k = NetlinkKernel::new(Some(not_ns.clone())).unwrap();
        let err = k.ensure(&obj).unwrap_err();
        let _ = std::fs::remove_file(&not_ns);
        assert!(is_missing_netns(&err), "{err:?}");
        assert!(err.msg.ends_with("is not a network namespace"), "{err}");
        // A pod-side object without any pod netns is a caller error.
        let mut k = kernel();
        assert_eq!(k.ensure(&obj).unwrap_err().code, code::INVALID_ENV);
        // Node-side work is unaffected.
        assert_eq!(
            k.observe(&Object::node_rule(rule(
                Family::V4,
                1000,
                "10.1.1.1/32",
                100
            )))
            .unwrap(),
            Presence::Missing
        );
    });
}

#[test]
fn route_matching_ignores_what_the_kernel_fills_in() {
    let want = route("10.9.0.0/16", 100, vec![hop("10.1.0.1", None, 1)]);
    let got = route("10.9.0.0/16", 100, vec![hop("10.1.0.1", Some("v0"), 1)]);
    assert!(route_matches(&want, &got));
    assert!(!route_matches(
        &got,
        &route("10.9.0.0/16", 100, vec![hop("10.1.0.1", Some("v1"), 1)])
    ));

    let many = route(
        "0.0.0.0/0",
        100,
        vec![hop("10.1.0.1", None, 1), hop("10.1.0.1", Some("v1"), 1)],
    );
    let kernel = route(
        "0.0.0.0/0",
        100,
        vec![
            hop("10.1.0.1", Some("v1"), 1),
            hop("10.1.0.1", Some("v0"), 1),
        ],
    );
    assert!(route_matches(&many, &kernel));
    let reweighted = route(
        "0.0.0.0/0",
        100,
        vec![
            hop("10.1.0.1", Some("v1"), 2),
            hop("10.1.0.1", Some("v0"), 1),
        ],
    );
    assert!(!route_matches(&many, &reweighted));

    assert_eq!(effective_metric(Family::V6, None), 1024);
    assert_eq!(effective_metric(Family::V6, Some(0)), 1024);
    assert_eq!(effective_metric(Family::V4, None), 0);
    assert_eq!(reported_metric(Family::V6, 1024), None);
    assert_eq!(reported_metric(Family::V4, 1024), Some(1024));
}

#[test]
fn rule_identity_follows_the_kernels_defaults() {
    let plain = rule(Family::V4, 1000, "10.244.0.5/32", 100);
    let marked = RuleSpec {
        fwmark: Some(3),
        ..plain.clone()
    };
    let masked = RuleSpec {
        fwmask: Some(u32::MAX),
        ..marked.clone()
    };
    assert_eq!(RuleIdentity::of(&marked), RuleIdentity::of(&masked));
    let from_all = RuleSpec {
        src: Some("0.0.0.0/0".parse().unwrap()),
        ..plain.clone()
    };
    assert_eq!(
        RuleIdentity::of(&from_all),
        RuleIdentity::of(&RuleSpec { src: None, ..plain })
    );
}

/// A policy's first ADD asks for gwsteer's rules at its tables or
/// priorities among every rule of the node; only those are parsed (table
/// and priority read in place, a table above 255 from `FRA_TABLE`). The
/// answer is the one a full parse gives, among 240 other rules of both
/// families and rules of another protocol at the same table or priority.
#[test]
fn gwsteer_rules_at_a_table_or_priority_are_found_among_many() {
    in_netns(|| {
        let mut k = kernel();
        for i in 0..120u32 {
            let v4 = rule(Family::V4, 3000 + i % 3, &format!("10.50.{i}.0/24"), 300);
            let v6 = rule(
                Family::V6,
                3000 + i % 3,
                &format!("fd00:50:{i:x}::/64"),
                300,
            );
            k.ensure(&Object::node_rule(v4)).unwrap();
            k.ensure(&Object::node_rule(v6)).unwrap();
        }
        let by_table_high = rule(Family::V4, 5000, "10.1.0.0/16", 1000);
        let by_table = rule(Family::V6, 5002, "fd00:1::/64", 100);
        let by_priority = rule(Family::V6, 999, "fd00:2::/64", 777);
        for spec in [&by_table_high, &by_table, &by_priority] {
            k.ensure(&Object::node_rule(spec.clone())).unwrap();
        }
        // Not gwsteer's: another protocol at the claimed table and priority.
        ip(&[
            "rule",
            "add",
            "from",
            "10.3.0.0/16",
            "priority",
            "999",
            "table",
            "1000",
        ]);
        let (tables, priorities) = ([1000, 100], [999]);

        // Both families in one dump.
        let before = k.node_requests();
        let mut found = k.gwsteer_rules_at(&tables, &priorities).unwrap();
        assert_eq!(k.node_requests() - before, 1);
        let mut parsed: Vec<RuleSpec> = k
            .rules_with_protocol(&tables)
            .unwrap()
            .into_iter()
            .filter(|(r, proto)| {
                *proto == RTPROT_GWSTEER
                    && (tables.contains(&r.table) || priorities.contains(&r.priority))
            })
            .map(|(r, _)| r)
            .collect();
        let order = |r: &RuleSpec| (r.family, r.priority, r.table);
        found.sort_by_key(order);
        parsed.sort_by_key(order);
        assert_eq!(found, parsed);
        assert_eq!(found, vec![by_table_high, by_priority, by_table]);
    });
}
