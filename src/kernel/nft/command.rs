//! The one way gwsteer runs the `nft` command: arguments, input on stdin,
//! stdout back, stderr as the refusal. It runs in the network namespace of
//! the calling thread; to run it in a pod's, call it inside
//! [`crate::kernel::netns::Netns::run`] (the child inherits the thread's namespace).

use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// Why `nft` did not do what it was asked. Callers word these their way.
#[derive(Debug)]
pub(crate) enum NftFailure {
    /// It could not be started.
    Start(io::Error),
    /// Waiting for it failed.
    Wait(io::Error),
    /// It ran and succeeded, but did not take all of its input.
    Write(io::Error),
    /// It refused: what it said on stderr.
    Refused(String),
}

/// `nft ARGS` with `input` on stdin; its standard output.
pub(crate) fn run(nft: &Path, args: &[&str], input: &[u8]) -> Result<Vec<u8>, NftFailure> {
    let mut child = Command::new(nft)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftFailure::Start)?;
    // nft reads all of its input before it writes anything, so writing
    // first and then collecting the output cannot deadlock. A write that
    // fails (nft gone early) matters only if nft then says nothing else.
    let written = match child.stdin.take() {
        Some(mut stdin) => stdin.write_all(input),
        None => Ok(()),
    };
    let out = child.wait_with_output().map_err(NftFailure::Wait)?;
    if !out.status.success() {
        return Err(NftFailure::Refused(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    written.map_err(NftFailure::Write)?;
    Ok(out.stdout)
}
