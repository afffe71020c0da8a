//! Plugin configuration: the raw JSON of the conflist's plugin object (with
//! the runtime's `cniVersion`, `name`, `prevResult`, `args`) turned into one
//! validated [`Config`]. Every error names the field by path.

pub mod gateway;
pub mod reader;
pub mod vrf;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde_json::Value;

use crate::cni::version::CniVersion;
use crate::error::{Error, Result, code};
use crate::objects::Family;
use reader::{At, Obj};

pub const DEFAULT_STATE_DIR: &str = "/run/cni/gwsteer";

/// The main table's rule sits at 32766: a steering rule at or after it never
/// sees a packet, because main's default route answers first.
const MAIN_RULE_PRIORITY: u32 = 32766;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirewallBackend {
    Auto,
    Nftables,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `from <podIP> lookup <table>` per steered pod.
    Source,
    /// fwmark set on packets from steered pods (optionally only to `egressTo`).
    Mark { mark: u32, mask: Option<u32> },
    /// connmark on connections arriving by `ingressInterfaces`, restored on replies.
    Connmark { mark: u32, mask: Option<u32> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    pub via: IpAddr,
    pub dev: Option<String>,
    pub weight: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub table: u32,
    pub priority: u32,
    pub matcher: Match,
    pub gateways: Vec<Gateway>,
    /// Destinations routed via the gateways, only of families that have a gateway.
    pub destinations: Vec<IpNet>,
    pub exclude: Vec<IpNet>,
    pub egress_to: Vec<IpNet>,
    pub ingress_interfaces: Vec<String>,
    /// `None`: pods of every namespace.
    pub namespaces: Option<BTreeSet<String>>,
}

impl Policy {
    pub fn gateways_of(&self, family: Family) -> Vec<&Gateway> {
        self.gateways
            .iter()
            .filter(|g| Family::of(&g.via) == family)
            .collect()
    }

    pub fn serves(&self, family: Family) -> bool {
        self.destinations
            .iter()
            .any(|d| Family::of_net(d) == family)
    }
}

/// Per-pod choices from Multus cni-args (`args.cni.gwsteer`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodArgs {
    /// `Some(names)`: exactly these policies, whatever `namespaces` says;
    /// `Some([])` opts the pod out of steering.
    pub steering: Option<Vec<String>>,
    pub role: Option<Role>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Router,
    None,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub cni_version: CniVersion,
    /// The network name (`name` of the conflist).
    pub network: String,
    pub state_dir: PathBuf,
    pub log_file: Option<PathBuf>,
    pub log_level: log::LevelFilter,
    pub firewall_backend: FirewallBackend,
    pub steering: Vec<Policy>,
    pub pod_args: PodArgs,
    pub prev_result: Option<Value>,
    /// GC: `cni.dev/valid-attachments` as (containerID, ifname).
    pub valid_attachments: Option<Vec<(String, String)>>,
    /// `lockTimeoutMs` (default 10000, 1…600000): how long a call waits for
    /// another gwsteer holding the network's state store lock before it
    /// gives up with CNI error 11 ("try again later").
    pub lock_timeout: std::time::Duration,
    /// `masqueradeExemption` (an extension of the contract for any chained
    /// network; the gateway network will default it on): traffic from these
    /// CIDRs (none given: the pod's subnets from prevResult) is never
    /// masqueraded on the node.
    pub masquerade_exemption: Option<Exemption>,
    /// `gatewayNetwork` (CONTRACT 3.2).
    pub gateway: Option<gateway::GatewayNetwork>,
    /// `vrf` (CONTRACT 3.3).
    pub vrf: Option<vrf::Vrf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Exemption {
    /// Empty: the subnets of the pod's addresses.
    pub cidrs: Vec<IpNet>,
    /// Foreign iptables nat chains that get a RETURN for the CIDRs at the top.
    pub chains: Vec<String>,
}

/// Default of `lockTimeoutMs`.
pub const DEFAULT_LOCK_TIMEOUT_MS: u32 = 10_000;

/// Keys the runtime puts in a plugin's config, or that other tools add.
const RUNTIME_KEYS: &[&str] = &[
    "cniVersion",
    "cniVersions",
    "name",
    "type",
    "prevResult",
    "runtimeConfig",
    "capabilities",
    "args",
    "cni.dev/valid-attachments",
    "cni.dev/attachments",
    "disableCheck",
    "disableGC",
    "ipam",
    "dns",
];

const PLUGIN_KEYS: &[&str] = &[
    "stateDir",
    "logFile",
    "logLevel",
    "firewallBackend",
    "lockTimeoutMs",
    "masqueradeExemption",
    "steering",
    "gatewayNetwork",
    "vrf",
];

/// Is `s` a valid CNI network name / container id (`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)?
pub fn valid_cni_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Is `s` usable as a Linux interface name?
pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && !s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// A config value that must be an interface name.
pub(crate) fn ifname(v: &At) -> Result<String> {
    let s = v.str()?;
    if !valid_ifname(s) {
        return Err(v.err(format!("\"{s}\" is not an interface name")));
    }
    Ok(s.to_string())
}

impl Config {
    /// Parse the bytes on stdin. Decoding failures are CNI code 6.
    pub fn from_bytes(bytes: &[u8]) -> Result<Config> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            Error::new(
                code::DECODE,
                format!("network configuration is not valid JSON: {e}"),
            )
        })?;
        Config::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<Config> {
        let root = At::root(value)
            .object()
            .map_err(|_| Error::new(code::DECODE, "network configuration must be a JSON object"))?;
        let cni_version = match root.get("cniVersion") {
            None => return Err(Error::config("cniVersion: required")),
            Some(v) => CniVersion::parse(v.str()?)?,
        };
        let network = root.req("name")?;
        let network_name = network.str()?;
        if !valid_cni_name(network_name) {
            return Err(network.err(format!(
                "{} is not a valid network name (letters, digits, '_', '.', '-'; starting with a letter or digit)",
                reader::show(network.value)
            )));
        }
        let mut known: Vec<&str> = RUNTIME_KEYS.to_vec();
        known.extend_from_slice(PLUGIN_KEYS);
        root.only(&known)?;

        let state_dir = match root.get("stateDir") {
            Some(v) => absolute_path(&v)?,
            None => PathBuf::from(DEFAULT_STATE_DIR),
        };
        let log_file = root.get("logFile").map(|v| absolute_path(&v)).transpose()?;
        let log_level = match root.get("logLevel") {
            None => log::LevelFilter::Info,
            Some(v) => match v.str()? {
                "error" => log::LevelFilter::Error,
                "warn" => log::LevelFilter::Warn,
                "info" => log::LevelFilter::Info,
                "debug" => log::LevelFilter::Debug,
                "trace" => log::LevelFilter::Trace,
                other => {
                    return Err(v.err(format!(
                        "\"{other}\" is not one of error, warn, info, debug, trace"
                    )));
                }
            },
        };
        let firewall_backend = match root.get("firewallBackend") {
            None => FirewallBackend::Auto,
            Some(v) => match v.str()? {
                "auto" => FirewallBackend::Auto,
                "nftables" => FirewallBackend::Nftables,
                "none" => FirewallBackend::None,
                "iptables" => {
                    return Err(v.err(
                        "\"iptables\" is no longer supported: nftables is the one firewall \
                         backend; it coexists with iptables-legacy and iptables-nft rules of \
                         other software",
                    ));
                }
                other => {
                    return Err(v.err(format!("\"{other}\" is not one of auto, nftables, none")));
                }
            },
        };
        let lock_timeout_ms = match root.get("lockTimeoutMs") {
            None => DEFAULT_LOCK_TIMEOUT_MS,
            Some(v) => v.u32_in(1, 600_000)?,
        };
        let steering = match root.get("steering") {
            None => Vec::new(),
            Some(v) => parse_policies(&v)?,
        };
        let vrf = match root.get("vrf") {
            None => None,
            Some(v) => {
                let tables: Vec<(String, u32)> =
                    steering.iter().map(|p| (p.name.clone(), p.table)).collect();
                Some(vrf::parse(&v, &tables)?)
            }
        };
        let pod_args = match root.get("args") {
            None => PodArgs::default(),
            Some(v) => parse_pod_args(&v, &steering)?,
        };
        let mut masquerade_exemption = match root.get("masqueradeExemption") {
            None => None,
            Some(v) => parse_exemption(&v)?,
        };
        let gateway = match root.get("gatewayNetwork") {
            None => None,
            Some(v) => {
                let (gw, exemption) = gateway::parse(&v)?;
                gw.check_role(pod_args.role.unwrap_or(gw.role), &v.path)?;
                // The gateway network's exemption is on unless it says
                // otherwise (nested or at the top level, not both); with
                // firewallBackend "none" the default is off.
                match (exemption, root.get("masqueradeExemption")) {
                    (Some(nested), Some(_)) => {
                        return Err(nested.err(
                            "given at the top level too; set masqueradeExemption in one place",
                        ));
                    }
                    (Some(nested), None) => masquerade_exemption = parse_exemption(&nested)?,
                    (None, Some(_)) => {}
                    (None, None) if firewall_backend == FirewallBackend::None => {}
                    (None, None) => masquerade_exemption = Some(Exemption::default()),
                }
                Some(gw)
            }
        };
        if firewall_backend == FirewallBackend::None {
            if let Some(p) = steering.iter().position(|p| p.matcher != Match::Source) {
                return Err(Error::config(format!(
                    "steering[{p}].match: needs a firewall, but firewallBackend is \"none\""
                )));
            }
            if masquerade_exemption.is_some() {
                return Err(Error::config(
                    "masqueradeExemption: needs a firewall, but firewallBackend is \"none\"",
                ));
            }
            if vrf.as_ref().is_some_and(|v| v.masquerade) {
                return Err(Error::config(
                    "vrf.masquerade: needs a firewall, but firewallBackend is \"none\"",
                ));
            }
        }
        if let Some(vrf) = vrf.as_ref().filter(|v| v.masquerade) {
            vrf_mark_conflicts(&steering, vrf)?;
        }
        let prev_result = root.get("prevResult").map(|v| v.value.clone());
        if let Some(v) = root.get("prevResult") {
            v.object()?;
        }
        let valid_attachments = root
            .get("cni.dev/valid-attachments")
            .map(|v| {
                v.list_of(|item| {
                    let o = item.object()?;
                    let id = o.req("containerID")?.str()?.to_string();
                    let ifname = o.req("ifname")?.str()?.to_string();
                    Ok((id, ifname))
                })
            })
            .transpose()?;
        Ok(Config {
            cni_version,
            network: network_name.to_string(),
            state_dir,
            log_file,
            log_level,
            firewall_backend,
            steering,
            pod_args,
            prev_result,
            valid_attachments,
            lock_timeout: std::time::Duration::from_millis(u64::from(lock_timeout_ms)),
            masquerade_exemption,
            gateway,
            vrf,
        })
    }

    /// Does this config need a firewall backend?
    pub fn needs_firewall(&self) -> bool {
        self.steering.iter().any(|p| p.matcher != Match::Source)
            || self.masquerade_exemption.is_some()
    }

    /// The key that makes gwsteer run `nft` whatever `firewallBackend`
    /// says, if any: `vrf.masquerade`, or the masquerade of router pods
    /// when router is the network's default role. A network of client pods
    /// whose router pod alone asks for the role (cni-args) does not count:
    /// STATUS failing there would stop every client pod for one router.
    pub fn needs_nft_command(&self) -> Option<&'static str> {
        if self.vrf.as_ref().is_some_and(|v| v.masquerade) {
            return Some("vrf.masquerade");
        }
        self.gateway
            .as_ref()
            .filter(|g| g.role == Role::Router && g.masquerade)
            .map(|_| "gatewayNetwork.masquerade (role router)")
    }
}

