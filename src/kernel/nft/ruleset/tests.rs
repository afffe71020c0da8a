use super::check::stmt_refs;
use super::*;
use serde_json::json;

fn mark_policy(egress: &[&str], exclude: &[&str], mask: u32) -> FwPolicy {
    FwPolicy {
        scope: FwScope::Pod,
        network: "net1".into(),
        policy: "egress".into(),
        mark: 0x1400,
        mask,
        marking: Marking::Mark {
            egress_to: egress.iter().map(|c| c.parse().unwrap()).collect(),
            exclude: exclude.iter().map(|c| c.parse().unwrap()).collect(),
        },
    }
}

#[test]
fn mark_plan_names_and_rules() {
    let plan = policy_plan(&mark_policy(
        &["203.0.113.0/24"],
        &["203.0.113.7/32"],
        0xff00,
    ))
    .unwrap();
    assert_eq!(plan.table, "gwsteer-net1");
    let names: Vec<&str> = plan.sets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "egress_v4",
            "egress_v6",
            "egress_to_v4",
            "egress_ex_v4",
            "egress_to_v6"
        ]
    );
    assert_eq!(plan.chains.len(), 1);
    let v4 = &plan.chains[0].rules[0];
    assert_eq!(
        stmt_refs(v4),
        ["egress_v4", "egress_to_v4", "egress_ex_v4"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        v4.last().unwrap().to_json()["mangle"]["value"],
        json!({"|": [{"&": [{"meta": {"key": "mark"}}, 0xffff00ffu32]}, 0x1400]})
    );
    assert!(
        plan.comment.starts_with("gwsteer net1/egress #"),
        "{}",
        plan.comment
    );
}

#[test]
fn fingerprint_follows_the_spec() {
    let a = policy_plan(&mark_policy(&[], &[], u32::MAX)).unwrap();
    let b = policy_plan(&mark_policy(&[], &[], u32::MAX)).unwrap();
    let c = policy_plan(&mark_policy(&["10.0.0.0/8"], &[], u32::MAX)).unwrap();
    assert_eq!(a.comment, b.comment);
    assert_ne!(a.comment, c.comment);
}

/// The nft JSON of sample plans, hashed. When this fails, the rendering
/// changed: installed rules would still carry fingerprints that match,
/// so bump RULESET_VERSION, then update PINNED.
#[test]
fn rendering_is_pinned() {
    const PINNED: u64 = 0x3d64_9e02_4c85_0ae5;
    let samples = [
        policy_plan(&mark_policy(
            &["203.0.113.0/24", "fd00::/8"],
            &["203.0.113.7/32"],
            0xff00,
        )),
        policy_plan(&mark_policy(&[], &[], u32::MAX)),
        policy_plan(&FwPolicy {
            scope: FwScope::Pod,
            network: "net1".into(),
            policy: "in".into(),
            mark: 0x2,
            mask: 0x2,
            marking: Marking::Connmark {
                ingress: vec!["eth1".into(), "eth0".into()],
            },
        }),
        exemption_plan(&FwExemption {
            network: "net1".into(),
            cidrs: vec![
                "10.20.0.0/24".parse().unwrap(),
                "fd00:20::/64".parse().unwrap(),
            ],
            chains: Vec::new(),
        }),
    ];
    let mut h = fnv();
    for plan in samples {
        h.write(plan.unwrap().rendering().to_string().as_bytes());
    }
    let actual = h.finish();
    assert_eq!(
        actual, PINNED,
        "the nft rendering changed: bump RULESET_VERSION (now {RULESET_VERSION}), then set PINNED to {actual:#x}"
    );
}

/// Installed rules carry their plan's fingerprint: a change to how
/// plans are hashed (not to what they hold) would re-make every
/// policy's chains on upgrade. These are the fingerprints of version 3.
#[test]
fn fingerprints_of_unchanged_plans_stay() {
    let mark = policy_plan(&mark_policy(
        &["203.0.113.0/24"],
        &["203.0.113.7/32"],
        0xff00,
    ));
    let connmark = policy_plan(&FwPolicy {
        scope: FwScope::Pod,
        network: "net1".into(),
        policy: "in".into(),
        mark: 0x2,
        mask: 0x2,
        marking: Marking::Connmark {
            ingress: vec!["eth1".into()],
        },
    });
    assert_eq!(
        [mark.unwrap().comment, connmark.unwrap().comment],
        [
            "gwsteer net1/egress #8b19eceb468b2d6d",
            "gwsteer net1/in #7c1d0410007602fb"
        ]
    );
}

#[test]
fn long_names_keep_comments_short() {
    let mut p = mark_policy(&[], &[], u32::MAX);
    p.network = "n".repeat(200);
    let plan = policy_plan(&p).unwrap();
    assert_eq!(plan.comment.len(), MAX_COMMENT, "{}", plan.comment);
    assert!(plan.comment.starts_with("gwsteer nnn"), "{}", plan.comment);
    let short = policy_plan(&mark_policy(&[], &[], u32::MAX)).unwrap();
    assert!(short.comment.len() < MAX_COMMENT);
}

#[test]
fn bad_specs_are_config_errors() {
    let mut p = mark_policy(&[], &[], 0xff);
    assert_eq!(
        policy_plan(&p).unwrap_err().code,
        crate::error::code::INVALID_CONFIG
    );
    p.mask = u32::MAX;
    p.network = "a b".into();
    assert!(policy_plan(&p).is_err());
}
