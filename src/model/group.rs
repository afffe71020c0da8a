//! What the state store keeps: one record per attachment (its own objects
//! and the node groups it holds) and the node groups themselves. Plain
//! values; the store reads and writes them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{FwObject, Object, SavedUplink, Side};

/// Version of the record and group file format. 2: a group's `restore` is
/// typed (`{"sysctls": {…}, "uplinks": {dev: SavedUplink}}`); schema 1 kept
/// both in one string map, an uplink's state as JSON inside a string. Files
/// of schema 1 are still read (see [`Restore`]) and written back as 2.
pub const SCHEMA: u32 = 2;

/// The oldest schema this gwsteer reads.
pub const OLDEST_SCHEMA: u32 = 1;

/// The identity of an attachment within a network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentId {
    pub container_id: String,
    pub ifname: String,
}

impl AttachmentId {
    /// File name stem. Container ids are `[A-Za-z0-9][A-Za-z0-9_.-]*` and
    /// interface names hold no '/', so `@` keeps the two apart.
    pub fn stem(&self) -> String {
        format!("{}@{}", self.container_id, self.ifname)
    }
}

impl std::fmt::Display for AttachmentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.container_id, self.ifname)
    }
}

/// What one attachment owns. Written before the kernel is touched (intent),
/// so a crash mid-ADD leaves a record that DEL or GC can undo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub schema: u32,
    pub network: String,
    #[serde(flatten)]
    pub id: AttachmentId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Per-pod objects, removed on DEL.
    #[serde(default)]
    pub objects: Vec<Object>,
    /// Keys of node-level groups this attachment needs.
    #[serde(default)]
    pub holds: Vec<GroupKey>,
    pub created: u64,
    /// What ADD chose that a person should know (the side each policy
    /// acts on; a node side that relies on a detour), shown by `show`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Node-level objects shared by attachments, removed with their last holder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeGroup {
    pub schema: u32,
    pub key: GroupKey,
    pub objects: Vec<Object>,
    /// What the group found before it first changed the node, given back
    /// when its last holder goes.
    #[serde(default, skip_serializing_if = "Restore::is_empty")]
    pub restore: Restore,
    /// Node-wide claims this group holds in the node scope (a steering
    /// policy's table and rule priorities: [`GroupKey::TableClaim`],
    /// [`GroupKey::PriorityClaim`]), released with the group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<GroupKey>,
}

impl NodeGroup {
    /// A group of the current schema with nothing to restore yet.
    pub fn new(key: GroupKey, objects: Vec<Object>) -> NodeGroup {
        NodeGroup {
            schema: SCHEMA,
            key,
            objects,
            restore: Restore::default(),
            claims: Vec::new(),
        }
    }
}

/// Which node group: what it is for, and so its names in the store
/// (`nodes/<key>.json`, `holds/<key>/`; `holds/<key>` a link for the kinds
/// with one holder), unchanged since schema 1.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupKey {
    /// `steering.<policy>`: a steering policy's owned table routes (and for
    /// `mark`/`connmark` its firewall policy and fwmark rules).
    Policy(String),
    /// `steering.<policy>.<cidr>` (`/` and `:` as `_`): the rules of a
    /// `scope: "subnet"` policy for one pod subnet, held by the pods in it.
    Subnet(String, IpNet),
    /// `sysctl.<key>`: a node sysctl; in a network's store, and in the
    /// node-wide scope where the networks that need it hold it.
    Sysctl(String),
    /// `exemption.<cidr>` (`/` and `:` as `_`): the masquerade exemption of
    /// one CIDR.
    Exemption(IpNet),
    /// `infra.gateway`: the gateway network's bridge, VXLAN, FDB entries.
    GatewayInfra,
    /// `infra.vrf.<name>`: the VRF device, its legs and uplinks.
    VrfInfra(String),
    /// `vrf.<name>.leak`: the `cidr` leak routes.
    VrfLeak(String),
    /// `vrf.<name>.masquerade`: the VRF's masquerade table.
    VrfMasquerade(String),
    /// `owner.<hash>`: who owns one per-pod node object (see
    /// [`GroupKey::owner_of`]). Its one holder is the attachment whose ADD
    /// last made the object; it has no group file, only the holder.
    Owner(u64),
    /// `claim.table.<id>`, in the node scope: the networks' policies that
    /// use routing table `id` (holder `<network>@steering.<policy>`).
    TableClaim(u32),
    /// `claim.priority.<n>`, in the node scope: the networks' policies
    /// whose rules use priority `n`.
    PriorityClaim(u32),
}

