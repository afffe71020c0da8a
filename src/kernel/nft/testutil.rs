//! What the firewall's kernel tests run on: a thread in a fresh
//! network namespace, and commands whose failure fails the test.

use std::process::{Command, Output};

use nix::sched::{CloneFlags, unshare};

/// Runs `f` on a thread in a fresh network namespace with `lo` up. Its
/// children (`nft`, `iptables`) inherit the namespace, which goes when the
/// thread ends.
pub fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let thread = std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET): these tests run as root");
        run("ip", &["link", "set", "lo", "up"]);
        f()
    });
    match thread.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Runs a command; panics with its stderr unless it succeeds; its stdout.
pub fn run(cmd: &str, args: &[&str]) -> String {
    succeeded(cmd, args, try_run(cmd, args))
}

pub fn try_run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"))
}

/// The stdout of `cmd args`, which produced `out`; panics with its stderr
/// unless it succeeded.
pub fn succeeded(cmd: &str, args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
