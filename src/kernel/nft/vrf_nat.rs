//! `vrf.masquerade` (CONTRACT 3.3): pod traffic that leaves the VRF by an
//! uplink is masqueraded to the uplink's address, in an nftables table of
//! gwsteer's in the node, `inet gwsteer-vrf-<vrf>`.
//!
//! A pod's packet steered into the VRF crosses conntrack twice in one
//! namespace: once as it arrives from the pod, once as it re-enters on the
//! VRF leg. On one conntrack entry the first pass (no NAT) would be final
//! and the masquerade would never apply (FIELD-NOTES, "Traffic through VRF
//! legs meets conntrack twice"). So packets arriving on the VRF leg and on
//! the uplinks get conntrack zone 1 (raw prerouting), a connection that
//! started on the VRF leg gets bit 31 of its conntrack mark, and the nat
//! postrouting chain masquerades marked connections out of the uplinks.
//! Replies arrive on an uplink, in zone 1, are un-NATed there and go back
//! through the leak routes. Bit 31 of the conntrack mark is gwsteer's while
//! `masquerade` is on (a `connmark` steering policy must not use it).

use serde_json::{Value, json};

use super::json;
use crate::error::{Error, Result};
use crate::model::Presence;

/// `NF_IP_PRI_RAW`, `NF_IP_PRI_MANGLE`, `NF_IP_PRI_NAT_SRC`.
const PRIO_RAW: i64 = -300;
const PRIO_MANGLE: i64 = -150;
const PRIO_SRCNAT: i64 = 100;

/// The conntrack mark bit of connections that entered the VRF by its leg.
pub const CT_MARK_BIT: u32 = 0x8000_0000;

pub fn table_name(vrf: &str) -> String {
    format!("gwsteer-vrf-{vrf}")
}

/// The table as one nft JSON transaction; `add` then `flush` makes it
/// idempotent. Every name goes as a JSON string.
pub fn transaction(vrf: &str, leg: &str, uplinks: &[String]) -> Result<Value> {
    let table = table_name(vrf);
    let mut zoned = vec![leg.to_string()];
    zoned.extend(uplinks.iter().cloned());
    let bad = |e: String| Error::kernel(format!("vrf {vrf:?} masquerade: {e}"));
    let ct_mark = json!({"ct": {"key": "mark"}});
    Ok(json!({"nftables": [
        {"add": {"table": json::table(&table)}},
        {"flush": {"table": json::table(&table)}},
        json::chain(&table, "vrfzone", "filter", "prerouting", PRIO_RAW),
        json::chain(&table, "vrfmark", "filter", "prerouting", PRIO_MANGLE),
        json::chain(&table, "vrfnat", "nat", "postrouting", PRIO_SRCNAT),
        json::rule(&table, "vrfzone", &format!("gwsteer: vrf {vrf}: its own conntrack zone"), vec![
            json::ifname_match("iifname", "==", &zoned).map_err(bad)?,
            json!({"mangle": {"key": {"ct": {"key": "zone"}}, "value": 1}}),
        ]),
        json::rule(&table, "vrfmark", &format!("gwsteer: vrf {vrf}: from the pods"), vec![
            json::ifname_match("iifname", "==", &[leg.to_string()]).map_err(bad)?,
            json!({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}}),
            json!({"mangle": {"key": ct_mark, "value": {"|": [ct_mark, CT_MARK_BIT]}}}),
        ]),
        json::rule(&table, "vrfnat", &format!("gwsteer: vrf {vrf}: masquerade"), vec![
            json!({"match": {"op": "==", "left": {"&": [ct_mark, CT_MARK_BIT]}, "right": CT_MARK_BIT}}),
            json::ifname_match("oifname", "==", uplinks).map_err(bad)?,
            json!({"masquerade": null}),
        ]),
    ]}))
}

fn nft_json(input: &Value) -> Result<std::result::Result<String, String>> {
    crate::kernel::podns::nft(&["-j", "-f", "-"], &input.to_string())
}

