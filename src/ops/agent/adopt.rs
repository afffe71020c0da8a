//! Adoption: attachments of gwsteer's networks that the runtime made while
//! gwsteer was not in the chain (pods started before the install, or while
//! the primary had rewritten its conflist without gwsteer) are steered as
//! an ADD would steer them.
//!
//! The runtime's record of them is libcni's cache
//! (`/var/lib/cni/results/<network>-<containerID>-<ifname>`, written by
//! containerd, CRI-O and podman after a conflist's ADD succeeded): JSON with
//! `"kind": "cniCacheV1"`, `containerId`, `ifName`, `networkName`, `config`
//! (the conflist's bytes, base64), `cniArgs` (`[[K, V], …]`),
//! `capabilityArgs` and `result` (the chain's final result). libcni 1.1
//! does not keep the network namespace path; the result does, as the
//! `sandbox` of the pod's interface (the CNI spec: "the full filesystem path
//! to the network namespace"), which bridge, ptp, macvlan and the other
//! primaries fill in. An entry whose result names no sandbox for its
//! interface is skipped with a log line.
//!
//! The configuration it is adopted with is the conflist it was made with
//! when that chains gwsteer; else (a pod started before the install, or
//! while the primary's file had lost gwsteer) its network's conflist in the
//! CNI conf dir today, found by name as libcni finds it, when that chains
//! gwsteer. An entry is adopted when that configuration chains gwsteer with
//! this agent's state dir, gwsteer's store of that network has no record of the
//! attachment (a record, steered or not, means an ADD reached gwsteer), and
//! its namespace exists. The ADD is this binary run as the CNI plugin, with
//! the environment and stdin libcni would give it: the plugin's object
//! with `name`, `cniVersion`, `runtimeConfig` (capabilities) and, as
//! `prevResult`, the cached result. So the record, the log line in
//! `logFile` and every object are those of an ADD; DEL and GC treat the
//! attachment like any other.
//!
//! A DEL that runs while adopting (gwsteer's DEL first, then the primary's,
//! then libcni removes the entry) could leave the adopted record behind: if
//! the cache entry is gone once the ADD returns, the adoption is undone by a
//! DEL run the same way; a record left anyway is swept with its namespace.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value, json};

use crate::config::DEFAULT_STATE_DIR;
use crate::engine::LOCK_WAIT;
use crate::kernel::netns::netns_alive;
use crate::store::{AttachmentId, Store};

/// libcni's default cache directory.
pub const DEFAULT_CNI_CACHE_DIR: &str = "/var/lib/cni/results";
/// The runtimes' default CNI configuration directory.
pub const DEFAULT_CNI_CONF_DIR: &str = "/etc/cni/net.d";

/// How long an adopting ADD (or its undoing DEL) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// One libcni cache entry, as far as adoption needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    pub container_id: String,
    pub ifname: String,
    pub network: String,
    /// The conflist (or single network config) the attachment was made with.
    pub config: Value,
    pub cni_args: Vec<(String, String)>,
    pub capability_args: Map<String, Value>,
    pub result: Value,
}

/// Reads one cache file's text; `Err` says why it is not one adoption can use.
pub fn parse_cache(text: &str) -> Result<Cached, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if v["kind"] != "cniCacheV1" {
        return Err(format!("kind {} is not cniCacheV1", v["kind"]));
    }
    let s = |k: &str| {
        v[k].as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("{k}: missing"))
    };
    let raw = base64(v["config"].as_str().ok_or("config: missing")?).ok_or("config: not base64")?;
    let config: Value =
        serde_json::from_slice(&raw).map_err(|e| format!("config: not JSON: {e}"))?;
    let cni_args = v["cniArgs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|kv| Some((kv[0].as_str()?.to_string(), kv[1].as_str()?.to_string())))
        .collect();
    Ok(Cached {
        container_id: s("containerId")?,
        ifname: s("ifName")?,
        network: s("networkName")?,
        config,
        cni_args,
        capability_args: v["capabilityArgs"].as_object().cloned().unwrap_or_default(),
        result: v
            .get("result")
            .filter(|r| r.is_object())
            .cloned()
            .ok_or("result: missing")?,
    })
}

