//! The network configuration parser, as every CNI call feeds it stdin:
//! any bytes must give a validated `Config` or an error naming a field, and
//! a config that validates must plan (what ADD would make) without a panic.
#![no_main]

use gwsteer::cni::result::PodAddress;
use gwsteer::config::Config;
use gwsteer::plan::{self, Pod};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Config::from_bytes(data) {
        Ok(config) => {
            let pod = Pod {
                namespace: Some("default".into()),
                name: Some("web-0".into()),
                addresses: ["10.244.1.5/24", "fd00:244:0:1::5/64"]
                    .iter()
                    .map(|a| PodAddress {
                        address: a.parse().expect("a fixed address"),
                        gateway: None,
                        interface: Some("eth0".into()),
                    })
                    .collect(),
            };
            // What ADD plans with the nftables backend, knowing nothing else of
            // the node (no gateway network facts); and for a pod interface
            // with no host-side peer (the pod side of `side`).
            let node = plan::Facts {
                firewall: Some(gwsteer::model::Backend::Nftables),
                gateway: None,
                pod_link: None,
            };
            let peerless = plan::Facts {
                pod_link: Some(plan::PodLink {
                    ifname: "eth0".into(),
                    peerless: Some("a macvlan".into()),
                    index: Some(7),
                    // Another attachment's fwmark rule in the pod: the
                    // mark-conflict check runs on every parsed policy.
                    fwmark_rules: vec![gwsteer::model::RuleSpec {
                        family: gwsteer::model::Family::V4,
                        priority: 1000,
                        src: None,
                        dst: None,
                        fwmark: Some(0x14),
                        fwmask: Some(0xff),
                        iif: None,
                        table: 0x8000_0100,
                    }],
                }),
                ..node.clone()
            };
            for facts in [node, peerless] {
                let _ = plan::mark_conflict(&config, &pod, &facts);
                let planned = plan::plan(&config, &pod, &facts);
                for obj in &planned.pod_objects {
                    let _ = obj.to_string();
                }
            }
        }
        Err(e) => {
            assert!(e.code > 0, "an error without a code: {e}");
            assert!(!e.msg.is_empty(), "an error without a message");
        }
    }
});
