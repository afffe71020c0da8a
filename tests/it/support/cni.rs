//! Running CNI plugins the way a runtime does, inside a "node" namespace.
//!
//! - [`invoke`]: one plugin, one command, the spec's environment and stdin.
//! - [`conflist_add`], [`conflist_check`], [`conflist_del`], [`conflist_gc`],
//!   [`conflist_status`]: a small conflist runner with libcni's semantics, for
//!   cniVersion 1.1.0 conflists that Debian's libcni (1.1.2, up to 1.0.0)
//!   cannot run. For conflists up to 1.0.0 prefer the real thing: [`super::libcni`].
//! - [`bridge_conflist`]: the reference bridge + host-local primary, optionally
//!   followed by gwsteer.
//!
//! Debian's reference plugins (1.1.1) speak CNI up to 1.0.0 and refuse a 1.1.0
//! config. A plugin object may therefore carry `"testOnlyCniVersion": "1.0.0"`
//! ([`SHIM_VERSION_KEY`]): this runner removes the key and runs that plugin at
//! that version, relabelling results between 1.0.0 and 1.1.0 (same schema), as
//! a 1.1.0-capable bridge would have answered. GC and STATUS skip such plugins.
//! [`bridge_conflist`] sets it on the bridge for cniVersion 1.1.0.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

/// Where Debian's `containernetworking-plugins` puts the reference plugins.
pub const REFERENCE_PLUGIN_DIR: &str = "/usr/lib/cni";

/// Plugin-object key naming the CNI version this test runner uses for that plugin.
pub const SHIM_VERSION_KEY: &str = "testOnlyCniVersion";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The gwsteer binary cargo built for these tests.
pub fn gwsteer_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gwsteer"))
}

/// `CNI_PATH` for tests: the gwsteer binary's directory, then the reference plugins.
pub fn cni_path() -> String {
    let bin = gwsteer_bin();
    let dir = bin.parent().expect("gwsteer binary has a parent dir");
    format!("{}:{REFERENCE_PLUGIN_DIR}", dir.display())
}

/// One plugin invocation: the spec's environment plus the config on stdin.
#[derive(Debug, Clone)]
pub struct CniCall {
    /// `CNI_COMMAND`: ADD, DEL, CHECK, GC, STATUS, VERSION.
    pub command: String,
    /// `CNI_CONTAINERID` (left unset when empty).
    pub container_id: String,
    /// `CNI_NETNS`; `None` leaves it unset.
    pub netns_path: Option<String>,
    /// `CNI_IFNAME` (left unset when empty).
    pub ifname: String,
    /// `CNI_ARGS`; `None` leaves it unset.
    pub args: Option<String>,
    /// `CNI_PATH`.
    pub path: String,
    /// The network configuration, written to stdin.
    pub config: Value,
}

impl CniCall {
    /// A call with `CNI_PATH` = [`cni_path`], no netns, no CNI_ARGS.
    pub fn new(command: &str, container_id: &str, ifname: &str, config: Value) -> CniCall {
        CniCall {
            command: command.to_string(),
            container_id: container_id.to_string(),
            netns_path: None,
            ifname: ifname.to_string(),
            args: None,
            path: cni_path(),
            config,
        }
    }

    pub fn netns(mut self, netns_path: &str) -> CniCall {
        self.netns_path = Some(netns_path.to_string());
        self
    }

    pub fn cni_args(mut self, args: &str) -> CniCall {
        self.args = Some(args.to_string());
        self
    }

    pub fn path(mut self, path: &str) -> CniCall {
        self.path = path.to_string();
        self
    }
}

/// What a plugin (or the libcni driver, or the CLI) did.
#[derive(Debug, Clone)]
pub struct CniOutcome {
    /// The exit code; 128+signal if killed by a signal; -1 if it could not run or timed out.
    pub exit_code: i32,
    /// stdout parsed as JSON, if it was JSON.
    pub stdout_json: Option<Value>,
    pub stdout_raw: String,
    pub stderr: String,
}