fn absolute_path(v: &At) -> Result<PathBuf> {
    let s = v.str()?;
    if !s.starts_with('/') {
        return Err(v.err(format!("\"{s}\" is not an absolute path")));
    }
    Ok(PathBuf::from(s))
}

fn parse_policies(v: &At) -> Result<Vec<Policy>> {
    let items = v.array()?;
    let mut policies: Vec<Policy> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let policy = parse_policy(item, index)?;
        let clash = |what: &str, other: &Policy| {
            item.err(format!(
                "{what} is already used by steering policy \"{}\"",
                other.name
            ))
        };
        for other in &policies {
            if other.name == policy.name {
                return Err(clash(&format!("name \"{}\"", policy.name), other));
            }
            if other.table == policy.table {
                return Err(clash(&format!("table {}", policy.table), other));
            }
            if other.priority == policy.priority {
                return Err(clash(&format!("priority {}", policy.priority), other));
            }
        }
        policies.push(policy);
    }
    Ok(policies)
}

fn parse_mark(v: &At) -> Result<u32> {
    match v.value {
        Value::Number(_) => v.u32_in(0, u32::MAX),
        Value::String(s) => {
            let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"));
            let parsed = match hex {
                Some(h) => u32::from_str_radix(h, 16).ok(),
                None => s.parse::<u32>().ok(),
            };
            parsed.ok_or_else(|| {
                v.err(format!(
                    "\"{s}\" is not a 32-bit mark (hex as `ip rule` prints it, e.g. \"0x14\")"
                ))
            })
        }
        _ => Err(v.err("expected a mark such as \"0x14\"")),
    }
}

