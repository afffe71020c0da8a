//! Running programs with argument vectors (never `sh -c` with built strings).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::process::{Command, Output};

/// A command that could not run or exited non-zero.
#[derive(Debug, Clone)]
pub struct CmdError {
    pub command: String,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` failed", self.command)?;
        match self.exit_code {
            Some(code) => write!(f, " with exit code {code}")?,
            None => write!(f, " (no exit code)")?,
        }
        if !self.stderr.trim().is_empty() {
            write!(f, "\nstderr: {}", self.stderr.trim_end())?;
        }
        if !self.stdout.trim().is_empty() {
            write!(f, "\nstdout: {}", self.stdout.trim_end())?;
        }
        Ok(())
    }
}

impl std::error::Error for CmdError {}

fn collect<I, S>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    args.into_iter().map(|a| a.as_ref().to_owned()).collect()
}

fn describe(program: &OsStr, args: &[OsString]) -> String {
    let mut s = program.to_string_lossy().into_owned();
    for a in args {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn finish(command: String, output: std::io::Result<Output>) -> Result<String, CmdError> {
    match output {
        Err(e) => Err(CmdError {
            command,
            exit_code: None,
            stdout: String::new(),
            stderr: format!("cannot run: {e}"),
        }),
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            if out.status.success() {
                Ok(stdout)
            } else {
                Err(CmdError {
                    command,
                    exit_code: out.status.code(),
                    stdout,
                    stderr,
                })
            }
        }
    }
}

/// Runs `program args…`; returns stdout, or the failure.
pub fn try_run<P, I, S>(program: P, args: I) -> Result<String, CmdError>
where
    P: AsRef<OsStr>,
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args = collect(args);
    let command = describe(program.as_ref(), &args);
    finish(command, Command::new(program).args(&args).output())
}

/// Runs `program args…`; returns stdout; panics with stderr on failure.
pub fn run<P, I, S>(program: P, args: I) -> String
where
    P: AsRef<OsStr>,
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    try_run(program, args).unwrap_or_else(|e| panic!("{e}"))
}

/// `ip -n <ns> args…`.
pub fn try_ip<I, S>(ns: &str, args: I) -> Result<String, CmdError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut full: Vec<OsString> = vec!["-n".into(), ns.into()];
    full.extend(collect(args));
    try_run("ip", full)
}

/// `ip -n <ns> args…`, panicking with stderr on failure.
pub fn ip<I, S>(ns: &str, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    try_ip(ns, args).unwrap_or_else(|e| panic!("{e}"))
}

/// `ip netns exec <ns> program args…`.
pub fn try_exec_in<P, I, S>(ns: &str, program: P, args: I) -> Result<String, CmdError>
where
    P: AsRef<OsStr>,
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut full: Vec<OsString> = vec!["netns".into(), "exec".into(), ns.into()];
    full.push(program.as_ref().to_owned());
    full.extend(collect(args));
    try_run("ip", full)
}

/// `ip netns exec <ns> program args…`, panicking with stderr on failure.
pub fn exec_in<P, I, S>(ns: &str, program: P, args: I) -> String
where
    P: AsRef<OsStr>,
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    try_exec_in(ns, program, args).unwrap_or_else(|e| panic!("{e}"))
}

/// The bind-mount path of a named netns (what `CNI_NETNS` carries).
pub fn netns_path(ns: &str) -> String {
    format!("/run/netns/{ns}")
}