/// Standard base64 with padding (Go's `[]byte` in JSON).
fn base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// gwsteer's plugin object in a conflist (or the config itself when it is a
/// single gwsteer network config), and the conflist's `cniVersion`.
pub fn gwsteer_plugin(config: &Value) -> Option<(&Value, &str)> {
    let version = config["cniVersion"].as_str().unwrap_or("");
    match config["plugins"].as_array() {
        Some(plugins) => plugins
            .iter()
            .find(|p| p["type"] == "gwsteer")
            .map(|p| (p, version)),
        None => (config["type"] == "gwsteer").then_some((config, version)),
    }
}

/// The stdin libcni gives a plugin of a list: its object with the list's
/// `name` and `cniVersion`, the capabilities it declares as
/// `runtimeConfig`, and `prevResult`.
pub fn plugin_stdin(cached: &Cached, plugin: &Value, version: &str) -> Value {
    let mut conf = plugin.as_object().cloned().unwrap_or_default();
    conf.insert("name".into(), json!(cached.network));
    if !version.is_empty() {
        conf.insert("cniVersion".into(), json!(version));
    }
    let mut runtime = Map::new();
    if let Some(caps) = plugin["capabilities"].as_object() {
        for (k, on) in caps {
            if on == &json!(true)
                && let Some(arg) = cached.capability_args.get(k)
            {
                runtime.insert(k.clone(), arg.clone());
            }
        }
    }
    if !runtime.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    conf.insert("prevResult".into(), cached.result.clone());
    Value::Object(conf)
}

/// The pod's namespace: the `sandbox` of the result's interface `ifname`.
pub fn sandbox(result: &Value, ifname: &str) -> Option<PathBuf> {
    result["interfaces"]
        .as_array()?
        .iter()
        .find(|i| i["name"] == ifname && i["sandbox"].as_str().is_some_and(|s| !s.is_empty()))
        .and_then(|i| i["sandbox"].as_str())
        .map(PathBuf::from)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    a == b || canon(a) == canon(b)
}

/// What the adoption pass decided for one entry.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not gwsteer's (no gwsteer in the chain): nothing to say.
    NotOurs,
    /// Skipped, and why.
    Skip(String),
    /// Steer it: the pod's namespace.
    Adopt(PathBuf),
}

/// Judges an entry without the store: chain, state dir, namespace.
pub fn judge(cached: &Cached, state_dir: &Path) -> Decision {
    let Some((plugin, _)) = gwsteer_plugin(&cached.config) else {
        return Decision::NotOurs;
    };
    let theirs = plugin["stateDir"].as_str().unwrap_or(DEFAULT_STATE_DIR);
    if !same_dir(Path::new(theirs), state_dir) {
        return Decision::Skip(format!(
            "its gwsteer keeps state in {theirs}, this agent in {}",
            state_dir.display()
        ));
    }
    let Some(netns) = sandbox(&cached.result, &cached.ifname) else {
        return Decision::Skip(format!(
            "the cached result names no sandbox (network namespace) for {}",
            cached.ifname
        ));
    };
    if !netns_alive(&netns) {
        return Decision::Skip(format!("its network namespace {} is gone", netns.display()));
    }
    Decision::Adopt(netns)
}

/// Whether gwsteer's store of `network` has a record of the attachment
/// (its lock held just for the read).
fn recorded(state_dir: &Path, network: &str, id: &AttachmentId) -> crate::error::Result<bool> {
    match Store::open_existing(state_dir, network, LOCK_WAIT)? {
        None => Ok(false),
        Some(store) => Ok(store.get(id).map(|r| r.is_some()).unwrap_or(true)),
    }
}

