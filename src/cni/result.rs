//! The previous plugin's result: read what gwsteer needs (the pod's
//! addresses) and pass the rest through untouched, converted to the
//! config's `cniVersion`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

use super::reader::At;
use super::version::CniVersion;
use crate::error::Result;

/// One address of the pod, with the interface it sits on (if the result says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAddress {
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
    pub interface: Option<String>,
}

/// Addresses of the pod interface `ifname` in a prevResult. An `ips[]` entry
/// counts when its `interface` index names a sandbox interface called
/// `ifname`, or when it names no interface at all.
pub fn pod_addresses(prev: &Value, ifname: &str) -> Result<Vec<PodAddress>> {
    let root = At::named("prevResult", prev).object()?;
    let interfaces: Vec<(String, bool)> = match root.get("interfaces") {
        None => Vec::new(),
        Some(list) => list.list_of(|i| {
            let o = i.object()?;
            let name = o.req("name")?.str()?.to_string();
            let in_sandbox = match o.get("sandbox") {
                Some(s) => !s.str()?.is_empty(),
                None => false,
            };
            Ok((name, in_sandbox))
        })?,
    };
    let Some(ips) = root.get("ips") else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for ip in ips.array()? {
        let o = ip.object()?;
        let addr_at = o.req("address")?;
        let text = addr_at.str()?;
        let address: IpNet = text
            .parse()
            .map_err(|_| addr_at.err(format!("\"{text}\" is not an address with prefix length")))?;
        let gateway = o.get("gateway").map(|g| g.ip()).transpose()?;
        if let Some(version) = o.get("version") {
            let v = version.str()?;
            let expect = if address.addr().is_ipv4() { "4" } else { "6" };
            if v != expect {
                return Err(version.err(format!(
                    "\"{v}\" does not match address {text} (expected \"{expect}\")"
                )));
            }
        }
        let interface = match o.get("interface") {
            None => None,
            Some(idx) => {
                let i = idx.u64()? as usize;
                let (name, in_sandbox) = interfaces.get(i).ok_or_else(|| {
                    idx.err(format!(
                        "{i} is not an index into prevResult.interfaces ({} entries)",
                        interfaces.len()
                    ))
                })?;
                if !in_sandbox {
                    // A host-side interface (bridge, veth): not the pod's address.
                    continue;
                }
                Some(name.clone())
            }
        };
        if interface.as_deref().is_some_and(|n| n != ifname) {
            continue;
        }
        out.push(PodAddress {
            address,
            gateway,
            interface,
        });
    }
    Ok(out)
}

/// The result to print: the prevResult converted to `version`.
pub fn convert(prev: &Value, version: CniVersion) -> Value {
    let mut out = match prev {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    out.insert("cniVersion".into(), Value::String(version.to_string()));
    if let Some(Value::Array(ips)) = out.get_mut("ips") {
        for ip in ips.iter_mut() {
            let Value::Object(ip) = ip else { continue };
            if version.ips_carry_version() {
                let is_v6 = ip
                    .get("address")
                    .and_then(Value::as_str)
                    .is_some_and(|a| a.contains(':'));
                ip.insert(
                    "version".into(),
                    Value::String(if is_v6 { "6" } else { "4" }.into()),
                );
            } else {
                ip.remove("version");
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bridge_result() -> Value {
        json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
                {"name": "vethabc", "mac": "aa:bb:cc:dd:ee:02"},
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/netns/p1"}
            ],
            "ips": [
                {"address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 2},
                {"address": "fd00:244:0:1::5/64", "gateway": "fd00:244:0:1::1", "interface": 2}
            ],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {}
        })
    }

    #[test]
    fn finds_the_pod_addresses_of_the_interface() {
        let addrs = pod_addresses(&bridge_result(), "eth0").unwrap();
        assert_eq!(addrs.len(), 2);
        assert_eq!(addrs[0].address, "10.244.1.5/24".parse::<IpNet>().unwrap());
        assert_eq!(addrs[1].gateway, Some("fd00:244:0:1::1".parse().unwrap()));
        assert!(pod_addresses(&bridge_result(), "net1").unwrap().is_empty());
    }

    #[test]
    fn ips_without_interface_count() {
        let prev = json!({"ips": [{"address": "10.0.0.2/24"}]});
        assert_eq!(pod_addresses(&prev, "eth0").unwrap().len(), 1);
    }

    #[test]
    fn bad_interface_index_names_the_field() {
        let prev = json!({"interfaces": [], "ips": [{"address": "10.0.0.2/24", "interface": 3}]});
        let e = pod_addresses(&prev, "eth0").unwrap_err();
        assert!(
            e.msg.starts_with("prevResult.ips[0].interface: 3"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn converts_down_to_0_3_1_adding_ip_versions() {
        let out = convert(&bridge_result(), CniVersion::V0_3_1);
        assert_eq!(out["cniVersion"], "0.3.1");
        assert_eq!(out["ips"][0]["version"], "4");
        assert_eq!(out["ips"][1]["version"], "6");
        assert_eq!(out["routes"], bridge_result()["routes"]);
    }

    #[test]
    fn converts_up_to_1_0_0_dropping_ip_versions() {
        let mut prev = bridge_result();
        prev["cniVersion"] = json!("0.4.0");
        prev["ips"][0]["version"] = json!("4");
        let out = convert(&prev, CniVersion::V1_0_0);
        assert_eq!(out["cniVersion"], "1.0.0");
        assert!(out["ips"][0].get("version").is_none());
    }
}
