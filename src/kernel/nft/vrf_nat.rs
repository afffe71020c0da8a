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

use crate::error::{Error, Result};
use crate::model::Presence;

/// The conntrack mark bit of connections that entered the VRF by its leg.
pub const CT_MARK_BIT: u32 = 0x8000_0000;

pub fn table_name(vrf: &str) -> String {
    format!("gwsteer-vrf-{vrf}")
}

fn quoted(names: &[String]) -> String {
    let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!("{{ {} }}", list.join(", "))
}

/// The table's script; `add` then `flush` makes it idempotent.
pub fn script(vrf: &str, leg: &str, uplinks: &[String]) -> String {
    let table = table_name(vrf);
    let mut zoned = vec![leg.to_string()];
    zoned.extend(uplinks.iter().cloned());
    format!(
        "add table inet {table}\n\
         flush table inet {table}\n\
         table inet {table} {{\n\
         \tchain vrfzone {{\n\
         \t\ttype filter hook prerouting priority raw; policy accept;\n\
         \t\tiifname {zoned} ct zone set 1 comment \"gwsteer: vrf {vrf}: its own conntrack zone\"\n\
         \t}}\n\
         \tchain vrfmark {{\n\
         \t\ttype filter hook prerouting priority mangle; policy accept;\n\
         \t\tiifname \"{leg}\" ct state new ct mark set ct mark | {CT_MARK_BIT:#x} comment \"gwsteer: vrf {vrf}: from the pods\"\n\
         \t}}\n\
         \tchain vrfnat {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tct mark & {CT_MARK_BIT:#x} == {CT_MARK_BIT:#x} oifname {uplinks} masquerade comment \"gwsteer: vrf {vrf}: masquerade\"\n\
         \t}}\n\
         }}\n",
        zoned = quoted(&zoned),
        uplinks = quoted(uplinks),
    )
}

pub fn ensure(vrf: &str, leg: &str, uplinks: &[String]) -> Result<()> {
    let table = table_name(vrf);
    crate::kernel::podns::nft(&["-f", "-"], &script(vrf, leg, uplinks))?
        .map(drop)
        .map_err(|e| Error::kernel(format!("making nftables table inet {table}: {e}")))
}

pub fn remove(vrf: &str) -> Result<()> {
    let table = table_name(vrf);
    match crate::kernel::podns::nft(&["delete", "table", "inet", &table], "")? {
        Ok(_) => Ok(()),
        Err(e) if e.contains("No such file") => Ok(()),
        Err(e) => Err(Error::kernel(format!(
            "deleting nftables table inet {table}: {e}"
        ))),
    }
}

pub fn observe(vrf: &str) -> Result<Presence> {
    let table = table_name(vrf);
    match crate::kernel::podns::nft(&["-j", "list", "table", "inet", &table], "")? {
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

    #[test]
    fn the_script_zones_the_vrf_side_and_masquerades_out_of_the_uplinks() {
        let script = script("vrf-oam", "gl-vrf", &["eth1".into()]);
        assert!(
            script.contains("iifname { \"gl-vrf\", \"eth1\" } ct zone set 1"),
            "{script}"
        );
        assert!(
            script.contains("oifname { \"eth1\" } masquerade"),
            "{script}"
        );
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