impl GroupKey {
    /// Infrastructure stays when its last holder goes, until `gwsteer
    /// cleanup` (CONTRACT 4).
    pub fn is_infrastructure(&self) -> bool {
        matches!(self, GroupKey::GatewayInfra | GroupKey::VrfInfra(_))
    }

    /// `keys` as a log line lists them: `steering.oam, sysctl.…`.
    pub fn list(keys: &[GroupKey]) -> String {
        let names: Vec<String> = keys.iter().map(ToString::to_string).collect();
        names.join(", ")
    }

    /// Kinds with one holder by design, stored as one symbolic link naming
    /// it rather than a directory of holder files (`store/links.rs`): the
    /// owner of a pod address's objects, the network of a table or rule
    /// priority.
    pub fn has_one_holder(&self) -> bool {
        matches!(
            self,
            GroupKey::Owner(_) | GroupKey::TableClaim(_) | GroupKey::PriorityClaim(_)
        )
    }

    /// A table's or rule priority's claim (node scope).
    pub fn is_claim(&self) -> bool {
        matches!(self, GroupKey::TableClaim(_) | GroupKey::PriorityClaim(_))
    }

    /// A steering policy's group: its routes are the policy's owned table,
    /// one per destination, and nothing per pod.
    pub fn is_policy(&self) -> bool {
        matches!(self, GroupKey::Policy(_))
    }

    /// The owner entry of a per-pod object: a stable hash (64-bit FNV-1a)
    /// of what the object is for (the pod address, the host veth; else the
    /// object as records store it), so that two records of one address (a
    /// pod address reused after a lost DEL) meet at one entry.
    pub fn owner_of(obj: &Object) -> GroupKey {
        // What the object is *for*: a pod's address (its rules, its firewall
        // membership, its leak route) or the host end of its veth. One
        // entry per address, not per object: a dual-stack `source` pod
        // with exclusions has two entries, not five, and an address reused
        // by a new pod moves all that was made for it at once.
        let identity = match obj {
            Object::Rule {
                spec,
                side: Side::Node,
            } if spec.src.is_some() => format!(
                "addr {}",
                spec.src
                    .map(|s| s.addr())
                    .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]))
            ),
            Object::Firewall {
                firewall: FwObject::Member(m),
                ..
            } => format!("addr {}", m.addr.addr()),
            Object::Route {
                spec,
                side: Side::Node,
            } if spec.dst.prefix_len() == spec.dst.max_prefix_len() => {
                format!("addr {}", spec.dst.addr())
            }
            Object::Mtu {
                ifname,
                side: Side::Node,
                ..
            } => format!("link {ifname}"),
            other => {
                String::from_utf8_lossy(&serde_json::to_vec(other).unwrap_or_default()).into_owned()
            }
        };
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in identity.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        GroupKey::Owner(hash)
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupKey::Policy(name) => write!(f, "steering.{name}"),
            GroupKey::Subnet(name, cidr) => write!(f, "steering.{name}.{}", cidr_text(cidr)),
            GroupKey::Sysctl(key) => write!(f, "sysctl.{key}"),
            GroupKey::Exemption(cidr) => write!(f, "exemption.{}", cidr_text(cidr)),
            GroupKey::GatewayInfra => f.write_str("infra.gateway"),
            GroupKey::VrfInfra(name) => write!(f, "infra.vrf.{name}"),
            GroupKey::VrfLeak(name) => write!(f, "vrf.{name}.leak"),
            GroupKey::VrfMasquerade(name) => write!(f, "vrf.{name}.masquerade"),
            GroupKey::Owner(hash) => write!(f, "owner.{hash:016x}"),
            GroupKey::TableClaim(table) => write!(f, "claim.table.{table}"),
            GroupKey::PriorityClaim(priority) => write!(f, "claim.priority.{priority}"),
        }
    }
}

