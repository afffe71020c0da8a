//! One of gwsteer's tables as the kernel holds it, read with netlink dumps
//! (chains, sets, rules and, when asked, a constant set's elements): what
//! [`Plan::compare`](super::ruleset::Plan::compare) checks and
//! [`Plan::transaction`](super::ruleset::Plan::transaction) adapts to. The
//! kernel's numbers are turned into nft's names here, once, so that the plan
//! side speaks nft's words only.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::messages::{DumpedChain, DumpedElem, DumpedRule, DumpedSet};

/// nft's datatype numbers (`enum datatypes`) of the set keys gwsteer uses.
pub const TYPE_IPV4_ADDR: u32 = 7;
pub const TYPE_IPV6_ADDR: u32 = 8;
pub const TYPE_IFNAME: u32 = 41;

/// `enum nft_set_flags`.
pub const NFT_SET_ANONYMOUS: u32 = 0x1;
pub const NFT_SET_CONSTANT: u32 = 0x2;
pub const NFT_SET_INTERVAL: u32 = 0x4;
pub const NFT_SET_TIMEOUT: u32 = 0x10;
/// `NFT_SET_ELEM_INTERVAL_END`: the element ends a range (exclusive).
pub const NFT_SET_ELEM_INTERVAL_END: u32 = 0x1;

/// The hooks of the `inet` family by number (`enum nf_inet_hooks`).
const HOOKS: [&str; 6] = [
    "prerouting",
    "input",
    "forward",
    "output",
    "postrouting",
    "ingress",
];

/// The number of an `inet` hook.
pub fn hook_number(name: &str) -> Option<u32> {
    HOOKS.iter().position(|h| *h == name).map(|n| n as u32)
}

/// A table as the kernel holds it.
#[derive(Debug, Default, Clone)]
pub struct TableView {
    pub chains: BTreeMap<String, ChainView>,
    pub sets: BTreeMap<String, SetView>,
}

#[derive(Debug, Default, Clone)]
pub struct ChainView {
    pub kind: Option<String>,
    pub hook: Option<String>,
    pub prio: Option<i64>,
    pub rules: Vec<RuleView>,
}

#[derive(Debug, Default, Clone)]
pub struct RuleView {
    pub comment: Option<String>,
    /// Named sets the rule looks up.
    pub refs: BTreeSet<String>,
}

#[derive(Debug, Default, Clone)]
pub struct SetView {
    /// The key type by nft's name (`ipv4_addr`…; `type N` for others).
    pub key: String,
    /// nft's names of the set's flags (`constant`, `interval`, `timeout`…;
    /// `0x…` for a flag without one).
    pub flags: Vec<String>,
    /// The address ranges a constant interval set holds, when its elements
    /// were read; `None` otherwise.
    pub ranges: Option<Vec<Range>>,
}

impl TableView {
    /// The view of the dumps of one table. `elements` reads a named set's
    /// elements; it is asked only for constant interval sets.
    pub fn of(
        chains: Vec<DumpedChain>,
        sets: Vec<DumpedSet>,
        rules: Vec<DumpedRule>,
        mut elements: impl FnMut(&str) -> Option<Vec<DumpedElem>>,
    ) -> TableView {
        let mut view = TableView::default();
        for c in chains {
            let chain = view.chains.entry(c.name).or_default();
            chain.kind = c.kind;
            if let Some((num, prio)) = c.hook {
                chain.hook = HOOKS.get(num as usize).map(|h| h.to_string());
                chain.prio = Some(i64::from(prio));
            }
        }
        // Anonymous sets belong to their rules; nft lists none of them.
        for s in sets
            .into_iter()
            .filter(|s| s.flags & NFT_SET_ANONYMOUS == 0)
        {
            let interval = NFT_SET_CONSTANT | NFT_SET_INTERVAL;
            let ranges = if s.flags & interval == interval {
                elements(&s.name).and_then(|e| ranges_of_elements(&e, s.key_len))
            } else {
                None
            };
            view.sets.insert(
                s.name,
                SetView {
                    key: key_name(s.key_type),
                    flags: flag_names(s.flags),
                    ranges,
                },
            );
        }
        for r in rules {
            let refs = r
                .exprs
                .iter()
                .filter(|e| e.name == "lookup")
                .filter_map(|e| e.attrs().string(super::ruleset::NFTA_LOOKUP_SET))
                .filter(|name| !name.starts_with("__set"))
                .collect();
            view.chains
                .entry(r.chain)
                .or_default()
                .rules
                .push(RuleView {
                    comment: r.comment,
                    refs,
                });
        }
        view
    }
}

fn key_name(key_type: u32) -> String {
    match key_type {
        TYPE_IPV4_ADDR => "ipv4_addr".into(),
        TYPE_IPV6_ADDR => "ipv6_addr".into(),
        TYPE_IFNAME => "ifname".into(),
        other => format!("type {other}"),
    }
}

