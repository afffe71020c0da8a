//! The CNI protocol: environment, stdin, verbs, and what goes to stdout.
//! Nothing but the result or error JSON is ever written to stdout.

pub mod result;
pub mod version;

use std::io::{Read, Write};
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::config::{self, Config};
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
    fn since(self) -> CniVersion {
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
        if !config::valid_cni_name(&container_id) {
            return Err(Error::new(
                code::INVALID_ENV,
                format!(
                    "CNI_CONTAINERID: \"{container_id}\" must be letters, digits, '_', '.', '-', starting with a letter or digit"
                ),
            ));
        }
        let ifname = required("CNI_IFNAME")?;
        if !config::valid_ifname(&ifname) {
            return Err(Error::new(
                code::INVALID_ENV,
                format!("CNI_IFNAME: \"{ifname}\" is not a valid interface name"),
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

    pub fn attachment(&self) -> crate::store::AttachmentId {
        crate::store::AttachmentId {
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
        }
    }
}

fn error_json(err: &Error, version: Option<CniVersion>) -> Value {
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

fn print(value: &Value) {
    let mut out = std::io::stdout().lock();
    // stdout closed by the caller: nothing useful left to do with the error.
    let _ = serde_json::to_writer(&mut out, value);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

fn version_reply(stdin: &[u8]) -> Value {
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

/// The supported `cniVersion` of the config on stdin, if it has one.
fn stdin_version(stdin: &[u8]) -> Option<CniVersion> {
    let v = serde_json::from_slice::<Value>(stdin).ok()?;
    CniVersion::parse(v.get("cniVersion")?.as_str()?).ok()
}

/// Run one CNI invocation; returns the process exit code.
pub fn run(command: &str) -> i32 {
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        print(&error_json(
            &Error::io("reading the network configuration from stdin", e),
            None,
        ));
        return 1;
    }
    // Errors found before the config validates still speak its version.
    let asked = stdin_version(&stdin);
    let cmd = match Command::parse(command) {
        Ok(c) => c,
        Err(e) => {
            print(&error_json(&e, asked));
            return 1;
        }
    };
    if cmd == Command::Version {
        print(&version_reply(&stdin));
        return 0;
    }
    let config = match Config::from_bytes(&stdin) {
        Ok(c) => c,
        Err(e) => {
            if cmd == Command::Del {
                // DEL must not be stuck behind a config that no longer parses:
                // undo by record when the store can still be found.
                if let Some(v) = crate::verbs::del::lenient(&stdin) {
                    return finish(v, asked);
                }
            }
            print(&error_json(&e, asked));
            return 1;
        }
    };
    crate::logging::init(config.log_file.as_deref(), config.log_level);
    if config.cni_version < cmd.since() {
        let e = Error::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "{command} needs cniVersion {} or later; the configuration says {}",
                cmd.since(),
                config.cni_version
            ),
        );
        return finish(Err(e), Some(config.cni_version));
    }
    let version = config.cni_version;
    let outcome = match cmd {
        Command::Add => {
            Env::from_process(cmd).and_then(|env| crate::verbs::add::run(&config, &env))
        }
        Command::Del => Env::from_process(cmd)
            .and_then(|env| crate::verbs::del::run(&config, &env))
            .map(|()| Value::Null),
        Command::Check => Env::from_process(cmd)
            .and_then(|env| crate::verbs::check::run(&config, &env))
            .map(|()| Value::Null),
        Command::Gc => crate::verbs::gc::run(&config).map(|()| Value::Null),
        Command::Status => crate::verbs::status::run(&config).map(|()| Value::Null),
        Command::Version => Ok(version_reply(&stdin)),
    };
    finish(outcome, Some(version))
}

fn finish(outcome: Result<Value>, version: Option<CniVersion>) -> i32 {
    match outcome {
        Ok(Value::Null) => 0,
        Ok(v) => {
            print(&v);
            0
        }
        Err(e) => {
            log::error!("{e}");
            print(&error_json(&e, version));
            1
        }
    }
}
