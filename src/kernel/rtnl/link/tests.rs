//! Links made over netlink, each test in a throw-away network namespace
//! (a thread that `unshare`s), read back with `ip -j`. The VRF test needs
//! a kernel with VRF: it says "skipped" elsewhere and runs in the VRF
//! guest (`bash tests/vrf/run-in-guest.sh <lib test binary> kernel::rtnl::link`).

use std::process::Command;

use serde_json::Value;

use super::*;

fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let thread = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET): these tests run as root");
        f()
    });
    match thread.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// `ip -j -d link show dev DEV`, or `None` if there is no such device.
fn link_json(dev: &str) -> Option<Value> {
    let out = Command::new("ip")
        .args(["-j", "-d", "link", "show", "dev", dev])
        .output()
        .expect("running ip");
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).expect("ip -j prints JSON");
    v.get(0).cloned()
}

fn spec(name: &str, kind: LinkKind, master: Option<&str>) -> LinkSpec {
    LinkSpec {
        name: name.into(),
        kind,
        mtu: None,
        master: master.map(String::from),
    }
}

fn veth(name: &str, peer: &str, master: Option<&str>) -> LinkSpec {
    spec(name, LinkKind::Veth { peer: peer.into() }, master)
}

#[test]
fn veth_legs_are_made_together_marked_and_up() {
    in_netns(|| {
        let mut k = NetlinkKernel::new(None).unwrap();
        let host = veth("gl-host", "gl-vrf", None);
        let other = veth("gl-vrf", "gl-host", None);
        assert_eq!(k.observe_link(&host).unwrap(), Presence::Missing);
        k.ensure_link(&host).unwrap();
        // The peer exists (made with the pair) but is down until its own spec.
        assert_eq!(
            k.observe_link(&other).unwrap(),
            Presence::Drifted("down".into())
        );
        k.ensure_link(&other).unwrap();
        k.ensure_link(&host).unwrap();
        for dev in ["gl-host", "gl-vrf"] {
            let l = link_json(dev).unwrap_or_else(|| panic!("{dev} missing"));
            assert_eq!(l["linkinfo"]["info_kind"], "veth", "{l}");
            assert_eq!(l["ifalias"], ALIAS, "{l}");
            assert!(
                l["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
                "{l}"
            );
        }
        assert_eq!(k.observe_link(&host).unwrap(), Presence::Present);
        assert_eq!(k.observe_link(&other).unwrap(), Presence::Present);
        assert_eq!(k.marked_links().unwrap().len(), 2);
        k.remove_link(&host).unwrap();
        assert!(link_json("gl-host").is_none() && link_json("gl-vrf").is_none());
        k.remove_link(&other).unwrap();
    });
}

#[test]
fn leg_addresses_are_added_observed_and_removed() {
    in_netns(|| {
        let mut k = NetlinkKernel::new(None).unwrap();
        k.ensure_link(&veth("gl-host", "gl-vrf", None)).unwrap();
        let v4: IpNet = "192.169.1.1/30".parse().unwrap();
        let v6: IpNet = "fd00:169::1/64".parse().unwrap();
        for a in [&v4, &v6] {
            assert_eq!(k.observe_address("gl-host", a).unwrap(), Presence::Missing);
            k.ensure_address("gl-host", a).unwrap();
            k.ensure_address("gl-host", a).unwrap();
            assert_eq!(k.observe_address("gl-host", a).unwrap(), Presence::Present);
        }
        let mut got = k.addresses_of("gl-host").unwrap().unwrap();
        got.retain(|a| !matches!(a, IpNet::V6(n) if n.addr().segments()[0] == 0xfe80));
        assert_eq!(got, vec![v4, v6]);
        // IPv6 without duplicate address detection: not tentative.
        let out = Command::new("ip")
            .args(["-j", "-6", "addr", "show", "dev", "gl-host", "tentative"])
            .output()
            .unwrap();
        let tentative: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert!(
            tentative.as_array().is_none_or(|l| l
                .iter()
                .all(|i| i["addr_info"].as_array().is_none_or(|a| a.is_empty()))),
            "{tentative}"
        );
        // Another prefix length on the same address is drift.
        let other: IpNet = "192.169.1.1/24".parse().unwrap();
        assert_eq!(
            k.observe_address("gl-host", &other).unwrap(),
            Presence::Drifted("is 192.169.1.1/30".into())
        );
        for a in [&v4, &v6] {
            k.remove_address("gl-host", a).unwrap();
            k.remove_address("gl-host", a).unwrap();
            assert_eq!(k.observe_address("gl-host", a).unwrap(), Presence::Missing);
        }
        assert_eq!(k.observe_address("nodev", &v4).unwrap(), Presence::Missing);
        k.remove_address("nodev", &v4).unwrap();
        assert!(k.ensure_address("nodev", &v4).is_err());
    });
}

#[test]
fn an_ipv6_vxlan_with_its_source_and_ipv6_fdb_entries() {
    in_netns(|| {
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("running ip");
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        };
        // A veth whose peer stays down: no carrier, so an address added
        // with duplicate address detection stays tentative.
        ip(&[
            "link", "add", "under0", "type", "veth", "peer", "name", "under1",
        ]);
        ip(&["link", "set", "under0", "up"]);
        ip(&["addr", "add", "fd00:200::1/64", "dev", "under0", "nodad"]);
        ip(&["addr", "add", "fd00:200::9/64", "dev", "under0"]);
        let mut k = NetlinkKernel::new(None).unwrap();
        let addrs = k.ipv6_addresses("under0").unwrap().unwrap();
        let find = |a: &str| {
            *addrs
                .iter()
                .find(|x| x.addr == a.parse::<std::net::Ipv6Addr>().unwrap())
                .unwrap_or_else(|| panic!("{a} not in {addrs:?}"))
        };
        let good = find("fd00:200::1");
        assert!(good.global && !good.tentative && !good.deprecated, "{good}");
        assert!(find("fd00:200::9").tentative, "{addrs:?}");
        assert_eq!(k.ipv6_addresses("nodev").unwrap(), None);

        let local: IpAddr = "fd00:200::1".parse().unwrap();
        let vx = LinkSpec {
            name: "gwvx0".into(),
            kind: LinkKind::Vxlan {
                vni: 42,
                group: None,
                local: Some(local),
                port: 4789,
                dev: Some("under0".into()),
            },
            mtu: Some(1430),
            master: None,
        };
        k.ensure_link(&vx).unwrap();
        k.ensure_link(&vx).unwrap();
        let l = link_json("gwvx0").unwrap();
        assert_eq!(l["linkinfo"]["info_data"]["local6"], "fd00:200::1", "{l}");
        assert_eq!(l["mtu"], 1430, "{l}");
        assert_eq!(k.observe_link(&vx).unwrap(), Presence::Present);
        let remote: IpAddr = "fd00:200::2".parse().unwrap();
        assert_eq!(k.observe_fdb("gwvx0", remote).unwrap(), Presence::Missing);
        k.ensure_fdb("gwvx0", remote).unwrap();
        k.ensure_fdb("gwvx0", remote).unwrap();
        assert_eq!(k.observe_fdb("gwvx0", remote).unwrap(), Presence::Present);
        // Another source address is drift, and ensure makes it anew.
        let other = LinkSpec {
            kind: LinkKind::Vxlan {
                vni: 42,
                group: None,
                local: Some("fd00:200::3".parse().unwrap()),
                port: 4789,
                dev: Some("under0".into()),
            },
            ..vx.clone()
        };
        assert!(matches!(
            k.observe_link(&other).unwrap(),
            Presence::Drifted(why) if why.contains("local")
        ));
        k.remove_fdb("gwvx0", remote).unwrap();
        k.remove_fdb("gwvx0", remote).unwrap();
        assert_eq!(k.observe_fdb("gwvx0", remote).unwrap(), Presence::Missing);
        // An IPv6 multicast group on the underlay.
        let mc = LinkSpec {
            name: "gwvx1".into(),
            kind: LinkKind::Vxlan {
                vni: 43,
                group: Some("ff05::42".parse().unwrap()),
                local: Some(local),
                port: 4789,
                dev: Some("under0".into()),
            },
            mtu: Some(1430),
            master: None,
        };
        k.ensure_link(&mc).unwrap();
        let l = link_json("gwvx1").unwrap();
        assert_eq!(l["linkinfo"]["info_data"]["group6"], "ff05::42", "{l}");
        assert_eq!(k.observe_link(&mc).unwrap(), Presence::Present);
        k.remove_link(&vx).unwrap();
        k.remove_link(&mc).unwrap();
        assert!(link_json("gwvx0").is_none() && link_json("gwvx1").is_none());
    });
}