/// nft's names of set flags, in nft's order.
fn flag_names(flags: u32) -> Vec<String> {
    const NAMES: [(u32, &str); 4] = [
        (NFT_SET_CONSTANT, "constant"),
        (NFT_SET_INTERVAL, "interval"),
        (NFT_SET_TIMEOUT, "timeout"),
        (NFT_SET_ANONYMOUS, "anonymous"),
    ];
    let mut names: Vec<String> = NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| name.to_string())
        .collect();
    let known = NAMES.iter().fold(0, |all, (bit, _)| all | bit);
    if flags & !known != 0 {
        names.push(format!("{:#x}", flags & !known));
    }
    names
}

/// An address range as integers (IPv4 in the low 32 bits), both ends in.
pub type Range = (u128, u128);

fn ip_int(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The ranges CIDRs cover: sorted, overlapping and adjacent ones joined.
pub fn ranges_of(cidrs: &[IpNet]) -> Vec<Range> {
    merge(
        cidrs
            .iter()
            .map(|n| (ip_int(n.network()), ip_int(n.broadcast())))
            .collect(),
    )
}

fn merge(mut ranges: Vec<Range>) -> Vec<Range> {
    ranges.sort();
    let mut out: Vec<Range> = Vec::new();
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// The largest key of `len` bytes.
pub fn key_max(len: usize) -> u128 {
    if len >= 16 {
        u128::MAX
    } else {
        (1u128 << (8 * len)) - 1
    }
}

/// A key (big-endian, 4 or 16 bytes) as an integer; `None` for another length.
pub fn key_int(key: &[u8]) -> Option<u128> {
    match key.len() {
        4 | 16 => Some(key.iter().fold(0u128, |n, b| (n << 8) | u128::from(*b))),
        _ => None,
    }
}

/// The ranges an interval set's elements cover. The kernel keeps a range
/// as its first key and, flagged as an end, the key after its last; a
/// range up to the largest key has no end. `None` when a key is not an
/// address of `key_len` bytes.
pub fn ranges_of_elements(elems: &[DumpedElem], key_len: u32) -> Option<Vec<Range>> {
    let mut keys: Vec<(u128, bool)> = elems
        .iter()
        .map(|e| {
            (e.key.len() == key_len as usize)
                .then(|| key_int(&e.key))
                .flatten()
                .map(|k| (k, e.flags & NFT_SET_ELEM_INTERVAL_END != 0))
        })
        .collect::<Option<_>>()?;
    // Ends first where a key is both: a range ending there, the next
    // starting there.
    keys.sort_by_key(|(k, end)| (*k, !*end));
    let mut ranges = Vec::new();
    let mut open: Option<u128> = None;
    for (key, end) in keys {
        match (end, open) {
            (true, Some(start)) if key > start => {
                ranges.push((start, key - 1));
                open = None;
            }
            (true, _) => {}
            (false, None) => open = Some(key),
            (false, Some(_)) => {}
        }
    }
    if let Some(start) = open {
        ranges.push((start, key_max(key_len as usize)));
    }
    Some(merge(ranges))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elem(key: [u8; 4], end: bool) -> DumpedElem {
        DumpedElem {
            key: key.to_vec(),
            flags: if end { NFT_SET_ELEM_INTERVAL_END } else { 0 },
        }
    }

    #[test]
    fn elements_become_ranges_in_any_order() {
        // 10.9.0.0/16 and 192.168.5.7, with nft's leading end at 0, in the
        // reverse order an rbtree dumps them.
        let elems = [
            elem([192, 168, 5, 8], true),
            elem([192, 168, 5, 7], false),
            elem([10, 10, 0, 0], true),
            elem([10, 9, 0, 0], false),
            elem([0, 0, 0, 0], true),
        ];
        let want: Vec<IpNet> = vec![
            "10.9.0.0/16".parse().unwrap(),
            "192.168.5.7/32".parse().unwrap(),
        ];
        assert_eq!(ranges_of_elements(&elems, 4), Some(ranges_of(&want)));
        // A range to the last address has no end element.
        let all = [elem([128, 0, 0, 0], false)];
        assert_eq!(
            ranges_of_elements(&all, 4),
            Some(ranges_of(&["128.0.0.0/1".parse().unwrap()]))
        );
        // A key of another length is not an address.
        assert_eq!(ranges_of_elements(&all, 16), None);
    }

    #[test]
    fn adjacent_cidrs_are_one_range() {
        let cidrs: Vec<IpNet> = ["10.0.0.0/25", "10.0.0.128/25", "10.0.1.0/32"]
            .iter()
            .map(|c| c.parse().unwrap())
            .collect();
        assert_eq!(ranges_of(&cidrs), vec![(0x0a00_0000, 0x0a00_0100)]);
    }

    #[test]
    fn kernel_numbers_get_nft_names() {
        assert_eq!(flag_names(0x6), ["constant", "interval"]);
        assert_eq!(flag_names(0x10), ["timeout"]);
        assert_eq!(flag_names(0x20), ["0x20"]);
        assert_eq!(key_name(8), "ipv6_addr");
        assert_eq!(hook_number("postrouting"), Some(4));
        assert_eq!(hook_number("nope"), None);
    }
}