/// With `vrf.masquerade`, bit 31 of the conntrack mark tells the VRF's
/// connections (started on its leg) from all others, and the VRF's nat
/// chain masquerades exactly those. A `connmark` policy must not set that
/// bit on other connections, nor clear it on the VRF's own.
fn vrf_mark_conflicts(steering: &[Policy], vrf: &vrf::Vrf) -> Result<()> {
    let bit = crate::vrf_nat::CT_MARK_BIT;
    for (i, p) in steering.iter().enumerate() {
        let Match::Connmark { mark, mask } = p.matcher else {
            continue;
        };
        if mark & bit != 0 {
            return Err(Error::config(format!(
                "steering[{i}].mark: {mark:#x} uses bit 31 ({bit:#x}) of the conntrack mark, which vrf.masquerade uses to find the VRF's connections; choose a mark below {bit:#x}"
            )));
        }
        let touches_bit = mask.unwrap_or(u32::MAX) & bit != 0;
        if let Some(j) = p
            .ingress_interfaces
            .iter()
            .position(|dev| *dev == vrf.vrf_leg.name)
            .filter(|_| touches_bit)
        {
            return Err(Error::config(format!(
                "steering[{i}].ingressInterfaces[{j}]: {} is the VRF leg, whose connections vrf.masquerade marks with bit 31 ({bit:#x}) of the conntrack mark; this policy's mark would overwrite it: give a mask without that bit (e.g. \"mask\": \"0xffff\")",
                vrf.vrf_leg.name
            )));
        }
    }
    Ok(())
}