/// The network configurations of a CNI conf dir by network name, as
/// libcni finds a network by name: files ending `.conf`, `.conflist` or
/// `.json`, in lexical order, the first of a name wins.
pub fn network_confs(conf_dir: &Path) -> BTreeMap<String, (PathBuf, Value)> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(conf_dir) else {
        return out;
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "conf" || e == "conflist" || e == "json")
        })
        .collect();
    files.sort();
    for file in files {
        let Some(conf) = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        else {
            continue;
        };
        if let Some(name) = conf["name"].as_str() {
            out.entry(name.to_string()).or_insert((file, conf));
        }
    }
    out
}

/// The configuration an entry is adopted with: the conflist it was made
/// with if that chains gwsteer, else (a pod started before gwsteer was
/// installed, or while the primary's file had lost it) its network's
/// conflist in the conf dir today, if that chains gwsteer; and where it
/// came from.
pub fn effective(
    cached: &Cached,
    confs: &BTreeMap<String, (PathBuf, Value)>,
) -> (Value, Option<PathBuf>) {
    if gwsteer_plugin(&cached.config).is_some() {
        return (cached.config.clone(), None);
    }
    match confs.get(&cached.network) {
        Some((file, conf)) if gwsteer_plugin(conf).is_some() => (conf.clone(), Some(file.clone())),
        _ => (cached.config.clone(), None),
    }
}

fn fingerprint(v: &Value) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.to_string().hash(&mut h);
    h.finish()
}

/// Entries already judged, by file, its modification time and the
/// configuration it was judged with, so that a skip is logged once and not
/// every round, and an entry is judged again when its network's conflist
/// comes to chain gwsteer.
pub struct Adopter {
    judged: BTreeMap<PathBuf, (SystemTime, u64)>,
    conf_dir: Option<PathBuf>,
}

impl Adopter {
    /// `conf_dir`: where to find today's conflist of a network whose cached
    /// one does not chain gwsteer (none: such entries are not adopted).
    pub fn new(conf_dir: Option<PathBuf>) -> Adopter {
        Adopter {
            judged: BTreeMap::new(),
            conf_dir,
        }
    }

    /// One pass over `cache_dir`. Returns one line per adoption (or failed
    /// one), also logged.
    pub fn pass(&mut self, cache_dir: &Path, state_dir: &Path) -> Vec<String> {
        let mut lines = Vec::new();
        // What the cache says is run as root: only root may have written it.
        match std::fs::symlink_metadata(cache_dir) {
            Ok(meta) if !root_only(&meta) || !meta.is_dir() => {
                log::warn!(
                    "not adopting from {}: not a directory only root can write to",
                    cache_dir.display()
                );
                return lines;
            }
            _ => {}
        }
        let confs = self
            .conf_dir
            .as_deref()
            .map(network_confs)
            .unwrap_or_default();
        let entries = match std::fs::read_dir(cache_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return lines,
            Err(e) => {
                log::warn!("cannot read the CNI cache {}: {e}", cache_dir.display());
                return lines;
            }
        };
        let mut present = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            // Not followed through a link; only root's own files.
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            if !root_only(&meta) {
                log::warn!(
                    "CNI cache {}: not root's, or writable by others: not used",
                    path.display()
                );
                continue;
            }
            present.push(path.clone());
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let mut cached = match parse_cache(&text) {
                Ok(c) => c,
                Err(why) => {
                    log::debug!("CNI cache {}: not used ({why})", path.display());
                    continue;
                }
            };
            let (config, from) = effective(&cached, &confs);
            cached.config = config;
            let seen = (mtime, fingerprint(&cached.config));
            if self.judged.get(&path) == Some(&seen) {
                continue;
            }
            let (line, settled) = one(&path, &cached, from.as_deref(), state_dir);
            lines.extend(line);
            // Failures are tried again next pass; the rest are settled.
            if settled {
                self.judged.insert(path, seen);
            }
        }
        self.judged.retain(|p, _| present.contains(p));
        lines
    }
}

