//! The CNI protocol: environment, stdin, verbs, and what goes to stdout.
//! Nothing but the result or error JSON is ever written to stdout.

pub mod names;
pub mod reader;
pub mod result;
pub mod version;

use std::io::Write;
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::error::{Error, Result, code};
use version::CniVersion;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Gc,
    Status,
    Version,
}

impl Command {
    pub fn parse(s: &str) -> Result<Command> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            other => {
                return Err(Error::new(
                    code::INVALID_ENV,
                    format!(
                        "CNI_COMMAND: \"{other}\" is not one of ADD, DEL, CHECK, GC, STATUS, VERSION"
                    ),
                ));
            }
        })
    }

    /// The oldest spec version that has this verb.
    pub fn since(self) -> CniVersion {
        match self {
            Command::Check => CniVersion::V0_4_0,
            Command::Gc | Command::Status => CniVersion::V1_1_0,
            _ => CniVersion::V0_3_0,
        }
    }
}

/// The per-call environment of a CNI invocation.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub container_id: String,
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn required(name: &str) -> Result<String> {
    var(name).ok_or_else(|| Error::new(code::INVALID_ENV, format!("{name}: required")))
}

impl Env {
    /// Read the variables a verb needs. ADD and CHECK need the container id,
    /// netns and interface; DEL needs id and interface (a vanished netns is
    /// normal there).
    pub fn from_process(cmd: Command) -> Result<Env> {
        let container_id = required("CNI_CONTAINERID")?;
        if !names::valid_cni_name(&container_id) {
            return Err(Error::new(
                code::INVALID_ENV,
                format!(
                    "CNI_CONTAINERID: {container_id:?} must be letters, digits, '_', '.', '-', starting with a letter or digit"
                ),
            ));
        }
        if let Some(problem) = names::too_long(&container_id, names::MAX_CONTAINER_ID) {
            return Err(Error::new(
                code::INVALID_ENV,
                format!("CNI_CONTAINERID: the container id {problem} (it names a state file)"),
            ));
        }
        let ifname = required("CNI_IFNAME")?;
        if let Some(problem) = names::ifname_problem(&ifname) {
            return Err(Error::new(
                code::INVALID_ENV,
                format!("CNI_IFNAME: {ifname:?} is not a valid interface name: {problem}"),
            ));
        }
        let netns = match cmd {
            Command::Del => var("CNI_NETNS"),
            _ => Some(required("CNI_NETNS")?),
        }
        .map(PathBuf::from);
        let mut env = Env {
            container_id,
            netns,
            ifname,
            ..Env::default()
        };
        if let Some(args) = var("CNI_ARGS") {
            for pair in args.split(';').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').ok_or_else(|| {
                    Error::new(
                        code::INVALID_ENV,
                        format!("CNI_ARGS: \"{pair}\" is not KEY=VALUE"),
                    )
                })?;
                match k {
                    "K8S_POD_NAMESPACE" => env.pod_namespace = Some(v.to_string()),
                    "K8S_POD_NAME" => env.pod_name = Some(v.to_string()),
                    _ => {}
                }
            }
        }
        Ok(env)
    }

    /// For DEL: why nothing can be recorded for the attachment the
    /// environment names, if so — a container id or interface name over its
    /// limit, which every ADD refuses (so DEL of one succeeds at once).
    pub fn beyond_limits() -> Option<String> {
        if let Some(id) = var("CNI_CONTAINERID").filter(|id| names::valid_cni_name(id))
            && let Some(problem) = names::too_long(&id, names::MAX_CONTAINER_ID)
        {
            return Some(format!("CNI_CONTAINERID: the container id {problem}"));
        }
        match var("CNI_IFNAME") {
            Some(ifname) if ifname.len() > names::MAX_IFNAME => Some(format!(
                "CNI_IFNAME: {ifname:?} is longer than {} bytes",
                names::MAX_IFNAME
            )),
            _ => None,
        }
    }

    pub fn attachment(&self) -> crate::model::AttachmentId {
        crate::model::AttachmentId {
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
        }
    }
}

pub fn error_json(err: &Error, version: Option<CniVersion>) -> Value {
    let mut v = json!({
        "cniVersion": version.unwrap_or(CniVersion::V1_1_0).as_str(),
        "code": err.code,
        "msg": err.msg,
    });
    if !err.details.is_empty() {
        v["details"] = Value::String(err.details.clone());
    }
    v
}

pub fn print(value: &Value) {
    let mut out = std::io::stdout().lock();
    // stdout closed by the caller: nothing useful left to do with the error.
    let _ = serde_json::to_writer(&mut out, value);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

pub fn version_reply(stdin: &[u8]) -> Value {
    let asked = serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .and_then(|s| CniVersion::parse(&s).ok())
        .unwrap_or(CniVersion::V1_1_0);
    json!({
        "cniVersion": asked.as_str(),
        "supportedVersions": version::SUPPORTED.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
    })
}

/// The supported `cniVersion` of the config on stdin (parsed once by the
/// caller), if it has one.
pub fn stdin_version(stdin: Option<&Value>) -> Option<CniVersion> {
    CniVersion::parse(stdin?.get("cniVersion")?.as_str()?).ok()
}