/// `destinations` of an object that has `gateways` (a steering policy, the
/// VRF): each must have a gateway of its address family; left out, the
/// default route of every family that has a gateway.
pub(super) fn destinations(o: &Obj, gateways: &[Gateway]) -> Result<Vec<IpNet>> {
    let families: BTreeSet<Family> = gateways.iter().map(|g| Family::of(&g.via)).collect();
    let Some(d) = o.get("destinations") else {
        return Ok(["0.0.0.0/0", "::/0"]
            .iter()
            .filter_map(|s| s.parse::<IpNet>().ok())
            .filter(|d| families.contains(&Family::of_net(d)))
            .collect());
    };
    let list = d.list_of(|x| x.cidr())?;
    for (i, dst) in list.iter().enumerate() {
        if !families.contains(&Family::of_net(dst)) {
            return Err(Error::config(format!(
                "{}[{i}]: {dst} has no gateway of its address family in {}.gateways",
                d.path, o.path
            )));
        }
    }
    Ok(list)
}

fn parse_policy(item: &At, index: usize) -> Result<Policy> {
    let o = item.object()?;
    o.only(&[
        "name",
        "table",
        "priority",
        "match",
        "mark",
        "mask",
        "gateways",
        "destinations",
        "exclude",
        "egressTo",
        "ingressInterfaces",
        "namespaces",
    ])?;
    let name_at = o.req("name")?;
    let name = name_at.str()?;
    if name.is_empty()
        || name.len() > 15
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(name_at.err(format!("\"{name}\" must be 1 to 15 of a-z, 0-9 and '-'")));
    }
    let table_at = o.req("table")?;
    let table = table_at.u32_in(1, u32::MAX)?;
    if matches!(table, 253..=255) {
        return Err(table_at.err(format!(
            "{table} is a reserved table (253 default, 254 main, 255 local)"
        )));
    }
    let priority = match o.get("priority") {
        Some(p) => {
            let n = p.u64()?;
            if !(2..u64::from(MAIN_RULE_PRIORITY)).contains(&n) {
                return Err(p.err(format!(
                    "{n} is out of range 2…32765 (exclusion rules use priority − 1, and rules at or after 32766, main's, never match)"
                )));
            }
            n as u32
        }
        None => {
            let p = 1000 + 10 * index as u64;
            if p >= u64::from(MAIN_RULE_PRIORITY) {
                return Err(o.err("too many policies for default priorities; set priority"));
            }
            p as u32
        }
    };
    let mode = match o.get("match") {
        None => "source",
        Some(m) => m.str()?,
    };
    let mark_of = |o: &Obj| -> Result<(u32, Option<u32>)> {
        let mark = parse_mark(&o.req("mark")?)?;
        let mask = o.get("mask").map(|m| parse_mark(&m)).transpose()?;
        if mark == 0 {
            return Err(o
                .req("mark")?
                .err("0 is not a usable mark (it matches unmarked packets)"));
        }
        Ok((mark, mask))
    };
    let matcher = match mode {
        "source" => {
            for key in ["mark", "mask", "egressTo", "ingressInterfaces"] {
                if let Some(v) = o.get(key) {
                    return Err(v.err("only used with match \"mark\" or \"connmark\""));
                }
            }
            Match::Source
        }
        "mark" => {
            let (mark, mask) = mark_of(&o)?;
            Match::Mark { mark, mask }
        }
        "connmark" => {
            let (mark, mask) = mark_of(&o)?;
            Match::Connmark { mark, mask }
        }
        other => {
            return Err(o
                .req("match")?
                .err(format!("\"{other}\" is not one of source, mark, connmark")));
        }
    };
    let gateways_at = o.req("gateways")?;
    let gateways = gateways_at.list_of(parse_gateway)?;
    if gateways.is_empty() {
        return Err(gateways_at.err("at least one gateway is required"));
    }
    let destinations = destinations(&o, &gateways)?;
    if let Some(d) = o.get("destinations")
        && destinations.is_empty()
    {
        return Err(d.err("at least one destination is required"));
    }
    let cidrs = |key: &str| -> Result<Vec<IpNet>> {
        o.get(key)
            .map_or(Ok(Vec::new()), |v| v.list_of(|x| x.cidr()))
    };
    let exclude = cidrs("exclude")?;
    let egress_to = cidrs("egressTo")?;
    let ingress_interfaces = match o.get("ingressInterfaces") {
        None => Vec::new(),
        Some(v) => v.list_of(ifname)?,
    };
    match matcher {
        Match::Connmark { .. } if ingress_interfaces.is_empty() => {
            return Err(match o.get("ingressInterfaces") {
                Some(v) => v.err("at least one interface is required"),
                None => Error::config(format!(
                    "{}.ingressInterfaces: required for match \"connmark\"",
                    o.path
                )),
            });
        }
        Match::Connmark { .. } => {
            if let Some(v) = o.get("egressTo") {
                return Err(v.err("only used with match \"mark\""));
            }
        }
        Match::Mark { .. } => {
            if let Some(v) = o.get("ingressInterfaces") {
                return Err(v.err("only used with match \"connmark\""));
            }
        }
        Match::Source => {}
    }
    let namespaces = o
        .get("namespaces")
        .map(|v| v.list_of(|x| Ok(x.str()?.to_string())))
        .transpose()?
        .map(|v| v.into_iter().collect());
    Ok(Policy {
        name: name.to_string(),
        table,
        priority,
        matcher,
        gateways,
        destinations,
        exclude,
        egress_to,
        ingress_interfaces,
        namespaces,
    })
}

