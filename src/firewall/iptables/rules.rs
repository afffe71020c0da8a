//! What the iptables backend wants in the kernel for each firewall object:
//! names, sets and rules in the exact form `iptables-save` prints them, so
//! that what is read back compares word for word. Pure; no I/O.

use ipnet::IpNet;

use crate::firewall::{FwExemption, FwPolicy, Marking};
use crate::objects::Family;

pub use crate::firewall::xtables::{CHAIN_PREFIX, COMMENT_PREFIX};
/// Every ipset gwsteer makes is named `gws-…` (ipset names ≤ 31 chars).
pub const SET_PREFIX: &str = "gws-";

pub const MANGLE: &str = "mangle";
pub const NAT: &str = "nat";
pub const PREROUTING: &str = "PREROUTING";
pub const FORWARD: &str = "FORWARD";
pub const POSTROUTING: &str = "POSTROUTING";

/// 8 hex digits of FNV-1a over `key`: stable across versions and hosts, so
/// names derived from it survive restarts and upgrades.
pub fn hash8(key: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

fn family_digit(family: Family) -> char {
    match family {
        Family::V4 => '4',
        Family::V6 => '6',
    }
}

pub fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn comment(text: &str) -> Vec<String> {
    args(&["-m", "comment", "--comment", text])
}

fn set_match(set: &str, dir: &str) -> Vec<String> {
    args(&["-m", "set", "--match-set", set, dir])
}

/// `iptables-save` prints a mark and mask as `0x14/0xff`.
fn xmark(mark: u32, mask: u32) -> String {
    format!("{:#x}/{:#x}", mark & mask, mask)
}

/// …and a `-m connmark --mark` with the full mask without it.
fn mark_match(mark: u32, mask: u32) -> String {
    if mask == u32::MAX {
        format!("{mark:#x}")
    } else {
        xmark(mark, mask)
    }
}

/// `hash:net` cannot hold a /0: it becomes its two halves.
pub fn set_entries(cidrs: &[IpNet], family: Family) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = Vec::new();
    for net in cidrs.iter().filter(|c| Family::of_net(c) == family) {
        let net = net.trunc();
        if net.prefix_len() == 0 {
            match net.subnets(1) {
                Ok(halves) => out.extend(halves),
                Err(_) => out.push(net),
            }
        } else {
            out.push(net);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// An ipset gwsteer wants. `contents: None` for member sets, whose
/// members are objects of their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetSpec {
    pub name: String,
    pub family: Family,
    pub contents: Option<Vec<IpNet>>,
}

/// A chain gwsteer owns, the built-in chain that jumps to it, the jump
/// and the chain's rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainSpec {
    pub name: String,
    pub hook: &'static str,
    pub jump: Vec<String>,
    pub rules: Vec<Vec<String>>,
}

/// The names of one policy's objects.
#[derive(Clone, Debug)]
pub struct PolicyNames {
    hash: String,
    pub comment: String,
    /// Jumped to from mangle PREROUTING: marks (mark) or restores the mark
    /// on replies (connmark).
    pub chain: String,
    /// Jumped to from mangle FORWARD (connmark only): marks new incoming
    /// connections, after DNAT has put the pod's address in the packet.
    pub fwd_chain: String,
}

impl PolicyNames {
    pub fn new(network: &str, policy: &str) -> PolicyNames {
        let hash = hash8(&format!("{network}/{policy}"));
        PolicyNames {
            comment: format!("{COMMENT_PREFIX}{network}/{policy}"),
            chain: format!("{CHAIN_PREFIX}{hash}"),
            fwd_chain: format!("{CHAIN_PREFIX}{hash}-FWD"),
            hash,
        }
    }

    /// `gws-<hash>-4`: the policy's member pods of one family.
    pub fn member_set(&self, family: Family) -> String {
        format!("{SET_PREFIX}{}-{}", self.hash, family_digit(family))
    }

    /// `gws-<hash>-to4`: mark only traffic to these (mark `egressTo`).
    pub fn to_set(&self, family: Family) -> String {
        format!("{SET_PREFIX}{}-to{}", self.hash, family_digit(family))
    }

    /// `gws-<hash>-ex4`: never mark traffic to these (mark `exclude`).
    pub fn ex_set(&self, family: Family) -> String {
        format!("{SET_PREFIX}{}-ex{}", self.hash, family_digit(family))
    }

    pub fn chains(&self) -> [&str; 2] {
        [&self.chain, &self.fwd_chain]
    }

    /// The rule in a built-in chain that jumps to `chain` for packets from
    /// (`dir` "src") or to ("dst") member pods. Matching the member set
    /// here too keeps other packets out of the chain and makes every rule
    /// of the policy a reference to the set (see [`member_set_references`]).
    fn jump(&self, chain: &str, member: &str, dir: &str) -> Vec<String> {
        let mut r = set_match(member, dir);
        r.extend(comment(&self.comment));
        r.extend(args(&["-j", chain]));
        r
    }
}

/// One family's share of a policy: its sets and its chains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyFamily {
    pub sets: Vec<SetSpec>,
    pub chains: Vec<ChainSpec>,
}