impl CniOutcome {
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }

    /// The CNI error code (`code` of the error JSON on stdout), if any.
    pub fn error_code(&self) -> Option<u64> {
        self.stdout_json.as_ref()?.get("code")?.as_u64()
    }

    /// The CNI error message (`msg`), if any.
    pub fn error_msg(&self) -> Option<&str> {
        self.stdout_json.as_ref()?.get("msg")?.as_str()
    }

    /// Panics (showing stdout and stderr) unless the call succeeded; returns stdout's JSON
    /// (`Value::Null` when stdout was empty).
    pub fn expect_ok(&self, what: &str) -> Value {
        assert!(self.success(), "{what} failed:\n{self}");
        self.stdout_json.clone().unwrap_or(Value::Null)
    }

    /// Panics unless the call failed with a CNI error JSON; returns its code.
    pub fn expect_error(&self, what: &str) -> u64 {
        assert!(!self.success(), "{what} unexpectedly succeeded:\n{self}");
        self.error_code()
            .unwrap_or_else(|| panic!("{what} failed without a CNI error on stdout:\n{self}"))
    }

    fn synthetic(msg: String) -> CniOutcome {
        CniOutcome {
            exit_code: -1,
            stdout_json: None,
            stdout_raw: String::new(),
            stderr: msg,
        }
    }
}

impl std::fmt::Display for CniOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "exit code: {}", self.exit_code)?;
        writeln!(f, "stdout: {}", self.stdout_raw.trim_end())?;
        write!(f, "stderr: {}", self.stderr.trim_end())
    }
}

/// Runs `cmd` with `stdin`, collecting stdout/stderr; kills it after `timeout`.
pub(crate) fn run_captured(mut cmd: Command, stdin: Vec<u8>, timeout: Duration) -> CniOutcome {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return CniOutcome::synthetic(format!("cannot run {cmd:?}: {e}")),
    };
    let mut child_in = child.stdin.take().expect("piped stdin");
    let writer = thread::spawn(move || {
        // A plugin may exit without reading stdin: a broken pipe is not our error.
        let _ = child_in.write_all(&stdin);
    });
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
    };
    let _ = writer.join();
    let stdout_raw = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let mut stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    let exit_code = match status {
        Some(s) => s
            .code()
            .or_else(|| s.signal().map(|sig| 128 + sig))
            .unwrap_or(-1),
        None => {
            stderr.push_str(&format!("\n[test harness: killed after {timeout:?}]"));
            -1
        }
    };
    let trimmed = stdout_raw.trim();
    let stdout_json = if trimmed.is_empty() {
        None
    } else {
        serde_json::from_str(trimmed).ok()
    };
    CniOutcome {
        exit_code,
        stdout_json,
        stdout_raw,
        stderr,
    }
}

/// A command running `program` inside `node_ns` with no inherited `CNI_*` variables.
fn node_command(node_ns: &str, program: &Path) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", node_ns]).arg(program);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CNI_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs `plugin` inside netns `node_ns` (`ip netns exec <node> <plugin>`) as a
/// runtime would: `CNI_*` environment from `call`, config on stdin. 120 s timeout.
pub fn invoke(node_ns: &str, plugin: &Path, call: &CniCall) -> CniOutcome {
    invoke_with_timeout(node_ns, plugin, call, DEFAULT_TIMEOUT)
}

pub fn invoke_with_timeout(
    node_ns: &str,
    plugin: &Path,
    call: &CniCall,
    timeout: Duration,
) -> CniOutcome {
    let stdin = serde_json::to_vec(&call.config).expect("serialize config");
    invoke_raw_with_timeout(node_ns, plugin, call, stdin, timeout)
}

/// Like [`invoke`], but `stdin` is sent as given instead of `call.config`
/// (malformed JSON, an empty stdin…).
pub fn invoke_raw(node_ns: &str, plugin: &Path, call: &CniCall, stdin: &[u8]) -> CniOutcome {
    invoke_raw_with_timeout(node_ns, plugin, call, stdin.to_vec(), DEFAULT_TIMEOUT)
}