/// Owned by root and writable by nobody else.
pub(super) fn root_only(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.uid() == 0 && meta.mode() & 0o022 == 0
}

/// One entry, `cached` with the configuration to adopt it with (`from` a
/// conf dir file when not its own): the line to report, if any, and whether
/// the entry is settled (not to be looked at again until it or its
/// configuration changes).
fn one(
    path: &Path,
    cached: &Cached,
    from: Option<&Path>,
    state_dir: &Path,
) -> (Option<String>, bool) {
    let what = format!(
        "{}/{} of network {}",
        cached.container_id, cached.ifname, cached.network
    );
    let netns = match judge(cached, state_dir) {
        Decision::NotOurs => return (None, true),
        Decision::Skip(why) => {
            log::info!("not adopting {what} ({}): {why}", path.display());
            return (None, true);
        }
        Decision::Adopt(netns) => netns,
    };
    let id = AttachmentId {
        container_id: cached.container_id.clone(),
        ifname: cached.ifname.clone(),
    };
    match recorded(state_dir, &cached.network, &id) {
        Ok(false) => {}
        Ok(true) => return (None, true),
        Err(e) => return (Some(report(format!("cannot adopt {what}: {e}"))), false),
    }
    let Some((plugin, version)) = gwsteer_plugin(&cached.config) else {
        return (None, true);
    };
    let stdin = plugin_stdin(cached, plugin, version);
    let started = Instant::now();
    match call("ADD", cached, &netns, &stdin) {
        Ok(_) => {}
        Err(e) => {
            let line = report(format!("cannot adopt {what}: ADD failed: {e}"));
            return (Some(line), false);
        }
    }
    if !path.exists() {
        // Deleted while we adopted: undo it the same way.
        let undo = call("DEL", cached, &netns, &stdin);
        let line = report(format!(
            "adopted {what} while the runtime deleted it; undone by DEL: {}",
            undo.map_or_else(|e| e, |_| "ok".into())
        ));
        return (Some(line), true);
    }
    let with = match from {
        Some(file) => format!(
            "; its cached conflist has no gwsteer, steered with the gwsteer entry of {}",
            file.display()
        ),
        None => String::new(),
    };
    let line = format!(
        "adopted {what} (netns {}, from {}) in {} ms: steered as its ADD would have{with}",
        netns.display(),
        path.display(),
        started.elapsed().as_millis()
    );
    log::info!("{line}");
    (Some(line), true)
}

fn report(line: String) -> String {
    log::warn!("{line}");
    line
}

/// This binary run as the CNI plugin for `command`, with the spec's
/// environment; its stdout (the result) or the error's text.
fn call(command: &str, cached: &Cached, netns: &Path, stdin: &Value) -> Result<String, String> {
    let args: Vec<String> = cached
        .cni_args
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let exe = PathBuf::from("/proc/self/exe");
    let path = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("/opt/cni/bin"));
    let mut cmd = Command::new(&exe);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CNI_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &cached.container_id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", &cached.ifname)
        .env("CNI_ARGS", args.join(";"))
        .env("CNI_PATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // Warnings and errors of the ADD go where the agent's go.
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().map_err(|e| format!("starting gwsteer: {e}"))?;
    let bytes = serde_json::to_vec(stdin).map_err(|e| e.to_string())?;
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(&bytes);
    }
    let mut stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_string(&mut out);
        }
        out
    });
    let deadline = Instant::now() + CALL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {} s", CALL_TIMEOUT.as_secs()));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    let out = reader.join().unwrap_or_default();
    if status.success() {
        return Ok(out);
    }
    let msg = serde_json::from_str::<Value>(&out)
        .ok()
        .and_then(|v| v["msg"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("exit {status}: {}", out.trim()));
    Err(msg)
}