impl FromStr for GroupKey {
    type Err = String;

    fn from_str(s: &str) -> Result<GroupKey, String> {
        let bad = || format!("\"{s}\" is not a node group key");
        let nonempty = |rest: &str| {
            if rest.is_empty() {
                Err(bad())
            } else {
                Ok(rest.to_string())
            }
        };
        if s == "infra.gateway" {
            return Ok(GroupKey::GatewayInfra);
        }
        if let Some(name) = s.strip_prefix("infra.vrf.") {
            return nonempty(name).map(GroupKey::VrfInfra);
        }
        if let Some(name) = s.strip_prefix("steering.") {
            // Policy names have no `.`; a CIDR after the first one.
            return match name.split_once('.') {
                Some((name, cidr)) => Ok(GroupKey::Subnet(
                    nonempty(name)?,
                    cidr_parse(cidr).ok_or_else(bad)?,
                )),
                None => nonempty(name).map(GroupKey::Policy),
            };
        }
        if let Some(key) = s.strip_prefix("sysctl.") {
            return nonempty(key).map(GroupKey::Sysctl);
        }
        if let Some(cidr) = s.strip_prefix("exemption.") {
            return cidr_parse(cidr).map(GroupKey::Exemption).ok_or_else(bad);
        }
        if let Some(hex) = s.strip_prefix("owner.") {
            if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            return u64::from_str_radix(hex, 16)
                .map(GroupKey::Owner)
                .map_err(|_| bad());
        }
        let number = |n: &str| {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            n.parse::<u32>().map_err(|_| bad())
        };
        if let Some(n) = s.strip_prefix("claim.table.") {
            return number(n).map(GroupKey::TableClaim);
        }
        if let Some(n) = s.strip_prefix("claim.priority.") {
            return number(n).map(GroupKey::PriorityClaim);
        }
        if let Some(rest) = s.strip_prefix("vrf.") {
            if let Some(name) = rest.strip_suffix(".leak") {
                return nonempty(name).map(GroupKey::VrfLeak);
            }
            if let Some(name) = rest.strip_suffix(".masquerade") {
                return nonempty(name).map(GroupKey::VrfMasquerade);
            }
        }
        Err(bad())
    }
}

/// A CIDR in a group key (and file name): `/` and `:` as `_`.
fn cidr_text(cidr: &IpNet) -> String {
    cidr.to_string().replace(['/', ':'], "_")
}

/// [`cidr_text`] read back: the last `_` was the `/`; any other an IPv6 `:`.
fn cidr_parse(text: &str) -> Option<IpNet> {
    let (addr, len) = text.rsplit_once('_')?;
    format!("{}/{len}", addr.replace('_', ":")).parse().ok()
}

impl Serialize for GroupKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GroupKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<GroupKey, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What a node group found before it first changed the node: sysctl values
/// (key → value) and uplinks' addresses and routes (device → state).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Restore {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub uplinks: BTreeMap<String, SavedUplink>,
}

impl Restore {
    pub fn is_empty(&self) -> bool {
        self.sysctls.is_empty() && self.uplinks.is_empty()
    }
}

