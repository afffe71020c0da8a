//! The nft JSON of plans and transactions: the readable reference that the
//! netlink making ([`super::super::batch`]) is proven against — the
//! backend's tests make every plan shape both ways and compare `nft -j
//! list` — and what `rendering_is_pinned` hashes.

use ipnet::IpNet;
use serde_json::{Value, json};

use super::*;

fn proto(family: Family) -> &'static str {
    match family {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    }
}

impl Stmt {
    /// The statement as nft JSON.
    pub fn to_json(&self) -> Value {
        match self {
            Stmt::InSet {
                family,
                field,
                set,
                negate,
            } => json!({"match": {
                "op": if *negate { "!=" } else { "==" },
                "left": address(*family, *field),
                "right": format!("@{set}"),
            }}),
            Stmt::InCidrs {
                family,
                field,
                cidrs,
            } => {
                let right = match cidrs.as_slice() {
                    [one] => element(one),
                    many => json!({"set": many.iter().map(element).collect::<Vec<_>>()}),
                };
                json!({"match": {"op": "==", "left": address(*family, *field), "right": right}})
            }
            Stmt::IifName(names) => {
                let right = match names.as_slice() {
                    [one] => json!(one),
                    many => json!({ "set": many }),
                };
                json!({"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": right}})
            }
            Stmt::CtStateNew => {
                json!({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}})
            }
            Stmt::CtReply => {
                json!({"match": {"op": "==", "left": {"ct": {"key": "direction"}}, "right": "reply"}})
            }
            Stmt::CtMarkIs { mark, mask } => {
                let left = if *mask == u32::MAX {
                    json!({"ct": {"key": "mark"}})
                } else {
                    json!({"&": [{"ct": {"key": "mark"}}, mask]})
                };
                json!({"match": {"op": "==", "left": left, "right": mark}})
            }
            Stmt::SetMark { of, mark, mask } => {
                let target = match of {
                    MarkOf::Packet => json!({"meta": {"key": "mark"}}),
                    MarkOf::Conn => json!({"ct": {"key": "mark"}}),
                };
                let value = if *mask == u32::MAX {
                    json!(mark)
                } else {
                    json!({"|": [{"&": [target.clone(), !mask]}, mark]})
                };
                json!({"mangle": {"key": target, "value": value}})
            }
            Stmt::SnatToSelf { family } => json!({"snat": {
                "family": proto(*family),
                "addr": address(*family, Field::Saddr),
            }}),
        }
    }
}

fn address(family: Family, field: Field) -> Value {
    let field = match field {
        Field::Saddr => "saddr",
        Field::Daddr => "daddr",
    };
    json!({"payload": {"protocol": proto(family), "field": field}})
}

impl Transaction {
    /// The transaction as `nft -j -f -` input: the readable reference the
    /// netlink making is proven against (see the backend's tests).
    pub fn to_json(&self) -> Value {
        let table = self.table.as_str();
        let named = |name: &str| json!({"family": FAMILY, "table": table, "name": name});
        let cmds: Vec<Value> = self
            .changes
            .iter()
            .flat_map(|change| -> Vec<Value> {
                let one = match change {
                    Change::AddTable => {
                        json!({"add": {"table": {"family": FAMILY, "name": table}}})
                    }
                    Change::CreateTable => {
                        json!({"create": {"table": {"family": FAMILY, "name": table}}})
                    }
                    Change::DeleteTable => {
                        json!({"delete": {"table": {"family": FAMILY, "name": table}}})
                    }
                    Change::TouchChain(name) => json!({"add": {"chain": named(name)}}),
                    Change::FlushChain(name) => json!({"flush": {"chain": named(name)}}),
                    Change::DeleteChain(name) => json!({"delete": {"chain": named(name)}}),
                    Change::DeleteSet(name) => json!({"delete": {"set": named(name)}}),
                    // nft's `create set` leaves out the elements it is given:
                    // they follow as `add element`.
                    Change::AddSet { set, new: true } => {
                        let mut def = set_json_with(set, self.timeouts);
                        def["family"] = json!(FAMILY);
                        def["table"] = json!(table);
                        let elem = def.as_object_mut().and_then(|d| d.remove("elem"));
                        let mut cmds = vec![json!({"create": {"set": def}})];
                        if let Some(elem) = elem {
                            let mut element = named(&set.name);
                            element["elem"] = elem;
                            cmds.push(json!({"add": {"element": element}}));
                        }
                        return cmds;
                    }
                    Change::AddSet { set, new: false } => {
                        let mut def = set_json_with(set, self.timeouts);
                        def["family"] = json!(FAMILY);
                        def["table"] = json!(table);
                        json!({"add": {"set": def}})
                    }
                    Change::AddChain {
                        name,
                        kind,
                        hook,
                        prio,
                        new,
                    } => json!({verb(*new): {"chain": {
                        "family": FAMILY, "table": table, "name": name,
                        "type": kind, "hook": hook, "prio": prio, "policy": "accept",
                    }}}),
                    Change::AddRule { chain, rule } => json!({"add": {"rule": {
                        "family": FAMILY, "table": table, "chain": chain,
                        "comment": self.comment, "expr": rule_json(rule),
                    }}}),
                };
                vec![one]
            })
            .collect();
        json!({ "nftables": cmds })
    }
}

/// nft's verb for adding an object: `create` fails if it exists.
fn verb(new: bool) -> &'static str {
    if new { "create" } else { "add" }
}

fn element(net: &IpNet) -> Value {
    if net.prefix_len() == net.max_prefix_len() {
        json!(net.addr().to_string())
    } else {
        json!({"prefix": {"addr": net.addr().to_string(), "len": net.prefix_len()}})
    }
}

impl Plan {
    /// The plan's sets and chains as nft JSON, without comments: what the
    /// `rendering_is_pinned` test watches.
    pub(super) fn rendering(&self) -> Value {
        json!({
            // As on a kernel with element timeout updates, whatever this one has.
            "sets": self.sets.iter().map(|s| set_json_with(s, true)).collect::<Vec<_>>(),
            "chains": self.chains.iter().map(|c| json!({
                "name": c.name, "type": c.kind, "hook": c.hook, "prio": c.prio,
                "rules": c.rules.iter().map(|r| rule_json(r)).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
}

fn rule_json(rule: &[Stmt]) -> Vec<Value> {
    rule.iter().map(Stmt::to_json).collect()
}

/// A set's definition (name, type, flags, elements) as nft JSON.
fn set_json_with(set: &SetDef, timeouts: bool) -> Value {
    let mut def = json!({"name": set.name, "type": key_type(set.family)});
    let flags = set_flags(set, timeouts);
    if !flags.is_empty() {
        def["flags"] = json!(flags);
    }
    if let Some(cidrs) = set.constant.as_ref().filter(|c| !c.is_empty()) {
        def["elem"] = json!(cidrs.iter().map(element).collect::<Vec<_>>());
    }
    def
}