/// How many rules reference a policy's member set of each family when
/// everything is in place: every rule of the policy, jumps included.
pub fn member_set_references(p: &FwPolicy) -> u32 {
    match &p.marking {
        Marking::Mark { .. } => 2,
        Marking::Connmark { ingress } => ingress.len() as u32 + 3,
    }
}

pub fn policy_family(p: &FwPolicy, names: &PolicyNames, family: Family) -> PolicyFamily {
    let member = names.member_set(family);
    let mut sets = vec![SetSpec {
        name: member.clone(),
        family,
        contents: None,
    }];
    let chains = match &p.marking {
        Marking::Mark { egress_to, exclude } => {
            let mut rule = set_match(&member, "src");
            if !egress_to.is_empty() {
                let to = names.to_set(family);
                rule.extend(set_match(&to, "dst"));
                sets.push(SetSpec {
                    name: to,
                    family,
                    contents: Some(set_entries(egress_to, family)),
                });
            }
            if !exclude.is_empty() {
                let ex = names.ex_set(family);
                rule.extend(args(&["-m", "set", "!", "--match-set", &ex, "dst"]));
                sets.push(SetSpec {
                    name: ex,
                    family,
                    contents: Some(set_entries(exclude, family)),
                });
            }
            rule.extend(comment(&names.comment));
            rule.extend(args(&["-j", "MARK", "--set-xmark", &xmark(p.mark, p.mask)]));
            vec![ChainSpec {
                name: names.chain.clone(),
                hook: PREROUTING,
                jump: names.jump(&names.chain, &member, "src"),
                rules: vec![rule],
            }]
        }
        Marking::Connmark { ingress } => {
            let mask = format!("{:#x}", p.mask);
            let mut restore = set_match(&member, "src");
            restore.extend(args(&[
                "-m",
                "conntrack",
                "--ctdir",
                "REPLY",
                "-m",
                "connmark",
                "--mark",
                &mark_match(p.mark, p.mask),
            ]));
            restore.extend(comment(&names.comment));
            restore.extend(args(&[
                "-j",
                "CONNMARK",
                "--restore-mark",
                "--nfmask",
                &mask,
                "--ctmask",
                &mask,
            ]));
            let marking = ingress
                .iter()
                .map(|dev| {
                    let mut r = args(&["-i", dev, "-m", "conntrack", "--ctstate", "NEW"]);
                    r.extend(set_match(&member, "dst"));
                    r.extend(comment(&names.comment));
                    r.extend(args(&[
                        "-j",
                        "CONNMARK",
                        "--set-xmark",
                        &xmark(p.mark, p.mask),
                    ]));
                    r
                })
                .collect();
            vec![
                ChainSpec {
                    name: names.chain.clone(),
                    hook: PREROUTING,
                    jump: names.jump(&names.chain, &member, "src"),
                    rules: vec![restore],
                },
                ChainSpec {
                    name: names.fwd_chain.clone(),
                    hook: FORWARD,
                    jump: names.jump(&names.fwd_chain, &member, "dst"),
                    rules: marking,
                },
            ]
        }
    };
    PolicyFamily { sets, chains }
}

