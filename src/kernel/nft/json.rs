//! nft JSON for the tables gwsteer makes with the `nft` command (a router
//! pod's masquerade, the VRF's): every name — tables, interfaces, comments —
//! goes to nft as a JSON string, never into nft's text syntax, where a `"`,
//! `{`, `}` or `$` in a name (all legal in Linux interface names) would be
//! read as syntax.

use serde_json::{Value, json};

/// gwsteer's tables are `inet`.
const FAMILY: &str = "inet";

/// `{"family": "inet", "name": table}`.
pub fn table(name: &str) -> Value {
    json!({"family": FAMILY, "name": name})
}

/// One command on a table (`list`, `delete`, …) as a whole nft JSON input.
pub fn on_table(command: &str, name: &str) -> Value {
    json!({"nftables": [{ command: {"table": table(name)} }]})
}

/// A base chain: `type <kind> hook <hook> priority <prio>; policy accept;`.
pub fn chain(table: &str, name: &str, kind: &str, hook: &str, prio: i64) -> Value {
    json!({"add": {"chain": {
        "family": FAMILY, "table": table, "name": name,
        "type": kind, "hook": hook, "prio": prio, "policy": "accept"
    }}})
}

/// A rule appended to `chain`.
pub fn rule(table: &str, chain: &str, comment: &str, expr: Vec<Value>) -> Value {
    json!({"add": {"rule": {
        "family": FAMILY, "table": table, "chain": chain,
        "comment": comment, "expr": expr
    }}})
}

/// `iifname`/`oifname` (`key`) `op` one name or any of several. Each name
/// is matched literally (see [`literal_ifname`]).
pub fn ifname_match(key: &str, op: &str, names: &[String]) -> Result<Value, String> {
    let literal = names
        .iter()
        .map(|n| literal_ifname(n))
        .collect::<Result<Vec<_>, _>>()?;
    let right = match literal.as_slice() {
        [one] => json!(one),
        many => json!({ "set": many }),
    };
    Ok(json!({"match": {"op": op, "left": {"meta": {"key": key}}, "right": right}}))
}

/// The nft string that matches interface `name` exactly. nft reads a
/// trailing `*` as a wildcard (also in JSON) and `\*` at the end as a
/// literal `*`, removing every `\` of such a name; elsewhere `*` and `\` are
/// literal. So a name ending in `*` gets it escaped, and one that also holds
/// a `\` cannot be matched exactly at all.
pub fn literal_ifname(name: &str) -> Result<String, String> {
    match name.strip_suffix('*') {
        None => Ok(name.to_string()),
        Some(_) if name.contains('\\') => Err(format!(
            "interface {name:?} cannot be matched exactly by nftables (a trailing '*' with a '\\')"
        )),
        Some(stem) => Ok(format!("{stem}\\*")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_escaped_only_where_nft_reads_a_pattern() {
        assert_eq!(literal_ifname("eth0").unwrap(), "eth0");
        assert_eq!(literal_ifname("g\"{}$").unwrap(), "g\"{}$");
        assert_eq!(literal_ifname("e*t").unwrap(), "e*t");
        assert_eq!(literal_ifname("a\\b").unwrap(), "a\\b");
        assert_eq!(literal_ifname("eth*").unwrap(), "eth\\*");
        assert!(literal_ifname("a\\b*").is_err());
        assert_eq!(
            ifname_match("oifname", "!=", &["g*".into()]).unwrap(),
            json!({"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "g\\*"}})
        );
        assert_eq!(
            ifname_match("iifname", "==", &["a".into(), "b".into()]).unwrap()["match"]["right"],
            json!({"set": ["a", "b"]})
        );
    }
}
