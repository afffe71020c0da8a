//! Kernel tests, run as root. Each runs on a thread that `unshare`s into a
//! fresh network namespace (the "node": the backend's netlink socket and
//! every iptables child belong to it); pods and peers are named namespaces
//! whose guards delete them even when an assertion fails. Nothing touches
//! the root namespace's firewall.
//!
//! Rules are read back with `iptables-save` of each variant and compared as
//! whole rule lists; traffic tests open real TCP connections and look at
//! where they arrive (the source a peer sees, or counters in the peer's raw
//! table).

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;

use super::rules::{CHAIN_PREFIX, COMMENT_PREFIX, PolicyNames, SET_PREFIX};
use super::xtables::Table;
use super::*;
use crate::firewall::Marking;
use crate::firewall::testutil::{in_netns, run, succeeded};

// ---- namespaces and commands ----

/// Runs `f` on a thread inside named namespace `ns`.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    let thread = std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("the namespace's file");
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    });
    match thread.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn output(cmd: &str, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).expect("writing stdin");
    }
    child.wait_with_output().expect("waiting")
}

fn run_with(cmd: &str, args: &[&str], stdin: Option<&str>) -> String {
    succeeded(cmd, args, output(cmd, args, stdin))
}

fn run_in(ns: &str, cmd: &str, args: &[&str]) -> String {
    let (ns, cmd) = (ns.to_string(), cmd.to_string());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    in_ns(&ns, move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&cmd, &args)
    })
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A named network namespace, deleted on drop.
struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Ns {
        let name = format!(
            "gwipt{}-{}-{tag}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        let ns = Ns(name);
        run("ip", &["-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.0];
        all.extend_from_slice(args);
        run("ip", &all);
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

// ---- reading rules back ----

fn tool(variant: Variant, family: Family) -> &'static str {
    variant.command(family)
}

fn saved(variant: Variant, family: Family, table: &str) -> Table {
    let out = run(&format!("{}-save", tool(variant, family)), &["-t", table]);
    Table::parse(table, &out)
}

/// A table's rules as `-A CHAIN args` lines (quotes as the parser removed them).
fn lines(t: &Table) -> Vec<String> {
    t.rules
        .iter()
        .map(|r| format!("-A {} {}", r.chain, r.args.join(" ")))
        .collect()
}

fn ipt(variant: Variant, family: Family, args: &[&str]) {
    let mut all = vec!["-w"];
    all.extend_from_slice(args);
    run(tool(variant, family), &all);
}

fn backend(variant: Variant) -> Iptables {
    Iptables::with_variant(Some(variant)).expect("the iptables backend")
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn nets(s: &[&str]) -> Vec<IpNet> {
    s.iter().map(|n| net(n)).collect()
}

fn mark_policy(egress_to: &[&str], exclude: &[&str]) -> FwObject {
    FwObject::Policy(FwPolicy {
        network: "net".into(),
        policy: "egress".into(),
        mark: 0x100,
        mask: 0xff00,
        marking: Marking::Mark {
            egress_to: nets(egress_to),
            exclude: nets(exclude),
        },
    })
}

fn connmark_policy(ingress: &[&str]) -> FwObject {
    FwObject::Policy(FwPolicy {
        network: "net".into(),
        policy: "ret".into(),
        mark: 0x14,
        mask: u32::MAX,
        marking: Marking::Connmark {
            ingress: ingress.iter().map(|s| s.to_string()).collect(),
        },
    })
}

fn member(policy: &str, addr: &str) -> FwObject {
    FwObject::Member(FwMember {
        network: "net".into(),
        policy: policy.into(),
        addr: net(addr),
    })
}

fn exemption(cidrs: &[&str], chains: &[&str]) -> FwObject {
    FwObject::Exemption(FwExemption {
        network: "gw".into(),
        cidrs: nets(cidrs),
        chains: chains.iter().map(|s| s.to_string()).collect(),
    })
}

fn hash_of(network: &str, policy: &str) -> String {
    PolicyNames::new(network, policy).chain[CHAIN_PREFIX.len()..].to_string()
}

fn gws_sets(fw: &mut Iptables) -> Vec<String> {
    fw.ipset
        .names()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(SET_PREFIX))
        .collect()
}

fn members(fw: &mut Iptables, set: &str) -> Vec<IpNet> {
    fw.ipset
        .members(set)
        .unwrap()
        .unwrap_or_else(|| panic!("no set {set}"))
}

fn is_gwsteer_line(line: &str) -> bool {
    line.contains(COMMENT_PREFIX) || line.contains(CHAIN_PREFIX)
}

const VARIANTS: [Variant; 2] = [Variant::Legacy, Variant::Nft];

const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

#[test]
fn variant_comes_from_the_environment_value() {
    assert_eq!(variant_from_env(None).unwrap(), None);
    assert_eq!(variant_from_env(Some("")).unwrap(), None);
    assert_eq!(
        variant_from_env(Some("legacy")).unwrap(),
        Some(Variant::Legacy)
    );
    assert_eq!(variant_from_env(Some(" nft ")).unwrap(), Some(Variant::Nft));
    let err = variant_from_env(Some("iptables")).unwrap_err();
    assert_eq!(err.code, code::INVALID_ENV);
    assert!(err.msg.contains("GWSTEER_IPTABLES"), "{err}");
}

// ---- policies ----

#[test]
fn mark_policy_ensure_observe_remove() {
    for v in VARIANTS {
        in_netns(move || {
            let mut fw = backend(v);
            let p = mark_policy(
                &["203.0.113.0/24", "2001:db8:ff::/64"],
                &["203.0.113.20/32"],
            );
            assert_eq!(fw.observe(&p).unwrap(), Presence::Missing);
            fw.ensure(&p).unwrap();
            let h = hash_of("net", "egress");
            assert_eq!(
                lines(&saved(v, Family::V4, "mangle")),
                vec![
                    format!(
                        "-A PREROUTING -m set --match-set gws-{h}-4 src -m comment --comment gwsteer:net/egress -j GWS-{h}"
                    ),
                    format!(
                        "-A GWS-{h} -m set --match-set gws-{h}-4 src -m set --match-set gws-{h}-to4 dst -m set ! --match-set gws-{h}-ex4 dst -m comment --comment gwsteer:net/egress -j MARK --set-xmark 0x100/0xff00"
                    ),
                ],
                "{v:?}"
            );
            assert_eq!(
                lines(&saved(v, Family::V6, "mangle")),
                vec![
                    format!(
                        "-A PREROUTING -m set --match-set gws-{h}-6 src -m comment --comment gwsteer:net/egress -j GWS-{h}"
                    ),
                    format!(
                        "-A GWS-{h} -m set --match-set gws-{h}-6 src -m set --match-set gws-{h}-to6 dst -m set ! --match-set gws-{h}-ex6 dst -m comment --comment gwsteer:net/egress -j MARK --set-xmark 0x100/0xff00"
                    ),
                ]
            );
            assert_eq!(
                members(&mut fw, &format!("gws-{h}-to4")),
                nets(&["203.0.113.0/24"])
            );
            assert_eq!(
                members(&mut fw, &format!("gws-{h}-ex4")),
                nets(&["203.0.113.20/32"])
            );
            assert_eq!(
                members(&mut fw, &format!("gws-{h}-to6")),
                nets(&["2001:db8:ff::/64"])
            );
            assert_eq!(members(&mut fw, &format!("gws-{h}-ex6")), vec![]);
            assert_eq!(members(&mut fw, &format!("gws-{h}-4")), vec![]);
            assert!(
                lines(&saved(v.other(), Family::V4, "mangle")).is_empty(),
                "other variant untouched"
            );
            assert_eq!(fw.observe(&p).unwrap(), Presence::Present);

            // Twice: no duplicate, nothing rewritten, whichever path it takes.
            let before = (
                saved(v, Family::V4, "mangle"),
                saved(v, Family::V6, "mangle"),
            );
            fw.ensure(&p).unwrap();
            fw.suspect.insert(p.clone());
            fw.ensure(&p).unwrap();
            assert_eq!(
                (
                    saved(v, Family::V4, "mangle"),
                    saved(v, Family::V6, "mangle")
                ),
                before
            );

            fw.remove(&p).unwrap();
            for family in FAMILIES {
                let t = saved(v, family, "mangle");
                assert!(
                    t.rules.is_empty() && !t.chains.iter().any(|c| c.starts_with(CHAIN_PREFIX)),
                    "{t:?}"
                );
            }
            assert_eq!(gws_sets(&mut fw), Vec::<String>::new());
            assert_eq!(fw.observe(&p).unwrap(), Presence::Missing);
            fw.remove(&p).unwrap();
        });
    }
}

#[test]
fn connmark_policy_ensure_observe_remove() {
    for v in VARIANTS {
        in_netns(move || {
            let mut fw = backend(v);
            let p = connmark_policy(&["vin0", "vin1"]);
            fw.ensure(&p).unwrap();
            let h = hash_of("net", "ret");
            for (family, d) in [(Family::V4, '4'), (Family::V6, '6')] {
                let mut got = lines(&saved(v, family, "mangle"));
                got.sort();
                let mut want = vec![
                    format!(
                        "-A PREROUTING -m set --match-set gws-{h}-{d} src -m comment --comment gwsteer:net/ret -j GWS-{h}"
                    ),
                    format!(
                        "-A FORWARD -m set --match-set gws-{h}-{d} dst -m comment --comment gwsteer:net/ret -j GWS-{h}-FWD"
                    ),
                    format!(
                        "-A GWS-{h} -m set --match-set gws-{h}-{d} src -m conntrack --ctdir REPLY -m connmark --mark 0x14 -m comment --comment gwsteer:net/ret -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff"
                    ),
                    format!(
                        "-A GWS-{h}-FWD -i vin0 -m conntrack --ctstate NEW -m set --match-set gws-{h}-{d} dst -m comment --comment gwsteer:net/ret -j CONNMARK --set-xmark 0x14/0xffffffff"
                    ),
                    format!(
                        "-A GWS-{h}-FWD -i vin1 -m conntrack --ctstate NEW -m set --match-set gws-{h}-{d} dst -m comment --comment gwsteer:net/ret -j CONNMARK --set-xmark 0x14/0xffffffff"
                    ),
                ];
                want.sort();
                assert_eq!(got, want, "{v:?} {family}");
            }
            assert_eq!(fw.observe(&p).unwrap(), Presence::Present);
            let info = fw.ipset.info(&format!("gws-{h}-4")).unwrap().unwrap();
            assert_eq!(info.references, 5, "every rule references the member set");

            fw.remove(&p).unwrap();
            for family in FAMILIES {
                assert!(
                    !lines(&saved(v, family, "mangle"))
                        .iter()
                        .any(|l| is_gwsteer_line(l))
                );
            }
            assert_eq!(gws_sets(&mut fw), Vec::<String>::new());
            assert_eq!(fw.observe(&p).unwrap(), Presence::Missing);
        });
    }
}

#[test]
fn changing_a_policy_keeps_its_members() {
    in_netns(|| {
        let mut fw = backend(Variant::Nft);
        let old = mark_policy(&[], &[]);
        fw.ensure(&old).unwrap();
        fw.ensure(&member("egress", "10.0.0.5/32")).unwrap();
        // What ensure_group does when the config changed: remove, ensure.
        let new = mark_policy(&["203.0.113.0/24"], &[]);
        fw.remove(&old).unwrap();
        fw.ensure(&new).unwrap();
        assert_eq!(fw.observe(&new).unwrap(), Presence::Present);
        assert_eq!(
            fw.observe(&member("egress", "10.0.0.5/32")).unwrap(),
            Presence::Present
        );
    });
}

#[test]
fn members_add_test_remove_twice() {
    for v in VARIANTS {
        in_netns(move || {
            let mut fw = backend(v);
            let m4 = member("egress", "10.0.0.5/32");
            let m6 = member("egress", "fd00::5/128");
            let err = fw.ensure(&m4).unwrap_err();
            assert_eq!(err.code, code::FIREWALL);
            assert!(err.msg.contains("not in place"), "{err}");

            let p = mark_policy(&[], &[]);
            fw.ensure(&p).unwrap();
            for _ in 0..2 {
                fw.ensure(&m4).unwrap();
                fw.ensure(&m6).unwrap();
            }
            let h = hash_of("net", "egress");
            assert_eq!(
                members(&mut fw, &format!("gws-{h}-4")),
                nets(&["10.0.0.5/32"])
            );
            assert_eq!(
                members(&mut fw, &format!("gws-{h}-6")),
                nets(&["fd00::5/128"])
            );
            assert_eq!(fw.observe(&m4).unwrap(), Presence::Present);
            assert_eq!(
                fw.observe(&member("egress", "10.0.0.6/32")).unwrap(),
                Presence::Missing
            );
            for _ in 0..2 {
                fw.remove(&m4).unwrap();
                fw.remove(&m6).unwrap();
            }
            assert_eq!(fw.observe(&m4).unwrap(), Presence::Missing);
            assert_eq!(fw.observe(&m6).unwrap(), Presence::Missing);
            fw.remove(&p).unwrap();
            // Gone with its policy: removing or observing is still fine.
            fw.remove(&m4).unwrap();
            assert_eq!(fw.observe(&m4).unwrap(), Presence::Missing);
        });
    }
}

fn drifted(p: Presence) -> String {
    match p {
        Presence::Drifted(how) => how,
        other => panic!("expected drift, got {other:?}"),
    }
}

#[test]
fn drift_is_named_and_repaired() {
    for v in VARIANTS {
        in_netns(move || {
            let p = connmark_policy(&["vin0", "vin1"]);
            let h = hash_of("net", "ret");
            backend(v).ensure(&p).unwrap();
            let want4 = saved(v, Family::V4, "mangle");

            // A jump deleted by hand: a fresh backend (a later ADD) repairs
            // it on its fast path, which sees one reference fewer.
            ipt(
                v,
                Family::V4,
                &[
                    "-t",
                    "mangle",
                    "-D",
                    "FORWARD",
                    "-m",
                    "set",
                    "--match-set",
                    &format!("gws-{h}-4"),
                    "dst",
                    "-m",
                    "comment",
                    "--comment",
                    "gwsteer:net/ret",
                    "-j",
                    &format!("GWS-{h}-FWD"),
                ],
            );
            let how = drifted(backend(v).observe(&p).unwrap());
            assert!(
                how.contains(&format!(
                    "jump `-A FORWARD -m set --match-set gws-{h}-4 dst"
                )) && how.contains("missing"),
                "{how}"
            );
            backend(v).ensure(&p).unwrap();
            assert_eq!(saved(v, Family::V4, "mangle"), want4);

            // A rule deleted from our chain.
            ipt(
                v,
                Family::V4,
                &["-t", "mangle", "-D", &format!("GWS-{h}-FWD"), "2"],
            );
            let how = drifted(backend(v).observe(&p).unwrap());
            assert!(
                how.contains(&format!("rule `-A GWS-{h}-FWD -i vin1")),
                "{how}"
            );
            backend(v).ensure(&p).unwrap();
            assert_eq!(saved(v, Family::V4, "mangle"), want4);

            // A foreign rule in our chain: references stay, so only an
            // ensure after observe (reconcile) looks closer.
            ipt(
                v,
                Family::V4,
                &["-t", "mangle", "-A", &format!("GWS-{h}"), "-j", "ACCEPT"],
            );
            let mut fw = backend(v);
            let how = drifted(fw.observe(&p).unwrap());
            assert!(
                how.contains(&format!("unexpected rule `-A GWS-{h} -j ACCEPT`")),
                "{how}"
            );
            fw.ensure(&p).unwrap();
            assert_eq!(saved(v, Family::V4, "mangle"), want4);
            assert_eq!(fw.observe(&p).unwrap(), Presence::Present);

            // A set's contents changed behind our back.
            let pm = mark_policy(&["203.0.113.0/24"], &[]);
            let hm = hash_of("net", "egress");
            fw.ensure(&pm).unwrap();
            fw.ipset
                .del(&format!("gws-{hm}-to4"), &net("203.0.113.0/24"))
                .unwrap();
            fw.ipset
                .add(&format!("gws-{hm}-to4"), &net("192.0.2.0/24"))
                .unwrap();
            let how = drifted(fw.observe(&pm).unwrap());
            assert!(
                how.contains(&format!("ipset gws-{hm}-to4 lacks 203.0.113.0/24")),
                "{how}"
            );
            assert!(how.contains("unexpected 192.0.2.0/24"), "{how}");
            fw.ensure(&pm).unwrap();
            assert_eq!(
                members(&mut fw, &format!("gws-{hm}-to4")),
                nets(&["203.0.113.0/24"])
            );

            // The whole chain flushed (a firewall reload): missing rules.
            ipt(
                v,
                Family::V6,
                &["-t", "mangle", "-F", &format!("GWS-{h}-FWD")],
            );
            assert!(drifted(backend(v).observe(&p).unwrap()).contains("ip6tables"));
            backend(v).ensure(&p).unwrap();
            assert_eq!(backend(v).observe(&p).unwrap(), Presence::Present);
        });
    }
}

// ---- cleanup ----

#[test]
fn cleanup_removes_only_gwsteers() {
    for v in VARIANTS {
        in_netns(move || {
            let mut fw = backend(v);
            for f in FAMILIES {
                ipt(
                    v,
                    f,
                    &[
                        "-t",
                        "mangle",
                        "-A",
                        "PREROUTING",
                        "-m",
                        "comment",
                        "--comment",
                        "foreign",
                        "-j",
                        "MARK",
                        "--set-xmark",
                        "0x1/0x1",
                    ],
                );
                ipt(v, f, &["-t", "nat", "-N", "FOREIGN"]);
                ipt(v, f, &["-t", "nat", "-A", "POSTROUTING", "-j", "FOREIGN"]);
                ipt(v, f, &["-t", "nat", "-A", "FOREIGN", "-j", "MASQUERADE"]);
            }
            fw.ipset.create("foreign-set", Family::V4).unwrap();
            fw.ensure(&mark_policy(&["203.0.113.0/24"], &["203.0.113.20/32"]))
                .unwrap();
            fw.ensure(&connmark_policy(&["vin0"])).unwrap();
            fw.ensure(&member("ret", "10.0.0.7/32")).unwrap();
            fw.ensure(&exemption(&["10.50.0.0/24", "fd00:50::/64"], &["FOREIGN"]))
                .unwrap();

            let snapshot = || {
                let mut all = Vec::new();
                for variant in VARIANTS {
                    for f in FAMILIES {
                        for t in ["mangle", "nat"] {
                            all.extend(
                                lines(&saved(variant, f, t))
                                    .into_iter()
                                    .map(|l| format!("{variant:?} {f} {t} {l}")),
                            );
                        }
                    }
                }
                all
            };
            let before = snapshot();
            let sets_before = fw.ipset.names().unwrap();
            let would = fw.cleanup(true).unwrap();
            assert_eq!(snapshot(), before, "dry run changes nothing");
            assert_eq!(fw.ipset.names().unwrap(), sets_before);
            let done = fw.cleanup(false).unwrap();
            assert_eq!(done, would);
            assert!(
                done.iter()
                    .any(|d| d.contains("nat: rule") && d.contains("NETMAP")),
                "{done:#?}"
            );
            assert!(
                done.iter().any(|d| d.starts_with("ipset gws-")),
                "{done:#?}"
            );

            let after = snapshot();
            let kept: Vec<&String> = before.iter().filter(|l| !is_gwsteer_line(l)).collect();
            assert_eq!(
                after.iter().collect::<Vec<_>>(),
                kept,
                "exactly the foreign rules stay"
            );
            assert!(after.iter().any(|l| l.contains("-A FOREIGN -j MASQUERADE")));
            assert_eq!(fw.ipset.names().unwrap(), vec!["foreign-set".to_string()]);
            assert_eq!(fw.cleanup(false).unwrap(), Vec::<String>::new());
        });
    }
}

// ---- exemption rules ----

#[test]
fn exemption_returns_first_in_foreign_chains_of_both_variants() {
    for v in VARIANTS {
        in_netns(move || {
            for variant in VARIANTS {
                for f in FAMILIES {
                    ipt(variant, f, &["-t", "nat", "-N", "KIND-MASQ-AGENT"]);
                    ipt(
                        variant,
                        f,
                        &["-t", "nat", "-A", "KIND-MASQ-AGENT", "-j", "MASQUERADE"],
                    );
                    ipt(
                        variant,
                        f,
                        &["-t", "nat", "-A", "POSTROUTING", "-j", "KIND-MASQ-AGENT"],
                    );
                }
            }
            let mut fw = backend(v);
            let e = exemption(&["10.50.0.0/24", "fd00:50::/64"], &["KIND-MASQ-AGENT"]);
            assert_eq!(fw.observe(&e).unwrap(), Presence::Missing);
            fw.ensure(&e).unwrap();
            let spec = ExemptionSpec::new(match &e {
                FwObject::Exemption(x) => x,
                _ => unreachable!(),
            });
            for variant in VARIANTS {
                for (f, cidr) in [(Family::V4, "10.50.0.0/24"), (Family::V6, "fd00:50::/64")] {
                    let w = spec.witness(f).name;
                    assert_eq!(
                        lines(&saved(variant, f, "nat")),
                        vec![
                            format!(
                                "-A POSTROUTING -s {cidr} -m set --match-set {w} src -m comment --comment gwsteer:gw -j NETMAP --to {cidr}"
                            ),
                            "-A POSTROUTING -j KIND-MASQ-AGENT".to_string(),
                            format!(
                                "-A KIND-MASQ-AGENT -s {cidr} -m set --match-set {w} src -m comment --comment gwsteer:gw -j RETURN"
                            ),
                            "-A KIND-MASQ-AGENT -j MASQUERADE".to_string(),
                        ],
                        "ours {v:?}, read {variant:?} {f}"
                    );
                }
            }
            assert_eq!(fw.observe(&e).unwrap(), Presence::Present);
            let before: Vec<Table> = VARIANTS
                .iter()
                .map(|x| saved(*x, Family::V4, "nat"))
                .collect();
            fw.suspect.insert(e.clone());
            fw.ensure(&e).unwrap();
            assert_eq!(
                VARIANTS
                    .iter()
                    .map(|x| saved(*x, Family::V4, "nat"))
                    .collect::<Vec<_>>(),
                before
            );

            // The primary CNI rewrites its chain: our RETURN is gone there.
            ipt(
                Variant::Nft,
                Family::V4,
                &["-t", "nat", "-F", "KIND-MASQ-AGENT"],
            );
            ipt(
                Variant::Nft,
                Family::V4,
                &["-t", "nat", "-A", "KIND-MASQ-AGENT", "-j", "MASQUERADE"],
            );
            let how = drifted(fw.observe(&e).unwrap());
            assert!(
                how.contains("iptables-nft nat: rule `-A KIND-MASQ-AGENT -s 10.50.0.0/24")
                    && how.contains("missing"),
                "{how}"
            );
            fw.ensure(&e).unwrap();
            assert_eq!(fw.observe(&e).unwrap(), Presence::Present);

            fw.remove(&e).unwrap();
            for variant in VARIANTS {
                for f in FAMILIES {
                    assert_eq!(
                        lines(&saved(variant, f, "nat")),
                        vec![
                            "-A POSTROUTING -j KIND-MASQ-AGENT",
                            "-A KIND-MASQ-AGENT -j MASQUERADE"
                        ],
                        "{variant:?} {f}"
                    );
                }
            }
            assert_eq!(gws_sets(&mut fw), Vec::<String>::new());
            assert_eq!(fw.observe(&e).unwrap(), Presence::Missing);
        });
    }
}

// ---- fast paths and their cost ----

fn avg_micros(n: u32, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

#[test]
fn fast_paths_run_no_process() {
    for v in VARIANTS {
        in_netns(move || {
            let p = mark_policy(&["203.0.113.0/24"], &["203.0.113.20/32"]);
            let c = connmark_policy(&["vin0"]);
            let e = exemption(&["10.50.0.0/24", "fd00:50::/64"], &[]);
            let new_us = avg_micros(20, || drop(backend(v)));
            let mut fw = backend(v);
            let slow_us = avg_micros(1, || fw.ensure(&p).unwrap());
            fw.ensure(&c).unwrap();
            fw.ensure(&e).unwrap();

            let mut fw = backend(v);
            let policy_us = avg_micros(200, || fw.ensure(&p).unwrap());
            let connmark_us = avg_micros(200, || fw.ensure(&c).unwrap());
            let exemption_us = avg_micros(200, || fw.ensure(&e).unwrap());
            let mut i = 0u32;
            let add_us = avg_micros(500, || {
                i += 1;
                let m = member("egress", &format!("10.1.{}.{}/32", i / 250, i % 250));
                fw.ensure(&m).unwrap();
            });
            let mut i = 0u32;
            let del_us = avg_micros(500, || {
                i += 1;
                let m = member("egress", &format!("10.1.{}.{}/32", i / 250, i % 250));
                fw.remove(&m).unwrap();
            });
            assert_eq!(fw.execs.get(), 0, "no iptables process on the fast paths");
            fw.suspect.insert(p.clone());
            let full_us = avg_micros(1, || fw.ensure(&p).unwrap());
            eprintln!(
                "iptables backend ({v:?}): new {new_us:.0} µs; first ensure(mark policy) {slow_us:.0} µs; \
                 ensure(existing) mark {policy_us:.1} µs, connmark {connmark_us:.1} µs, exemption {exemption_us:.1} µs; \
                 full comparison of an existing policy {full_us:.0} µs; member add {add_us:.1} µs, del {del_us:.1} µs"
            );
        });
    }
}

// ---- real traffic: marks ----

/// Counters of a peer's raw PREROUTING probe rules (`-i DEV -p tcp
/// --dport/--sport PORT`), by interface.
fn probe_count(ns: &str, family: Family, dev: &str, dir: &str, port: u16) -> u64 {
    let save = format!("{}-save", tool(Variant::Nft, family));
    let out = run_in(ns, &save, &["-c", "-t", "raw"]);
    let needle = format!("-i {dev} -p tcp -m tcp {dir} {port}");
    out.lines()
        .find(|l| l.contains(&needle))
        .and_then(|l| l.strip_prefix('['))
        .and_then(|l| l.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no probe {needle} in {out}"))
}

fn add_probes(ns: &str, port: u16, dir: &str) {
    for family in FAMILIES {
        let bin = tool(Variant::Nft, family);
        for dev in ["ra", "rb"] {
            run_in(
                ns,
                bin,
                &[
                    "-t",
                    "raw",
                    "-A",
                    "PREROUTING",
                    "-i",
                    dev,
                    "-p",
                    "tcp",
                    dir,
                    &port.to_string(),
                ],
            );
        }
    }
}

fn listen(ns: &str, family: Family) -> TcpListener {
    let any = match family {
        Family::V4 => "0.0.0.0:0",
        Family::V6 => "[::]:0",
    };
    in_ns(ns, move || {
        let l = TcpListener::bind(any).expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        l
    })
}

/// A connection from namespace `from` to `to`, accepted by `listener`:
/// returns the source address the listener saw.
fn connect(from: &str, to: SocketAddr, listener: &TcpListener) -> IpAddr {
    in_ns(from, move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("connecting to {to}: {e}"));
        s.write_all(b"hello").expect("sending");
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match listener.accept() {
            Ok((_, peer)) => return peer.ip().to_canonical(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("accepting on {:?}: {e}", listener.local_addr()),
        }
    }
}

fn sysctl(ns: Option<&str>, kv: &str) {
    match ns {
        Some(ns) => {
            run_in(ns, "sysctl", &["-qw", kv]);
        }
        None => {
            run("sysctl", &["-qw", kv]);
        }
    }
}

/// pod (10.60.0.2, fd00:60::2) — node — two links (va, vb) — peer "R"
/// (ra 192.0.2.2 / fd00:a::2, rb 198.51.100.2 / fd00:b::2, remote
/// addresses 203.0.113.10/.20 and 2001:db8:ff::10/::20 on lo). The node
/// reaches the remote addresses and 192.0.2.0/24 by va in main, by vb in
/// table 100, which fwmark 0x14 (connmark) / 0x100/0xff00 (mark) selects.
fn two_path_topology(pod: &Ns, peer: &Ns) {
    run(
        "ip",
        &[
            "link", "add", "vpod", "type", "veth", "peer", "name", "eth0", "netns", &pod.0,
        ],
    );
    run(
        "ip",
        &[
            "link", "add", "va", "type", "veth", "peer", "name", "ra", "netns", &peer.0,
        ],
    );
    run(
        "ip",
        &[
            "link", "add", "vb", "type", "veth", "peer", "name", "rb", "netns", &peer.0,
        ],
    );
    for (dev, v4, v6) in [
        ("vpod", "10.60.0.1/24", "fd00:60::1/64"),
        ("va", "192.0.2.1/24", "fd00:a::1/64"),
        ("vb", "198.51.100.1/24", "fd00:b::1/64"),
    ] {
        run("ip", &["addr", "add", v4, "dev", dev]);
        run("ip", &["-6", "addr", "add", v6, "dev", dev, "nodad"]);
        run("ip", &["link", "set", dev, "up"]);
    }
    pod.ip(&["addr", "add", "10.60.0.2/24", "dev", "eth0"]);
    pod.ip(&["-6", "addr", "add", "fd00:60::2/64", "dev", "eth0", "nodad"]);
    pod.ip(&["link", "set", "eth0", "up"]);
    pod.ip(&["route", "add", "default", "via", "10.60.0.1"]);
    pod.ip(&["-6", "route", "add", "default", "via", "fd00:60::1"]);
    for (dev, v4, v6) in [
        ("ra", "192.0.2.2/24", "fd00:a::2/64"),
        ("rb", "198.51.100.2/24", "fd00:b::2/64"),
    ] {
        peer.ip(&["addr", "add", v4, "dev", dev]);
        peer.ip(&["-6", "addr", "add", v6, "dev", dev, "nodad"]);
        peer.ip(&["link", "set", dev, "up"]);
    }
    for a in ["203.0.113.10/32", "203.0.113.20/32"] {
        peer.ip(&["addr", "add", a, "dev", "lo"]);
    }
    for a in ["2001:db8:ff::10/128", "2001:db8:ff::20/128"] {
        peer.ip(&["-6", "addr", "add", a, "dev", "lo", "nodad"]);
    }
    peer.ip(&["route", "add", "10.60.0.0/24", "via", "192.0.2.1"]);
    peer.ip(&["-6", "route", "add", "fd00:60::/64", "via", "fd00:a::1"]);
    for kv in [
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
        "net.ipv4.conf.ra.rp_filter=0",
        "net.ipv4.conf.rb.rp_filter=0",
    ] {
        sysctl(Some(&peer.0), kv);
    }
    for kv in [
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.all.forwarding=1",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.va.rp_filter=0",
        "net.ipv4.conf.vb.rp_filter=0",
        "net.ipv4.conf.vpod.rp_filter=0",
    ] {
        sysctl(None, kv);
    }
    run(
        "ip",
        &["route", "add", "203.0.113.0/24", "via", "192.0.2.2"],
    );
    run(
        "ip",
        &["-6", "route", "add", "2001:db8:ff::/64", "via", "fd00:a::2"],
    );
    for dst in ["203.0.113.0/24", "192.0.2.0/24"] {
        run(
            "ip",
            &[
                "route",
                "add",
                dst,
                "via",
                "198.51.100.2",
                "dev",
                "vb",
                "table",
                "100",
            ],
        );
    }
    for dst in ["2001:db8:ff::/64", "fd00:a::/64"] {
        run(
            "ip",
            &[
                "-6",
                "route",
                "add",
                dst,
                "via",
                "fd00:b::2",
                "dev",
                "vb",
                "table",
                "100",
            ],
        );
    }
}

/// Which of the peer's links the probe packets arrived on: (ra, rb).
fn arrivals(peer: &str, family: Family, dir: &str, port: u16, f: impl FnOnce()) -> (u64, u64) {
    let a0 = probe_count(peer, family, "ra", dir, port);
    let b0 = probe_count(peer, family, "rb", dir, port);
    f();
    (
        probe_count(peer, family, "ra", dir, port) - a0,
        probe_count(peer, family, "rb", dir, port) - b0,
    )
}

#[test]
fn mark_and_connmark_steer_real_traffic() {
    for v in VARIANTS {
        in_netns(move || {
            let (pod, peer) = (Ns::new("pod"), Ns::new("peer"));
            two_path_topology(&pod, &peer);
            for family in ["-4", "-6"] {
                run(
                    "ip",
                    &[
                        family,
                        "rule",
                        "add",
                        "fwmark",
                        "0x100/0xff00",
                        "lookup",
                        "100",
                    ],
                );
                run(
                    "ip",
                    &[family, "rule", "add", "fwmark", "0x14", "lookup", "100"],
                );
            }
            let mut fw = backend(v);

            // mark: egress to 203.0.113.0/24 (and 2001:db8:ff::/64) but not .20 / ::20.
            let p = mark_policy(
                &["203.0.113.0/24", "2001:db8:ff::/64"],
                &["203.0.113.20/32", "2001:db8:ff::20/128"],
            );
            fw.ensure(&p).unwrap();
            for (family, addr, pod_addr, excluded) in [
                (Family::V4, "203.0.113.10", "10.60.0.2/32", "203.0.113.20"),
                (
                    Family::V6,
                    "2001:db8:ff::10",
                    "fd00:60::2/128",
                    "2001:db8:ff::20",
                ),
            ] {
                let l = listen(&peer.0, family);
                let port = l.local_addr().unwrap().port();
                add_probes(&peer.0, port, "--dport");
                let to = SocketAddr::new(addr.parse().unwrap(), port);
                let via = |to: SocketAddr| {
                    arrivals(&peer.0, family, "--dport", port, || {
                        connect(&pod.0, to, &l);
                    })
                };
                let (a, b) = via(to);
                assert!(
                    a > 0 && b == 0,
                    "{v:?} {family}: not a member yet: by va {a}, by vb {b}"
                );
                fw.ensure(&member("egress", pod_addr)).unwrap();
                let (a, b) = via(to);
                assert!(
                    a == 0 && b > 0,
                    "{v:?} {family}: member, marked: by va {a}, by vb {b}"
                );
                let (a, b) = via(SocketAddr::new(excluded.parse().unwrap(), port));
                assert!(
                    a > 0 && b == 0,
                    "{v:?} {family}: excluded destination: by va {a}, by vb {b}"
                );
                fw.remove(&member("egress", pod_addr)).unwrap();
                let (a, b) = via(to);
                assert!(
                    a > 0 && b == 0,
                    "{v:?} {family}: member removed: by va {a}, by vb {b}"
                );
            }
            fw.remove(&p).unwrap();

            // connmark: connections coming in on va get their replies back by vb.
            let c = connmark_policy(&["va"]);
            fw.ensure(&c).unwrap();
            for (family, pod_ip, pod_net, peer_ip) in [
                (Family::V4, "10.60.0.2", "10.60.0.2/32", "192.0.2.2"),
                (Family::V6, "fd00:60::2", "fd00:60::2/128", "fd00:a::2"),
            ] {
                let server = listen(&pod.0, family);
                let port = server.local_addr().unwrap().port();
                add_probes(&peer.0, port, "--sport");
                let to = SocketAddr::new(pod_ip.parse().unwrap(), port);
                let replies = || {
                    arrivals(&peer.0, family, "--sport", port, || {
                        let seen = connect(&peer.0, to, &server);
                        assert_eq!(seen, peer_ip.parse::<IpAddr>().unwrap());
                    })
                };
                let (a, b) = replies();
                assert!(
                    a > 0 && b == 0,
                    "{v:?} {family}: not a member: replies by va {a}, by vb {b}"
                );
                fw.ensure(&member("ret", pod_net)).unwrap();
                let (a, b) = replies();
                assert!(
                    a == 0 && b > 0,
                    "{v:?} {family}: member: replies by va {a}, by vb {b}"
                );

                // The pod's own connections are never marked.
                let out = listen(&peer.0, family);
                let oport = out.local_addr().unwrap().port();
                add_probes(&peer.0, oport, "--dport");
                let (a, b) = arrivals(&peer.0, family, "--dport", oport, || {
                    connect(
                        &pod.0,
                        SocketAddr::new(peer_ip.parse().unwrap(), oport),
                        &out,
                    );
                });
                assert!(
                    a > 0 && b == 0,
                    "{v:?} {family}: pod-initiated: by va {a}, by vb {b}"
                );
            }
            fw.remove(&member("ret", "10.60.0.2/32")).unwrap();
            fw.remove(&member("ret", "fd00:60::2/128")).unwrap();
            fw.remove(&c).unwrap();
        });
    }
}

// ---- real traffic: masquerade exemption ----

#[derive(Clone, Copy, Debug, PartialEq)]
enum Masq {
    IptablesLegacy,
    IptablesNft,
    Nftables,
}

fn install_masquerade(form: Masq) {
    match form {
        Masq::IptablesLegacy | Masq::IptablesNft => {
            let v = if form == Masq::IptablesLegacy {
                Variant::Legacy
            } else {
                Variant::Nft
            };
            for f in FAMILIES {
                ipt(
                    v,
                    f,
                    &[
                        "-t",
                        "nat",
                        "-A",
                        "POSTROUTING",
                        "-o",
                        "vup",
                        "-j",
                        "MASQUERADE",
                    ],
                );
            }
        }
        Masq::Nftables => {
            let script = "table inet masqtest {\n\
                 \tchain post {\n\
                 \t\ttype nat hook postrouting priority 100; policy accept;\n\
                 \t\toifname \"vup\" masquerade\n\
                 \t}\n}\n";
            run_with("nft", &["-f", "-"], Some(script));
        }
    }
}

/// pod (10.50.0.2, fd00:50::2) — node (masquerading out of vup) — peer
/// (192.0.2.2, fd00:a::2, with routes back to the pod subnets).
fn masquerade_topology(pod: &Ns, peer: &Ns) {
    run(
        "ip",
        &[
            "link", "add", "vpod", "type", "veth", "peer", "name", "eth0", "netns", &pod.0,
        ],
    );
    run(
        "ip",
        &[
            "link", "add", "vup", "type", "veth", "peer", "name", "eth0", "netns", &peer.0,
        ],
    );
    for (dev, v4, v6) in [
        ("vpod", "10.50.0.1/24", "fd00:50::1/64"),
        ("vup", "192.0.2.1/24", "fd00:a::1/64"),
    ] {
        run("ip", &["addr", "add", v4, "dev", dev]);
        run("ip", &["-6", "addr", "add", v6, "dev", dev, "nodad"]);
        run("ip", &["link", "set", dev, "up"]);
    }
    for (ns, v4, v6, gw4, gw6) in [
        (
            pod,
            "10.50.0.2/24",
            "fd00:50::2/64",
            "10.50.0.1",
            "fd00:50::1",
        ),
        (peer, "192.0.2.2/24", "fd00:a::2/64", "", ""),
    ] {
        ns.ip(&["addr", "add", v4, "dev", "eth0"]);
        ns.ip(&["-6", "addr", "add", v6, "dev", "eth0", "nodad"]);
        ns.ip(&["link", "set", "eth0", "up"]);
        if !gw4.is_empty() {
            ns.ip(&["route", "add", "default", "via", gw4]);
            ns.ip(&["-6", "route", "add", "default", "via", gw6]);
        }
    }
    peer.ip(&["route", "add", "10.50.0.0/24", "via", "192.0.2.1"]);
    peer.ip(&["-6", "route", "add", "fd00:50::/64", "via", "fd00:a::1"]);
    sysctl(None, "net.ipv4.ip_forward=1");
    sysctl(None, "net.ipv6.conf.all.forwarding=1");
}

/// The source the peer sees for a connection from the pod, per family.
fn seen_from_pod(pod: &Ns, peer: &Ns) -> [IpAddr; 2] {
    [(Family::V4, "192.0.2.2"), (Family::V6, "fd00:a::2")].map(|(family, peer_ip)| {
        let l = listen(&peer.0, family);
        let to = SocketAddr::new(peer_ip.parse().unwrap(), l.local_addr().unwrap().port());
        connect(&pod.0, to, &l)
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Order {
    MasqueradeFirst,
    ExemptionFirst,
}

/// For one case: what the peer sees (without exemption, with, after remove).
fn exemption_case(ours: Variant, form: Masq, order: Order) -> [[IpAddr; 2]; 3] {
    in_netns(move || {
        let (pod, peer) = (Ns::new("pod"), Ns::new("peer"));
        masquerade_topology(&pod, &peer);
        let mut fw = backend(ours);
        let e = exemption(&["10.50.0.0/24", "fd00:50::/64"], &[]);
        let without = match order {
            Order::MasqueradeFirst => {
                install_masquerade(form);
                let seen = seen_from_pod(&pod, &peer);
                fw.ensure(&e).unwrap();
                seen
            }
            Order::ExemptionFirst => {
                fw.ensure(&e).unwrap();
                install_masquerade(form);
                // "Without" is read after the removal below.
                [IpAddr::from([0, 0, 0, 0]); 2]
            }
        };
        let with = seen_from_pod(&pod, &peer);
        fw.remove(&e).unwrap();
        let after = seen_from_pod(&pod, &peer);
        [
            if order == Order::ExemptionFirst {
                after
            } else {
                without
            },
            with,
            after,
        ]
    })
}

#[test]
fn exemption_beats_masquerade_in_every_form() {
    let node: [IpAddr; 2] = ["192.0.2.1".parse().unwrap(), "fd00:a::1".parse().unwrap()];
    let pod: [IpAddr; 2] = ["10.50.0.2".parse().unwrap(), "fd00:50::2".parse().unwrap()];
    let mut cases = Vec::new();
    for ours in VARIANTS {
        for form in [Masq::IptablesLegacy, Masq::IptablesNft, Masq::Nftables] {
            for order in [Order::MasqueradeFirst, Order::ExemptionFirst] {
                cases.push((ours, form, order));
            }
        }
    }
    let handles: Vec<_> = cases
        .iter()
        .map(|&(ours, form, order)| std::thread::spawn(move || exemption_case(ours, form, order)))
        .collect();
    let mut report = Vec::new();
    for ((ours, form, order), h) in cases.into_iter().zip(handles) {
        let [without, with, after] = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        report.push(format!("ours {ours:?}, masquerade {form:?}, {order:?}: without {without:?}, with {with:?}, removed {after:?}"));
        assert_eq!(
            without, node,
            "{ours:?} {form:?} {order:?}: the masquerade works"
        );
        assert_eq!(after, node, "{ours:?} {form:?} {order:?}: removed");
        // An nftables nat chain made after ours runs first (equal priority,
        // newest first) and iptables cannot make an earlier one: the
        // documented limit of this backend.
        let expected = if form == Masq::Nftables && order == Order::ExemptionFirst {
            node
        } else {
            pod
        };
        assert_eq!(
            with, expected,
            "{ours:?} {form:?} {order:?}: with the exemption"
        );
    }
    eprintln!("{}", report.join("\n"));
}