fn invoke_raw_with_timeout(
    node_ns: &str,
    plugin: &Path,
    call: &CniCall,
    stdin: Vec<u8>,
    timeout: Duration,
) -> CniOutcome {
    let mut cmd = node_command(node_ns, plugin);
    cmd.env("CNI_COMMAND", &call.command)
        .env("CNI_PATH", &call.path);
    if !call.container_id.is_empty() {
        cmd.env("CNI_CONTAINERID", &call.container_id);
    }
    if !call.ifname.is_empty() {
        cmd.env("CNI_IFNAME", &call.ifname);
    }
    if let Some(netns) = &call.netns_path {
        cmd.env("CNI_NETNS", netns);
    }
    if let Some(args) = &call.args {
        cmd.env("CNI_ARGS", args);
    }
    run_captured(cmd, stdin, timeout)
}

/// Runs the gwsteer operator CLI (no `CNI_COMMAND`) inside `node_ns`.
pub fn gwsteer_cli(node_ns: &str, args: &[&str]) -> CniOutcome {
    let mut cmd = node_command(node_ns, &gwsteer_bin());
    cmd.args(args);
    run_captured(cmd, Vec::new(), DEFAULT_TIMEOUT)
}

/// `a.b.c` as a comparable tuple (missing parts are 0).
fn version_tuple(v: &str) -> (u32, u32, u32) {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

fn at_least(v: &str, min: &str) -> bool {
    version_tuple(v) >= version_tuple(min)
}

fn list_version(conflist: &Value) -> String {
    conflist["cniVersion"]
        .as_str()
        .unwrap_or("0.1.0")
        .to_string()
}

fn plugins(conflist: &Value) -> &Vec<Value> {
    conflist["plugins"]
        .as_array()
        .unwrap_or_else(|| panic!("conflist without a plugins array: {conflist}"))
}

/// Results of 1.0.0 and later share one schema: relabel instead of converting.
fn relabel(result: &Value, version: &str) -> Value {
    let mut r = result.clone();
    let from = r["cniVersion"].as_str().unwrap_or("").to_string();
    if from != version && at_least(&from, "1.0.0") && at_least(version, "1.0.0") {
        r["cniVersion"] = json!(version);
    }
    r
}

/// The stdin config of plugin `index` as libcni builds it: the plugin object
/// with `name` and `cniVersion` from the list and `prevResult` if given.
/// Returns the config, the plugin type and the version it runs at (see
/// [`SHIM_VERSION_KEY`]).
pub fn plugin_config(
    conflist: &Value,
    index: usize,
    prev_result: Option<&Value>,
) -> (Value, String, String) {
    let list_version = list_version(conflist);
    let mut obj: Map<String, Value> = plugins(conflist)[index]
        .as_object()
        .unwrap_or_else(|| panic!("plugin {index} is not an object"))
        .clone();
    let version = match obj.remove(SHIM_VERSION_KEY) {
        Some(Value::String(v)) => v,
        Some(other) => panic!("{SHIM_VERSION_KEY} must be a string, got {other}"),
        None => list_version,
    };
    let plugin_type = obj
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("plugin {index} has no type"))
        .to_string();
    obj.insert("name".into(), conflist["name"].clone());
    obj.insert("cniVersion".into(), json!(version));
    if let Some(prev) = prev_result {
        obj.insert("prevResult".into(), relabel(prev, &version));
    }
    (Value::Object(obj), plugin_type, version)
}

fn find_plugin(cni_path: &str, plugin_type: &str) -> Result<PathBuf, CniOutcome> {
    cni_path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(plugin_type))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniOutcome::synthetic(format!(
                "failed to find plugin {plugin_type:?} in path [{cni_path}]"
            ))
        })
}

#[allow(clippy::too_many_arguments)]
fn run_plugin(
    node_ns: &str,
    conflist: &Value,
    index: usize,
    command: &str,
    container_id: &str,
    netns_path: Option<&str>,
    ifname: &str,
    cni_args: Option<&str>,
    prev_result: Option<&Value>,
) -> Result<(CniOutcome, String), CniOutcome> {
    let (config, plugin_type, version) = plugin_config(conflist, index, prev_result);
    let path = cni_path();
    let plugin = find_plugin(&path, &plugin_type)?;
    let call = CniCall {
        command: command.to_string(),
        container_id: container_id.to_string(),
        netns_path: netns_path.map(str::to_string),
        ifname: ifname.to_string(),
        // libcni always sets CNI_ARGS, empty when there are none.
        args: Some(cni_args.unwrap_or("").to_string()),
        path,
        config,
    };
    let outcome = invoke(node_ns, &plugin, &call);
    if !outcome.success() {
        let mut failed = outcome;
        failed.stderr = format!(
            "[plugin {index} ({plugin_type}) failed ({command})]\n{}",
            failed.stderr
        );
        return Err(failed);
    }
    Ok((outcome, version))
}

