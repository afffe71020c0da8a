//! Reading kernel state back as structures (`ip -j`, `nft -j`), for assertions
//! that compare objects rather than substrings of text output.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::{Value, json};

use super::cmd::{try_exec_in, try_ip};
use super::traffic::eventually;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// `-4` / `-6`.
    pub fn flag(self) -> &'static str {
        match self {
            Family::V4 => "-4",
            Family::V6 => "-6",
        }
    }

    pub fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    /// `0.0.0.0/0` / `::/0`.
    pub fn any(self) -> &'static str {
        match self {
            Family::V4 => "0.0.0.0/0",
            Family::V6 => "::/0",
        }
    }
}

/// `ip -n <ns> -j <args…>` parsed. Empty output is `[]`.
pub fn ip_json(ns: &str, args: &[&str]) -> Value {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    let out = try_ip(ns, &full).unwrap_or_else(|e| panic!("{e}"));
    parse_json_or_empty(&out, &format!("ip -n {ns} {}", full.join(" ")))
}

fn parse_json_or_empty(out: &str, what: &str) -> Value {
    if out.trim().is_empty() {
        return Value::Array(vec![]);
    }
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{what}: bad JSON ({e}): {out}"))
}

fn as_vec(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        Value::Null => vec![],
        other => vec![other],
    }
}

/// `ip -n <ns> -j -4|-6 rule`.
pub fn rules(ns: &str, family: Family) -> Vec<Value> {
    as_vec(ip_json(ns, &[family.flag(), "rule"]))
}

/// The rules other than the kernel's defaults (local/main/default at 0/32766/32767).
pub fn custom_rules(ns: &str, family: Family) -> Vec<Value> {
    rules(ns, family)
        .into_iter()
        .filter(|r| !is_default_rule(r))
        .collect()
}

fn is_default_rule(r: &Value) -> bool {
    let Some(obj) = r.as_object() else {
        return false;
    };
    let default = matches!(
        (r["priority"].as_u64(), r["table"].as_str()),
        (Some(0), Some("local")) | (Some(32766), Some("main")) | (Some(32767), Some("default"))
    );
    default
        && r["src"] == "all"
        && obj
            .keys()
            .all(|k| ["priority", "src", "table"].contains(&k.as_str()))
}

/// `ip -n <ns> -j -4|-6 route show table <table>`; a table that does not exist is empty.
pub fn routes(ns: &str, family: Family, table: impl Display) -> Vec<Value> {
    let table = table.to_string();
    let args = [
        "-j",
        family.flag(),
        "route",
        "show",
        "table",
        table.as_str(),
    ];
    match try_ip(ns, args) {
        Ok(out) => as_vec(parse_json_or_empty(
            &out,
            &format!("ip -n {ns} {}", args.join(" ")),
        )),
        // IPv4 reports a table that was never created (or has emptied) as an error.
        Err(e) if e.stderr.contains("table does not exist") => vec![],
        Err(e) => panic!("{e}"),
    }
}

/// The names of the links `ns` has, sorted.
pub fn link_names(ns: &str) -> Vec<String> {
    let mut names: Vec<String> = as_vec(ip_json(ns, &["link", "show"]))
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// Global-scope addresses on `dev` in `ns` (`ip -j addr show dev <dev> scope global`).
pub fn addrs(ns: &str, dev: &str) -> Vec<IpNet> {
    let links = as_vec(ip_json(
        ns,
        &["addr", "show", "dev", dev, "scope", "global"],
    ));
    let mut out = Vec::new();
    for link in &links {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            let (Some(local), Some(len)) = (a["local"].as_str(), a["prefixlen"].as_u64()) else {
                continue;
            };
            let ip: IpAddr = local
                .parse()
                .unwrap_or_else(|e| panic!("bad address {local:?}: {e}"));
            out.push(IpNet::new(ip, len as u8).unwrap_or_else(|e| panic!("{local}/{len}: {e}")));
        }
    }
    out
}

/// Waits until no IPv6 address in `ns` is tentative (DAD finished); panics on timeout.
pub fn wait_no_tentative(ns: &str, timeout: Duration) {
    let tentative = || {
        as_vec(ip_json(ns, &["-6", "addr", "show", "tentative"]))
            .iter()
            .map(|l| l["addr_info"].as_array().map_or(0, |a| a.len()))
            .sum::<usize>()
    };
    assert!(
        eventually(timeout, || tentative() == 0),
        "IPv6 addresses in {ns} still tentative after {timeout:?}"
    );
}