/// The names and rules of one masquerade exemption.
#[derive(Clone, Debug)]
pub struct ExemptionSpec {
    pub comment: String,
    hash: String,
    cidrs: Vec<IpNet>,
    pub chains: Vec<String>,
}

impl ExemptionSpec {
    pub fn new(e: &FwExemption) -> ExemptionSpec {
        let mut cidrs: Vec<IpNet> = e.cidrs.iter().map(IpNet::trunc).collect();
        cidrs.sort();
        cidrs.dedup();
        let key: Vec<String> = cidrs.iter().map(|c| c.to_string()).collect();
        ExemptionSpec {
            comment: format!("{COMMENT_PREFIX}{}", e.network),
            hash: hash8(&format!("exempt/{}/{}", e.network, key.join(","))),
            cidrs,
            chains: e.chains.clone(),
        }
    }

    /// The families of the exempted CIDRs, among those `available`.
    pub fn families(&self, available: &[Family]) -> Vec<Family> {
        let mut f: Vec<Family> = self
            .cidrs
            .iter()
            .map(Family::of_net)
            .filter(|f| available.contains(f))
            .collect();
        f.sort();
        f.dedup();
        f
    }

    pub fn cidrs(&self, family: Family) -> Vec<IpNet> {
        self.cidrs
            .iter()
            .filter(|c| Family::of_net(c) == family)
            .copied()
            .collect()
    }

    /// `gws-<hash>-x4`: holds the exempted CIDRs and is matched by every
    /// exemption rule, which makes its reference count a witness that the
    /// rules are in the kernel (read over netlink, no iptables run).
    pub fn witness(&self, family: Family) -> SetSpec {
        SetSpec {
            name: format!("{SET_PREFIX}{}-x{}", self.hash, family_digit(family)),
            family,
            contents: Some(set_entries(&self.cidrs, family)),
        }
    }

    fn rule(&self, family: Family, cidr: &IpNet, target: &[&str]) -> Vec<String> {
        let cidr = cidr.to_string();
        let mut r = args(&["-s", &cidr]);
        r.extend(set_match(&self.witness(family).name, "src"));
        r.extend(comment(&self.comment));
        r.extend(args(target));
        r
    }

    /// nat POSTROUTING, first: an identity mapping (`NETMAP` onto the same
    /// prefix). It sets up the connection's source NAT as "unchanged", and
    /// the kernel consults no later nat chain (of any iptables variant or
    /// nftables) for a connection whose source NAT is set up.
    pub fn netmap_rules(&self, family: Family) -> Vec<Vec<String>> {
        self.cidrs(family)
            .iter()
            .map(|c| self.rule(family, c, &["-j", "NETMAP", "--to", &c.to_string()]))
            .collect()
    }