/// ADD through every plugin in order, each getting the previous plugin's result
/// as `prevResult`; returns the last result (in the list's version), or the
/// failing plugin's outcome. Like libcni, a failed ADD is not rolled back.
pub fn conflist_add(
    node_ns: &str,
    conflist: &Value,
    container_id: &str,
    netns_path: &str,
    ifname: &str,
    cni_args: Option<&str>,
) -> Result<Value, CniOutcome> {
    let list_version = list_version(conflist);
    let mut prev: Option<Value> = None;
    for index in 0..plugins(conflist).len() {
        let (outcome, _) = run_plugin(
            node_ns,
            conflist,
            index,
            "ADD",
            container_id,
            Some(netns_path),
            ifname,
            cni_args,
            prev.as_ref(),
        )?;
        let Some(result) = outcome.stdout_json.clone() else {
            let mut bad = outcome;
            bad.stderr = format!(
                "[plugin {index} printed no JSON result on ADD]\n{}",
                bad.stderr
            );
            return Err(bad);
        };
        prev = Some(relabel(&result, &list_version));
    }
    Ok(prev.unwrap_or(Value::Null))
}

/// CHECK through every plugin in order with the cached ADD result as
/// `prevResult`. Like libcni: an error for cniVersion < 0.4.0, nothing when
/// `disableCheck` is true.
pub fn conflist_check(
    node_ns: &str,
    conflist: &Value,
    container_id: &str,
    netns_path: &str,
    ifname: &str,
    cni_args: Option<&str>,
    prev_result: &Value,
) -> Result<(), CniOutcome> {
    let version = list_version(conflist);
    if !at_least(&version, "0.4.0") {
        return Err(CniOutcome::synthetic(format!(
            "configuration version {version:?} does not support the CHECK command"
        )));
    }
    if conflist["disableCheck"] == json!(true) {
        return Ok(());
    }
    for index in 0..plugins(conflist).len() {
        run_plugin(
            node_ns,
            conflist,
            index,
            "CHECK",
            container_id,
            Some(netns_path),
            ifname,
            cni_args,
            Some(prev_result),
        )?;
    }
    Ok(())
}

/// DEL through the plugins in reverse order, stopping at the first failure.
/// `prev_result` (the cached ADD result) is passed only for cniVersion ≥ 0.4.0,
/// as libcni does. `netns_path` may be absent, as the spec allows for DEL.
pub fn conflist_del(
    node_ns: &str,
    conflist: &Value,
    container_id: &str,
    netns_path: Option<&str>,
    ifname: &str,
    cni_args: Option<&str>,
    prev_result: Option<&Value>,
) -> Result<(), CniOutcome> {
    let prev = if at_least(&list_version(conflist), "0.4.0") {
        prev_result
    } else {
        None
    };
    for index in (0..plugins(conflist).len()).rev() {
        run_plugin(
            node_ns,
            conflist,
            index,
            "DEL",
            container_id,
            netns_path,
            ifname,
            cni_args,
            prev,
        )?;
    }
    Ok(())
}

fn speaks_1_1(conflist: &Value, index: usize) -> bool {
    let obj = &plugins(conflist)[index];
    let version = obj[SHIM_VERSION_KEY]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| list_version(conflist));
    at_least(&version, "1.1.0")
}