/// `true`/`false`, or `{"cidrs": [...]?, "chains": [...]?}`.
fn parse_exemption(v: &At) -> Result<Option<Exemption>> {
    if let Some(on) = v.value.as_bool() {
        return Ok(on.then(Exemption::default));
    }
    let o = v.object()?;
    o.only(&["cidrs", "chains"])?;
    let cidrs = match o.get("cidrs") {
        None => Vec::new(),
        Some(c) => {
            let list = c.list_of(|x| x.cidr())?;
            if list.is_empty() {
                return Err(
                    c.err("give at least one CIDR, or leave cidrs out for the pod's subnets")
                );
            }
            list
        }
    };
    let chains = match o.get("chains") {
        None => Vec::new(),
        Some(c) => c.list_of(|x| {
            let name = x.str()?;
            if name.is_empty()
                || name.len() > 28
                || !name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_'))
            {
                return Err(x.err(format!("\"{name}\" is not an iptables chain name")));
            }
            Ok(name.to_string())
        })?,
    };
    Ok(Some(Exemption { cidrs, chains }))
}

pub(crate) fn parse_gateway(v: &At) -> Result<Gateway> {
    let o = v.object()?;
    o.only(&["via", "dev", "weight"])?;
    let via = o.req("via")?.ip()?;
    let dev = match o.get("dev") {
        None => None,
        Some(d) => Some(ifname(&d)?),
    };
    let weight = match o.get("weight") {
        None => 1,
        Some(w) => w.u32_in(1, 256)? as u16,
    };
    Ok(Gateway { via, dev, weight })
}

fn parse_pod_args(args: &At, policies: &[Policy]) -> Result<PodArgs> {
    let Some(cni) = args.object()?.get("cni") else {
        return Ok(PodArgs::default());
    };
    let Some(ours) = cni.object()?.get("gwsteer") else {
        return Ok(PodArgs::default());
    };
    let o = ours.object()?;
    o.only(&["steering", "role"])?;
    let steering = match o.get("steering") {
        None => None,
        Some(v) => Some(v.list_of(|x| {
            let name = x.str()?;
            if !policies.iter().any(|p| p.name == name) {
                return Err(x.err(format!("no steering policy is named \"{name}\"")));
            }
            Ok(name.to_string())
        })?),
    };
    let role = match o.get("role") {
        None => None,
        Some(v) => Some(match v.str()? {
            "client" => Role::Client,
            "router" => Role::Router,
            "none" => Role::None,
            other => {
                return Err(v.err(format!("\"{other}\" is not one of client, router, none")));
            }
        }),
    };
    Ok(PodArgs { steering, role })
}

#[cfg(test)]
mod tests;
