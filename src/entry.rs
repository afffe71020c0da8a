//! The CNI entry: read stdin, parse the verb and the config, set up
//! logging, check the version, dispatch to [`crate::verbs`], and print the
//! result or the error JSON. Nothing but that JSON goes to stdout.

use std::io::Read;

use serde_json::Value;

use crate::cni::version::CniVersion;
use crate::cni::{Command, Env, error_json, print, stdin_version, version_reply};
use crate::config::Config;
use crate::error::{Error, Result, code};

/// What a network configuration with its prevResult usually fits in.
const STDIN_CAPACITY: usize = 16 * 1024;

/// Run one CNI invocation; returns the process exit code.
pub fn cni(command: &str) -> i32 {
    // Room for a usual config at once: read_to_end on an empty buffer
    // starts with 32 bytes and doubles, one read(2) per step.
    let mut stdin = Vec::with_capacity(STDIN_CAPACITY);
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        print(&error_json(
            &Error::io("reading the network configuration from stdin", e),
            None,
        ));
        return 1;
    }
    // Parsed once here: the version, DEL's limits and the config read it.
    let parsed: std::result::Result<Value, serde_json::Error> = serde_json::from_slice(&stdin);
    // Errors found before the config validates still speak its version.
    let asked = stdin_version(parsed.as_ref().ok());
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
    if cmd == Command::Del && crate::verbs::del::beyond_limits(parsed.as_ref().ok()).is_some() {
        return 0;
    }
    let config = match parsed {
        Ok(value) => Config::from_owned(value),
        Err(e) => Err(Config::not_json(&e)),
    };
    let config = match config {
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
    crate::logging::init_plugin(config.log_file.as_deref(), config.log_level);
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