/// GC (CNI 1.1.0): every plugin gets `cni.dev/valid-attachments` (pairs of
/// container id and ifname); all plugins run, failures are collected. Nothing
/// happens for cniVersion < 1.1.0 or `disableGC`, as in libcni. (libcni also
/// DELs cached attachments that are not valid; this runner keeps no cache.)
pub fn conflist_gc(
    node_ns: &str,
    conflist: &Value,
    valid_attachments: &[(&str, &str)],
) -> Result<(), Vec<CniOutcome>> {
    if !at_least(&list_version(conflist), "1.1.0") || conflist["disableGC"] == json!(true) {
        return Ok(());
    }
    let valid: Vec<Value> = valid_attachments
        .iter()
        .map(|(id, ifname)| json!({"containerID": id, "ifname": ifname}))
        .collect();
    let mut failures = Vec::new();
    for index in 0..plugins(conflist).len() {
        if !speaks_1_1(conflist, index) {
            continue;
        }
        let (mut config, plugin_type, _) = plugin_config(conflist, index, None);
        config["cni.dev/valid-attachments"] = json!(valid);
        let outcome = find_plugin(&cni_path(), &plugin_type)
            .map(|plugin| invoke(node_ns, &plugin, &CniCall::new("GC", "", "", config)));
        match outcome {
            Ok(o) if o.success() => {}
            Ok(o) | Err(o) => failures.push(o),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

/// STATUS (CNI 1.1.0) through every plugin, stopping at the first failure;
/// nothing for cniVersion < 1.1.0, as in libcni.
pub fn conflist_status(node_ns: &str, conflist: &Value) -> Result<(), CniOutcome> {
    if !at_least(&list_version(conflist), "1.1.0") {
        return Ok(());
    }
    for index in 0..plugins(conflist).len() {
        if !speaks_1_1(conflist, index) {
            continue;
        }
        let (config, plugin_type, _) = plugin_config(conflist, index, None);
        let plugin = find_plugin(&cni_path(), &plugin_type)?;
        let outcome = invoke(node_ns, &plugin, &CniCall::new("STATUS", "", "", config));
        if !outcome.success() {
            return Err(outcome);
        }
    }
    Ok(())
}

/// A conflist with the reference `bridge` (gateway on the bridge, no masquerade)
/// and `host-local` IPAM, one range per subnet, a default route per family, and
/// host-local state in `data_dir` (never the global /var/lib/cni). `gwsteer` is
/// appended as the second plugin unless it is `Value::Null`. For cniVersion
/// 1.1.0 the bridge runs at 1.0.0 (see [`SHIM_VERSION_KEY`]).
pub fn bridge_conflist(
    name: &str,
    cni_version: &str,
    bridge: &str,
    subnets: &[&str],
    data_dir: &Path,
    gwsteer: Value,
) -> Value {
    let ranges: Vec<Value> = subnets.iter().map(|s| json!([{ "subnet": s }])).collect();
    let mut routes = Vec::new();
    if subnets.iter().any(|s| !s.contains(':')) {
        routes.push(json!({"dst": "0.0.0.0/0"}));
    }
    if subnets.iter().any(|s| s.contains(':')) {
        routes.push(json!({"dst": "::/0"}));
    }
    let mut bridge_plugin = json!({
        "type": "bridge",
        "bridge": bridge,
        "isGateway": true,
        "ipMasq": false,
        "ipam": {
            "type": "host-local",
            "ranges": ranges,
            "routes": routes,
            "dataDir": data_dir,
        },
    });
    if at_least(cni_version, "1.1.0") {
        bridge_plugin[SHIM_VERSION_KEY] = json!("1.0.0");
    }
    let mut plugins = vec![bridge_plugin];
    if !gwsteer.is_null() {
        plugins.push(gwsteer);
    }
    json!({
        "cniVersion": cni_version,
        "name": name,
        "plugins": plugins,
    })
}

/// A gwsteer plugin object with a per-test `stateDir`, plus the keys of `extra` (an object).
pub fn gwsteer_plugin(state_dir: &Path, extra: Value) -> Value {
    let mut obj = json!({"type": "gwsteer", "stateDir": state_dir});
    if let Value::Object(map) = extra {
        for (k, v) in map {
            obj[k] = v;
        }
    }
    obj
}

/// `CNI_ARGS` as containerd/CRI-O send them for a Kubernetes pod. `IgnoreUnknown=1`
/// matters: without it host-local rejects the K8S_* keys ("unknown args", code 999).
pub fn k8s_cni_args(namespace: &str, pod: &str, container_id: &str) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={pod};\
         K8S_POD_INFRA_CONTAINER_ID={container_id}"
    )
}

/// Writes `value` as pretty JSON to `path` (for the libcni driver, CLI configs…).
pub fn write_json(path: &Path, value: &Value) {
    let text = serde_json::to_string_pretty(value).expect("serialize JSON");
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