/// Routing and firewall state of a namespace, normalised for comparison:
/// rules and routes of every table (both families), the nftables ruleset (which
/// includes iptables-nft) without handles and with counters zeroed, and the
/// iptables-legacy tables without comments and counters. Compare two snapshots
/// with `assert_eq!` (or [`json_diff`] for a readable difference).
pub fn snapshot(ns: &str) -> Value {
    let mut nft = match try_exec_in(ns, "nft", ["-j", "list", "ruleset"]) {
        Ok(out) => parse_json_or_empty(&out, "nft -j list ruleset"),
        Err(e) => json!({ "error": e.to_string() }),
    };
    if let Some(items) = nft.get_mut("nftables").and_then(Value::as_array_mut) {
        items.retain(|i| i.get("metainfo").is_none());
    }
    strip_volatile(&mut nft);
    json!({
        "rules": {
            "4": rules(ns, Family::V4),
            "6": rules(ns, Family::V6),
        },
        "routes": {
            "4": routes(ns, Family::V4, "all"),
            "6": routes(ns, Family::V6, "all"),
        },
        "nftables": nft,
        "iptables-legacy": legacy_save(ns, "iptables-legacy-save"),
        "ip6tables-legacy": legacy_save(ns, "ip6tables-legacy-save"),
    })
}

fn legacy_save(ns: &str, program: &str) -> Value {
    match try_exec_in(ns, program, std::iter::empty::<&str>()) {
        Ok(out) => Value::Array(
            out.lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .map(|l| match l.rsplit_once(" [") {
                    // ":CHAIN POLICY [packets:bytes]"
                    Some((head, _)) if l.starts_with(':') => Value::String(head.to_string()),
                    _ => Value::String(l.to_string()),
                })
                .collect(),
        ),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

fn strip_volatile(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("handle");
            if let Some(Value::Object(counter)) = map.get_mut("counter") {
                for k in ["packets", "bytes"] {
                    if counter.contains_key(k) {
                        counter.insert(k.to_string(), json!(0));
                    }
                }
            }
            map.values_mut().for_each(strip_volatile);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_volatile),
        _ => {}
    }
}

/// Differences between two JSON values as `path: left != right` lines (empty if equal).
pub fn json_diff(left: &Value, right: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_into("$", left, right, &mut out);
    out
}

fn diff_into(path: &str, l: &Value, r: &Value, out: &mut Vec<String>) {
    match (l, r) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                match b.get(k) {
                    Some(vb) => diff_into(&format!("{path}.{k}"), va, vb, out),
                    None => out.push(format!("{path}.{k}: only left: {va}")),
                }
            }
            for (k, vb) in b {
                if !a.contains_key(k) {
                    out.push(format!("{path}.{k}: only right: {vb}"));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            // Missing/extra elements read better than index shifts.
            let before = out.len();
            for x in a.iter().filter(|x| !b.contains(x)) {
                out.push(format!("{path}[]: only left: {x}"));
            }
            for y in b.iter().filter(|y| !a.contains(y)) {
                out.push(format!("{path}[]: only right: {y}"));
            }
            if out.len() == before && a != b {
                out.push(format!("{path}: same elements, different order"));
            }
        }
        _ if l != r => out.push(format!("{path}: {l} != {r}")),
        _ => {}
    }
}

/// Panics with a readable difference unless the two snapshots are equal.
pub fn assert_same_state(what: &str, before: &Value, after: &Value) {
    let diff = json_diff(before, after);
    assert!(
        diff.is_empty() && before == after,
        "{what}: state differs:\n{}",
        diff.join("\n")
    );
}

/// gwsteer's rules (protocol 211) in `ns`, as `inet 1000: from 10.244.1.5 lookup 100`.
pub fn gw_rules(ns: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (family, name) in [(Family::V4, "inet"), (Family::V6, "inet6")] {
        for r in rules(ns, family) {
            if !matches!(r["protocol"].as_str(), Some("211" | "gwsteer")) {
                continue;
            }
            out.insert(rule_text(name, &r));
        }
    }
    out
}

/// An `ip -j rule` entry as `inet 1000: from 10.244.1.5 lookup 100`.
pub fn rule_text(family: &str, r: &Value) -> String {
    let prefix = |addr: &str, len: &Value| match len.as_u64() {
        Some(l) => format!("{addr}/{l}"),
        None => addr.to_string(),
    };
    let mut s = format!(
        "{family} {}: from {}",
        r["priority"],
        prefix(r["src"].as_str().unwrap_or("?"), &r["srclen"])
    );
    if let Some(dst) = r["dst"].as_str() {
        s.push_str(&format!(" to {}", prefix(dst, &r["dstlen"])));
    }
    s.push_str(&format!(" lookup {}", r["table"].as_str().unwrap_or("?")));
    s
}