    /// First in each named foreign chain: leave it.
    pub fn return_rules(&self, family: Family) -> Vec<Vec<String>> {
        self.cidrs(family)
            .iter()
            .map(|c| self.rule(family, c, &["-j", "RETURN"]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(marking: Marking, mark: u32, mask: u32) -> FwPolicy {
        FwPolicy {
            network: "net".into(),
            policy: "pol".into(),
            mark,
            mask,
            marking,
        }
    }

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn names_fit_the_kernel_limits() {
        let n = PolicyNames::new(&"n".repeat(200), "abcdefghijklmno");
        assert!(n.fwd_chain.len() <= 28, "{}", n.fwd_chain);
        assert!(n.to_set(Family::V6).len() <= 31);
        assert!(n.chain.starts_with(CHAIN_PREFIX));
        assert_ne!(
            PolicyNames::new("a", "bc").chain,
            PolicyNames::new("ab", "c").chain
        );
    }

    #[test]
    fn mark_rule_with_egress_and_exclude() {
        let p = policy(
            Marking::Mark {
                egress_to: nets(&["0.0.0.0/0", "2001:db8::/32"]),
                exclude: nets(&["10.96.0.0/12"]),
            },
            0x14,
            0xff,
        );
        let names = PolicyNames::new("net", "pol");
        let v4 = policy_family(&p, &names, Family::V4);
        let h = &names.chain[4..];
        assert_eq!(
            v4.chains[0].rules[0].join(" "),
            format!(
                "-m set --match-set gws-{h}-4 src -m set --match-set gws-{h}-to4 dst \
                 -m set ! --match-set gws-{h}-ex4 dst -m comment --comment gwsteer:net/pol \
                 -j MARK --set-xmark 0x14/0xff"
            )
        );
        assert_eq!(
            v4.sets[1].contents,
            Some(nets(&["0.0.0.0/1", "128.0.0.0/1"])),
            "a /0 becomes two /1s"
        );
        let v6 = policy_family(&p, &names, Family::V6);
        assert_eq!(v6.sets[1].contents, Some(nets(&["2001:db8::/32"])));
        assert_eq!(v6.sets[2].contents, Some(vec![]), "no v6 exclusions");
    }

    #[test]
    fn connmark_marks_in_forward_and_restores_in_prerouting() {
        let p = policy(
            Marking::Connmark {
                ingress: vec!["eth1".into(), "eth2".into()],
            },
            0x200,
            u32::MAX,
        );
        let names = PolicyNames::new("net", "pol");
        let v6 = policy_family(&p, &names, Family::V6);
        let h = &names.chain[4..];
        assert_eq!(v6.chains[0].hook, PREROUTING);
        assert_eq!(
            v6.chains[0].rules[0].join(" "),
            format!(
                "-m set --match-set gws-{h}-6 src -m conntrack --ctdir REPLY -m connmark --mark 0x200 \
                 -m comment --comment gwsteer:net/pol -j CONNMARK --restore-mark \
                 --nfmask 0xffffffff --ctmask 0xffffffff"
            )
        );
        assert_eq!(v6.chains[1].hook, FORWARD);
        assert_eq!(v6.chains[1].rules.len(), 2);
        assert_eq!(
            v6.chains[1].rules[1].join(" "),
            format!(
                "-i eth2 -m conntrack --ctstate NEW -m set --match-set gws-{h}-6 dst \
                 -m comment --comment gwsteer:net/pol -j CONNMARK --set-xmark 0x200/0xffffffff"
            )
        );
        assert_eq!(
            v6.chains[1].jump.join(" "),
            format!(
                "-m set --match-set gws-{h}-6 dst -m comment --comment gwsteer:net/pol -j GWS-{h}-FWD"
            )
        );
        assert_eq!(member_set_references(&p), 5);
    }

    #[test]
    fn exemption_rules_per_family() {
        let e = FwExemption {
            network: "gw".into(),
            cidrs: nets(&["10.50.0.7/24", "fd00:50::/64"]),
            chains: vec!["KIND-MASQ-AGENT".into()],
        };
        let s = ExemptionSpec::new(&e);
        assert_eq!(
            s.families(&[Family::V4, Family::V6]),
            vec![Family::V4, Family::V6]
        );
        assert_eq!(s.families(&[Family::V4]), vec![Family::V4]);
        let w = s.witness(Family::V4).name;
        assert_eq!(
            s.netmap_rules(Family::V4)[0].join(" "),
            format!(
                "-s 10.50.0.0/24 -m set --match-set {w} src -m comment --comment gwsteer:gw -j NETMAP --to 10.50.0.0/24"
            )
        );
        assert_eq!(
            s.return_rules(Family::V6)[0].last().map(String::as_str),
            Some("RETURN")
        );
    }
}