pub fn ensure(vrf: &str, leg: &str, uplinks: &[String]) -> Result<()> {
    let table = table_name(vrf);
    nft_json(&transaction(vrf, leg, uplinks)?)?
        .map(drop)
        .map_err(|e| Error::kernel(format!("making nftables table inet {table}: {e}")))
}

pub fn remove(vrf: &str) -> Result<()> {
    let table = table_name(vrf);
    match nft_json(&json::on_table("delete", &table))? {
        Ok(_) => Ok(()),
        Err(e) if e.contains("No such file") => Ok(()),
        Err(e) => Err(Error::kernel(format!(
            "deleting nftables table inet {table}: {e}"
        ))),
    }
}

pub fn observe(vrf: &str) -> Result<Presence> {
    let table = table_name(vrf);
    match nft_json(&json::on_table("list", &table))? {
        Ok(text) if text.contains("\"masquerade\"") => Ok(Presence::Present),
        Ok(_) => Ok(Presence::Drifted("no masquerade rule".into())),
        Err(e) if e.contains("No such file") => Ok(Presence::Missing),
        Err(e) => Err(Error::kernel(format!(
            "reading nftables table inet {table}: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::kernel::netns::in_new_netns;

    fn tables_here() -> String {
        let out = Command::new("nft")
            .args(["list", "tables"])
            .output()
            .expect("running nft");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The table as nft lists it back, as text.
    fn listed(vrf: &str) -> String {
        let out = Command::new("nft")
            .args(["list", "table", "inet", &table_name(vrf)])
            .output()
            .expect("running nft");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn the_table_zones_the_vrf_side_and_masquerades_out_of_the_uplinks() {
        in_new_netns(|| {
            ensure("vrf-oam", "gl-vrf", &["eth1".into()]).unwrap();
            let text = listed("vrf-oam");
            for want in [
                "type filter hook prerouting priority raw; policy accept;",
                "iifname { \"eth1\", \"gl-vrf\" } ct zone set 1 comment \"gwsteer: vrf vrf-oam: its own conntrack zone\"",
                "type filter hook prerouting priority mangle; policy accept;",
                "iifname \"gl-vrf\" ct state new ct mark set ct mark | 0x80000000 comment \"gwsteer: vrf vrf-oam: from the pods\"",
                "type nat hook postrouting priority srcnat; policy accept;",
                "ct mark 0x80000000/1 oifname \"eth1\" masquerade comment \"gwsteer: vrf vrf-oam: masquerade\"",
            ] {
                assert!(text.contains(want), "{want}\n{text}");
            }
            // Names nft's text syntax would trip on go as JSON.
            ensure("v\"{$", "l\"{}$", &["u;#".into(), "u+".into()]).unwrap();
            assert_eq!(observe("v\"{$").unwrap(), Presence::Present);
            remove("v\"{$").unwrap();
            assert_eq!(observe("v\"{$").unwrap(), Presence::Missing);
        });
    }

    #[test]
    fn the_table_is_made_and_removed_in_the_callers_namespace() {
        in_new_netns(|| {
            assert_eq!(observe("t0").unwrap(), Presence::Missing);
            ensure("t0", "gwl-vrf", &["up0".to_string(), "up1".to_string()]).unwrap();
            assert!(tables_here().contains("table inet gwsteer-vrf-t0"));
            assert_eq!(observe("t0").unwrap(), Presence::Present);
            // Idempotent: a second ensure leaves one table, one masquerade.
            ensure("t0", "gwl-vrf", &["up0".to_string(), "up1".to_string()]).unwrap();
            assert_eq!(observe("t0").unwrap(), Presence::Present);
            remove("t0").unwrap();
            assert!(!tables_here().contains("gwsteer-vrf-t0"));
            assert_eq!(observe("t0").unwrap(), Presence::Missing);
            // Removing what is gone succeeds.
            remove("t0").unwrap();
        });
    }
}