#[test]
fn vrf_device_with_its_table_and_an_enslaved_leg() {
    if !crate::kernel::vrf_supported() {
        eprintln!("vrf_device_with_its_table_and_an_enslaved_leg: skipped: no VRF in this kernel");
        return;
    }
    in_netns(|| {
        let mut k = NetlinkKernel::new(None).unwrap();
        let vrf = spec("vrf-oam", LinkKind::Vrf { table: 10 }, None);
        let host = veth("gl-host", "gl-vrf", None);
        let leg = veth("gl-vrf", "gl-host", Some("vrf-oam"));
        for s in [&vrf, &host, &leg] {
            k.ensure_link(s).unwrap();
            k.ensure_link(s).unwrap();
        }
        let l = link_json("vrf-oam").unwrap();
        assert_eq!(l["linkinfo"]["info_kind"], "vrf", "{l}");
        assert_eq!(l["linkinfo"]["info_data"]["table"], 10, "{l}");
        assert_eq!(link_json("gl-vrf").unwrap()["master"], "vrf-oam");
        assert!(link_json("gl-host").unwrap().get("master").is_none());
        for s in [&vrf, &host, &leg] {
            assert_eq!(k.observe_link(s).unwrap(), Presence::Present, "{s}");
        }
        // Another table is drift; ensure makes the VRF anew (it is gwsteer's).
        let vrf11 = spec("vrf-oam", LinkKind::Vrf { table: 11 }, None);
        assert_eq!(
            k.observe_link(&vrf11).unwrap(),
            Presence::Drifted("table 10".into())
        );
        k.ensure_link(&vrf11).unwrap();
        k.ensure_link(&leg).unwrap();
        assert_eq!(
            link_json("vrf-oam").unwrap()["linkinfo"]["info_data"]["table"],
            11
        );
        assert_eq!(k.observe_link(&leg).unwrap(), Presence::Present);
        k.remove_link(&vrf11).unwrap();
        k.remove_link(&host).unwrap();
        assert!(link_json("vrf-oam").is_none() && link_json("gl-vrf").is_none());
    });
}
