//! Plugin configuration: the raw JSON of the conflist's plugin object (with
//! the runtime's `cniVersion`, `name`, `prevResult`, `args`) turned into one
//! validated [`Config`]. Every error names the field by path.

pub mod gateway;
pub mod steering;
pub mod vrf;

pub use steering::{Gateway, Match, Policy, Scope, SideChoice};

use std::path::PathBuf;

use ipnet::IpNet;
use serde_json::Value;

use crate::cni::reader::{self, At};
use crate::cni::version::CniVersion;
use crate::error::{Error, Result, code};

pub const DEFAULT_STATE_DIR: &str = "/run/cni/gwsteer";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirewallBackend {
    Auto,
    Nftables,
    None,
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

pub use crate::cni::names::{MAX_NETWORK_NAME, MAX_PATH, valid_cni_name, valid_ifname};
use crate::cni::names::{ifname_problem, nft_pattern_problem, too_long};

/// A config value that must be the literal name of one interface: a Linux
/// interface name, and one that nftables matches as itself (no `*`, no
/// `\`), since any of them may end up in an `iifname`/`oifname` match.
pub(crate) fn ifname(v: &At) -> Result<String> {
    let s = v.str()?;
    if let Some(problem) = ifname_problem(s) {
        return Err(v.err(format!("{s:?} is not an interface name: {problem}")));
    }
    if let Some(problem) = nft_pattern_problem(s) {
        return Err(v.err(format!(
            "{s:?} is not a literal interface name: {problem} (patterns are not supported; list each interface)"
        )));
    }
    Ok(s.to_string())
}

impl Config {
    /// Parse the bytes on stdin. Decoding failures are CNI code 6.
    pub fn from_bytes(bytes: &[u8]) -> Result<Config> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| Config::not_json(&e))?;
        Config::from_owned(value)
    }

    /// The error for a configuration that is not JSON at all.
    pub fn not_json(e: &serde_json::Error) -> Error {
        Error::new(
            code::DECODE,
            format!("network configuration is not valid JSON: {e}"),
        )
    }

    pub fn from_value(value: &Value) -> Result<Config> {
        let mut config = Config::read(value)?;
        config.prev_result = value.get("prevResult").filter(|v| !v.is_null()).cloned();
        Ok(config)
    }

    /// [`Config::from_value`] of a document given away: its `prevResult`,
    /// most of a chained plugin's input, is moved into the config, not
    /// copied.
    pub fn from_owned(mut value: Value) -> Result<Config> {
        let mut config = Config::read(&value)?;
        config.prev_result = value
            .as_object_mut()
            .and_then(|root| root.remove("prevResult"))
            .filter(|v| !v.is_null());
        Ok(config)
    }

    /// Everything but `prevResult`, which is checked (an object) but left
    /// where it is.
    fn read(value: &Value) -> Result<Config> {
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
        if let Some(problem) = too_long(network_name, MAX_NETWORK_NAME) {
            return Err(network.err(format!(
                "the network name {problem} (it names gwsteer's state directory, files and nftables table)"
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
            Some(v) => steering::parse_policies(&v)?,
        };
        let vrf = match root.get("vrf") {
            None => None,
            Some(v) => {
                let tables: Vec<(String, u32)> = steering
                    .iter()
                    .filter_map(|p| Some((p.name.clone(), p.table?)))
                    .collect();
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
                gw.check_role(pod_args.role.unwrap_or(gw.role), &v.path.to_string())?;
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
            steering::vrf_mark_conflicts(&steering, vrf)?;
        }
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
            prev_result: None,
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
        return Err(v.err(format!("{s:?} is not an absolute path")));
    }
    if s.contains('\0') {
        return Err(v.err(format!("{s:?} holds a NUL, which no path can")));
    }
    if let Some(problem) = too_long(s, MAX_PATH) {
        return Err(v.err(format!("the path {problem}")));
    }
    Ok(PathBuf::from(s))
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