/// Reads schema 2 (`{"sysctls": {…}, "uplinks": {…}}`) and schema 1 (one
/// map of strings: `"net.ipv4.x": "0"`, `"uplink.<dev>": "<JSON>"`).
impl<'de> Deserialize<'de> for Restore {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Restore, D::Error> {
        use serde::de::Error as _;
        let map = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
        let mut out = Restore::default();
        for (key, value) in map {
            match (key.as_str(), value) {
                ("sysctls", serde_json::Value::Object(m)) => {
                    for (k, v) in m {
                        let v = v.as_str().ok_or_else(|| {
                            D::Error::custom(format!("restore.sysctls.{k}: not a string"))
                        })?;
                        out.sysctls.insert(k, v.to_string());
                    }
                }
                ("uplinks", v @ serde_json::Value::Object(_)) => {
                    out.uplinks = serde_json::from_value(v).map_err(D::Error::custom)?;
                }
                (_, serde_json::Value::String(text)) => match key.strip_prefix("uplink.") {
                    Some(dev) => {
                        let saved = serde_json::from_str(&text)
                            .map_err(|e| D::Error::custom(format!("restore.{key}: {e}")))?;
                        out.uplinks.insert(dev.to_string(), saved);
                    }
                    None => {
                        out.sysctls.insert(key, text);
                    }
                },
                (_, other) => {
                    return Err(D::Error::custom(format!(
                        "restore.{key}: unexpected {other}"
                    )));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SavedRoute;

    const SCHEMA1_NODE_SYSCTL: &str =
        include_str!("../../tests/fixtures/schema1/node-sysctl-group.json");
    const SCHEMA1_POLICY: &str = include_str!("../../tests/fixtures/schema1/policy-group.json");
    const SCHEMA1_RECORD: &str = include_str!("../../tests/fixtures/schema1/record.json");

    #[test]
    fn every_group_key_reads_back_from_its_file_name() {
        let keys = [
            GroupKey::Policy("oam".into()),
            GroupKey::Sysctl("net.ipv4.conf.all.src_valid_mark".into()),
            GroupKey::Exemption("192.168.50.0/24".parse().unwrap()),
            GroupKey::Exemption("fd00:50::/64".parse().unwrap()),
            GroupKey::GatewayInfra,
            GroupKey::VrfInfra("vrf-oam".into()),
            GroupKey::VrfLeak("vrf-oam".into()),
            GroupKey::VrfMasquerade("vrf-oam".into()),
            GroupKey::Owner(0x0123_4567_89ab_cdef),
            GroupKey::TableClaim(100),
            GroupKey::PriorityClaim(999),
            GroupKey::Subnet("oam".into(), "10.244.1.0/24".parse().unwrap()),
            GroupKey::Subnet("oam".into(), "fd00:244:0:1::/64".parse().unwrap()),
        ];
        let names: Vec<String> = keys.iter().map(ToString::to_string).collect();
        // The names of schema 1, unchanged.
        assert_eq!(
            names,
            [
                "steering.oam",
                "sysctl.net.ipv4.conf.all.src_valid_mark",
                "exemption.192.168.50.0_24",
                "exemption.fd00_50___64",
                "infra.gateway",
                "infra.vrf.vrf-oam",
                "vrf.vrf-oam.leak",
                "vrf.vrf-oam.masquerade",
                "owner.0123456789abcdef",
                "claim.table.100",
                "claim.priority.999",
                "steering.oam.10.244.1.0_24",
                "steering.oam.fd00_244_0_1___64",
            ]
        );
        for (key, name) in keys.iter().zip(&names) {
            assert_eq!(&name.parse::<GroupKey>().unwrap(), key, "{name}");
        }
        for bad in [
            "",
            "steering.",
            "infra.vrf.",
            "nodes",
            "exemption.10.0.0.0",
            "vrf.x",
            "owner.123",
            "owner.0123456789abcdeg",
            "claim.table.",
            "claim.table.-1",
            "claim.priority.4294967296",
            "steering.oam.",
            "steering..10.0.0.0_8",
            "steering.oam.10.0.0.0",
        ] {
            assert!(bad.parse::<GroupKey>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_infrastructure_outlives_its_last_holder() {
        let infra: Vec<bool> = [
            GroupKey::GatewayInfra,
            GroupKey::VrfInfra("v".into()),
            GroupKey::VrfLeak("v".into()),
            GroupKey::VrfMasquerade("v".into()),
            GroupKey::Policy("p".into()),
            GroupKey::Sysctl("k".into()),
        ]
        .iter()
        .map(GroupKey::is_infrastructure)
        .collect();
        assert_eq!(infra, [true, true, false, false, false, false]);
    }

    /// Files written by schema 1 (a `mark` policy's ADD, as the previous
    /// release wrote them) read as the same values, and are written back
    /// as schema 2.
    #[test]
    fn schema_1_files_are_read() {
        let node: NodeGroup = serde_json::from_str(SCHEMA1_NODE_SYSCTL).unwrap();
        assert_eq!(node.schema, 1);
        assert_eq!(
            node.key,
            GroupKey::Sysctl("net.ipv4.conf.all.src_valid_mark".into())
        );
        assert_eq!(
            node.restore.sysctls,
            BTreeMap::from([("net.ipv4.conf.all.src_valid_mark".into(), "0".into())])
        );
        assert!(node.restore.uplinks.is_empty());
        let policy: NodeGroup = serde_json::from_str(SCHEMA1_POLICY).unwrap();
        assert_eq!(policy.key, GroupKey::Policy("egress".into()));
        assert_eq!(policy.objects.len(), 3);
        assert!(policy.restore.is_empty());
        let record: Record = serde_json::from_str(SCHEMA1_RECORD).unwrap();
        assert_eq!(
            record.holds,
            [
                GroupKey::Policy("egress".into()),
                GroupKey::Sysctl("net.ipv4.conf.all.src_valid_mark".into())
            ]
        );
        let again: NodeGroup = serde_json::from_str(
            &serde_json::to_string(&NodeGroup {
                schema: SCHEMA,
                ..node.clone()
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!(again.restore, node.restore);
        let text = serde_json::to_value(&again).unwrap();
        assert_eq!(
            text["restore"],
            serde_json::json!({"sysctls": {"net.ipv4.conf.all.src_valid_mark": "0"}})
        );
    }

    /// Schema 1 kept an uplink's state as JSON inside a string under
    /// `uplink.<dev>`; it reads as the typed value, and schema 2 keeps it
    /// as one.
    #[test]
    fn a_schema_1_uplink_restore_reads_as_a_typed_value() {
        let saved = SavedUplink {
            addresses: vec![
                "10.30.0.1/24".parse().unwrap(),
                "fd00:30::1/64".parse().unwrap(),
            ],
            routes: vec![SavedRoute {
                route: crate::model::RouteSpec {
                    dst: "10.40.0.0/16".parse().unwrap(),
                    table: 254,
                    kind: crate::model::RouteKind::Unicast,
                    nexthops: vec![crate::model::NextHop {
                        via: "10.30.0.254".parse().unwrap(),
                        dev: Some("eth1".into()),
                        weight: 1,
                    }],
                    dev: None,
                    metric: None,
                },
                protocol: 4,
                scope: 0,
                prefsrc: None,
                onlink: false,
            }],
        };
        // Exactly how schema 1 wrote it: serde_json::to_string of the value,
        // stored as a string.
        let v1 = serde_json::json!({
            "schema": 1,
            "key": "infra.vrf.vrf-oam",
            "objects": [{"object": "uplink", "dev": "eth1", "vrf": "vrf-oam", "table": 10}],
            "restore": {"uplink.eth1": serde_json::to_string(&saved).unwrap()}
        });
        let g: NodeGroup = serde_json::from_value(v1).unwrap();
        assert_eq!(g.key, GroupKey::VrfInfra("vrf-oam".into()));
        assert_eq!(g.restore.uplinks.get("eth1"), Some(&saved));
        assert!(g.restore.sysctls.is_empty());
        let v2 = serde_json::to_value(&g).unwrap();
        assert_eq!(
            v2["restore"]["uplinks"]["eth1"]["addresses"][1],
            "fd00:30::1/64"
        );
        let back: NodeGroup = serde_json::from_value(v2).unwrap();
        assert_eq!(back.restore, g.restore);
    }

    #[test]
    fn a_broken_restore_is_an_error_not_a_guess() {
        for restore in [
            serde_json::json!({"uplink.eth1": "{not json"}),
            serde_json::json!({"net.ipv4.ip_forward": 1}),
            serde_json::json!({"sysctls": {"a": 1}}),
        ] {
            let v = serde_json::json!({"schema": 1, "key": "infra.gateway", "objects": [],
                "restore": restore});
            assert!(serde_json::from_value::<NodeGroup>(v).is_err(), "{restore}");
        }
        let bad_key = serde_json::json!({"schema": 2, "key": "nonsense", "objects": []});
        assert!(serde_json::from_value::<NodeGroup>(bad_key).is_err());
    }
}
