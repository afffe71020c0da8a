//! Namespaces, commands and traffic for the nftables backend's kernel tests.
//!
//! Simple tests run on a thread that `unshare`s a fresh network namespace
//! ([`in_netns`]); its children (`nft`, `iptables`) inherit it, and the
//! namespace goes when the thread ends. Traffic tests need several
//! namespaces at once: named ones ([`Netns`], `ip netns add`), deleted on
//! drop, entered by short-lived threads.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use serde_json::Value;

pub use crate::kernel::nft::testutil::{in_netns, run, try_run};

/// `nft -j list table inet <table>`: its items (sets, chains, rules), or
/// `None` when there is no such table.
pub fn nft_table(family: &str, table: &str) -> Option<Vec<Value>> {
    let out = try_run("nft", &["-j", "list", "table", family, table]);
    if !out.status.success() {
        return None;
    }
    let doc: Value = serde_json::from_slice(&out.stdout).expect("nft -j prints JSON");
    Some(doc["nftables"].as_array().cloned().unwrap_or_default())
}

/// The `kind` items ("set", "chain", "rule") of a listing.
pub fn items<'a>(listing: &'a [Value], kind: &str) -> Vec<&'a Value> {
    listing.iter().filter_map(|i| i.get(kind)).collect()
}

/// The item of `kind` called `name`.
pub fn named<'a>(listing: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    items(listing, kind).into_iter().find(|i| i["name"] == name)
}

/// The `expr` arrays of the rules in `chain`, in order, with anonymous
/// sets' elements sorted (nft lists them in hash order).
pub fn chain_rules(listing: &[Value], chain: &str) -> Vec<Value> {
    fn sort_sets(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    if let (true, Value::Array(elems)) = (key == "set", &mut *item) {
                        elems.sort_by_key(|e| e.to_string());
                    }
                    sort_sets(item);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(sort_sets),
            _ => {}
        }
    }
    items(listing, "rule")
        .into_iter()
        .filter(|r| r["chain"] == chain)
        .map(|r| {
            let mut expr = r["expr"].clone();
            sort_sets(&mut expr);
            expr
        })
        .collect()
}

/// The tables of every family: (family, name).
pub fn nft_tables() -> Vec<(String, String)> {
    let out = run("nft", &["-j", "list", "tables"]);
    let doc: Value = serde_json::from_str(&out).expect("nft -j prints JSON");
    doc["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i.get("table"))
        .map(|t| {
            (
                t["family"].as_str().unwrap_or_default().to_string(),
                t["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The rules of a nat chain as `iptables -S` prints them, minus the `-N`.
pub fn xt_rules(binary: &str, chain: &str) -> Vec<String> {
    run(binary, &["-w", "-t", "nat", "-S", chain])
        .lines()
        .filter(|l| l.starts_with("-A "))
        .map(str::to_string)
        .collect()
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!(
            "gwsteer-t{}-{}-{tag}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> ARGS`.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all);
    }

    /// A command inside the namespace (`ip netns exec`); its stdout.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", self.name.as_str(), cmd];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    pub fn sysctl(&self, key_value: &str) {
        self.exec("sysctl", &["-qw", key_value]);
    }

    /// Runs `f` on a thread inside the namespace: sockets it opens, and
    /// children it starts, live there.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let ns = File::open(format!("/run/netns/{}", self.name)).expect("opening a named netns");
        std::thread::spawn(move || {
            setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns into a test namespace");
            f()
        })
    }

    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        match self.spawn(f).join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = try_run("ip", &["netns", "del", &self.name]);
    }
}

/// A veth pair from `a` (named `a_dev`) to `b` (named `b_dev`), both up,
/// with the given addresses.
pub fn veth(a: &Netns, a_dev: &str, a_addr: &str, b: &Netns, b_dev: &str, b_addr: &str) {
    a.ip(&[
        "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", &b.name,
    ]);
    a.ip(&["addr", "add", a_addr, "dev", a_dev]);
    b.ip(&["addr", "add", b_addr, "dev", b_dev]);
    a.ip(&["link", "set", a_dev, "up"]);
    b.ip(&["link", "set", b_dev, "up"]);
}

/// A TCP server in `ns` on `addr` that accepts one connection, echoes what
/// it reads until EOF, and reports the address it saw the client come from.
pub fn serve_once(ns: &Netns, addr: SocketAddr) -> mpsc::Receiver<SocketAddr> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (seen_tx, seen_rx) = mpsc::channel();
    ns.spawn(move || {
        let listener = TcpListener::bind(addr).expect("binding the test server");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        ready_tx.send(()).expect("test alive");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    let _ = seen_tx.send(peer);
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut buf = [0u8; 64];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the test server started");
    seen_rx
}

/// From `ns` (bound to `from`, if given): connect to `to`, send a line, read
/// it back. `Err` says what failed.
pub fn round_trip(ns: &Netns, from: Option<IpAddr>, to: SocketAddr) -> Result<(), String> {
    ns.run(move || {
        let stream = match from {
            None => TcpStream::connect_timeout(&to, Duration::from_secs(3)),
            Some(src) => connect_from(src, to),
        };
        let mut stream = stream.map_err(|e| format!("connect to {to}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(b"hello\n")
            .map_err(|e| format!("send: {e}"))?;
        let mut buf = [0u8; 6];
        stream
            .read_exact(&mut buf)
            .map_err(|e| format!("echo from {to}: {e}"))?;
        if &buf != b"hello\n" {
            return Err(format!("echo from {to} was {buf:?}"));
        }
        Ok(())
    })
}

/// A connection that must leave from `src`: std cannot bind before
/// connecting, so the tests give the namespace's route to `to` a `src`
/// hint, and this checks that it took.
fn connect_from(src: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
    let local = stream.local_addr()?.ip();
    if local != src {
        return Err(std::io::Error::other(format!(
            "the connection left from {local}, not {src}: the test's routes are wrong"
        )));
    }
    Ok(stream)
}

/// Packets counted by the rule with `comment` in an nft listing.
pub fn counter(listing: &[Value], comment: &str) -> u64 {
    items(listing, "rule")
        .into_iter()
        .find(|r| r["comment"] == comment)
        .and_then(|r| {
            r["expr"]
                .as_array()?
                .iter()
                .find_map(|e| e.get("counter")?.get("packets")?.as_u64())
        })
        .unwrap_or_else(|| panic!("no counter rule with comment {comment:?}"))
}
