//! Real traffic between namespaces: threads inside a netns, a TCP server that
//! says who it saw, TCP requests and pings.

use std::fmt::Display;
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};

use super::cmd::{netns_path, try_exec_in};

/// Runs `f` on a new thread that has joined netns `ns` (`/run/netns/<ns>`).
/// Sockets opened by `f` belong to that namespace.
pub fn spawn_in_netns<T, F>(ns: &str, f: F) -> JoinHandle<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let path = netns_path(ns);
    let name: String = format!("netns:{ns}").chars().take(60).collect();
    thread::Builder::new()
        .name(name)
        .spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            setns(&file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
        .expect("spawn thread")
}

/// Runs `f` in netns `ns` on a helper thread and returns its result (panics propagate).
pub fn in_netns<T, F>(ns: &str, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    spawn_in_netns(ns, f)
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// What [`TcpServer`] answers: `pong from <local addr> peer=<peer ip>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pong {
    /// The server's address of the connection (the address the client reached).
    pub local: SocketAddr,
    /// The client's address as the server saw it (after any NAT).
    pub peer: IpAddr,
}

impl Pong {
    pub fn parse(line: &str) -> Option<Pong> {
        let rest = line.trim().strip_prefix("pong from ")?;
        let (local, peer) = rest.split_once(" peer=")?;
        Some(Pong {
            local: local.parse().ok()?,
            peer: peer.parse().ok()?,
        })
    }
}

/// A TCP server in a netns. Each connection gets one line,
/// `pong from <local addr> peer=<peer ip>\n`, then the server closes it.
/// Runs until dropped.
pub struct TcpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    handle: Option<JoinHandle<()>>,
}

impl TcpServer {
    /// Binds `addr` inside `ns` (retrying for a few seconds while the address is
    /// not yet usable, e.g. tentative) and starts answering. Port 0 picks a port:
    /// see [`TcpServer::addr`].
    pub fn start(ns: &str, addr: SocketAddr) -> TcpServer {
        let stop = Arc::new(AtomicBool::new(false));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<Result<SocketAddr, String>>();
        let (stop2, peers2) = (stop.clone(), peers.clone());
        let handle = spawn_in_netns(ns, move || {
            let listener = match bind_with_retry(addr, Duration::from_secs(5)) {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            if let Err(e) = listener.set_nonblocking(true) {
                let _ = tx.send(Err(format!("set_nonblocking: {e}")));
                return;
            }
            let bound = listener.local_addr().map_err(|e| e.to_string());
            let _ = tx.send(bound);
            serve(listener, &stop2, &peers2);
        });
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Ok(bound)) => TcpServer {
                addr: bound,
                stop,
                peers,
                handle: Some(handle),
            },
            Ok(Err(e)) => {
                let _ = handle.join();
                panic!("TcpServer in {ns} on {addr}: {e}")
            }
            Err(_) => {
                let _ = handle.join();
                panic!("TcpServer in {ns} on {addr}: did not start")
            }
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Peers of the connections accepted so far.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap().clone()
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn bind_with_retry(addr: SocketAddr, patience: Duration) -> Result<TcpListener, String> {
    let deadline = Instant::now() + patience;
    loop {
        match TcpListener::bind(addr) {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == ErrorKind::AddrNotAvailable && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(format!("bind {addr}: {e}")),
        }
    }
}

fn serve(listener: TcpListener, stop: &AtomicBool, peers: &Mutex<Vec<SocketAddr>>) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                peers.lock().unwrap().push(peer);
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                let local = stream
                    .local_addr()
                    .map(canonical_sockaddr)
                    .map(|a| a.to_string())
                    .unwrap_or_else(|_| "?".into());
                let _ = writeln!(
                    stream,
                    "pong from {local} peer={}",
                    peer.ip().to_canonical()
                );
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(10)),
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// IPv4-mapped IPv6 (a v4 client of a `[::]` listener) shown as plain IPv4.
fn canonical_sockaddr(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// Connects from netns `ns` to `addr` and returns the first line of the answer
/// (without the newline), or what went wrong (connect or read timeout, refused…).
pub fn tcp_request(ns: &str, addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    in_netns(ns, move || {
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .map_err(|e| format!("read from {addr}: {e}"))?;
        if line.is_empty() {
            return Err(format!("{addr} closed the connection without answering"));
        }
        Ok(line.trim_end().to_string())
    })
}

/// [`tcp_request`] to a [`TcpServer`], parsed.
pub fn tcp_pong(ns: &str, addr: SocketAddr, timeout: Duration) -> Result<Pong, String> {
    let line = tcp_request(ns, addr, timeout)?;
    Pong::parse(&line).ok_or_else(|| format!("unexpected answer {line:?}"))
}

/// One ping from `ns` to `dst` (IPv4 or IPv6), 1 s timeout. `size` is the ICMP
/// payload (`-s`); `dont_fragment` sets `-M do`, so a packet larger than the
/// path MTU fails instead of being fragmented.
pub fn ping(ns: &str, dst: impl Display, size: Option<usize>, dont_fragment: bool) -> bool {
    ping_with(ns, dst, size, dont_fragment, None)
}

/// [`ping`] from source address `src` (`-I`), default size.
pub fn ping_from(ns: &str, src: impl Display, dst: impl Display) -> bool {
    ping_with(ns, dst, None, false, Some(src.to_string()))
}

fn ping_with(
    ns: &str,
    dst: impl Display,
    size: Option<usize>,
    dont_fragment: bool,
    src: Option<String>,
) -> bool {
    let dst = dst.to_string();
    let ip: IpAddr = dst
        .parse()
        .unwrap_or_else(|e| panic!("ping: {dst:?} is not an IP address: {e}"));
    let mut args: Vec<String> = vec![
        if ip.is_ipv6() { "-6" } else { "-4" }.into(),
        "-n".into(),
        "-q".into(),
        "-c1".into(),
        "-W1".into(),
    ];
    if dont_fragment {
        args.extend(["-M".into(), "do".into()]);
    }
    if let Some(size) = size {
        args.extend(["-s".into(), size.to_string()]);
    }
    if let Some(src) = src {
        args.extend(["-I".into(), src]);
    }
    args.push(dst);
    try_exec_in(ns, "ping", &args).is_ok()
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Like [`eventually`] but panics with `what` on timeout.
pub fn wait_for(what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
    assert!(
        eventually(timeout, cond),
        "timed out after {timeout:?} waiting for {what}"
    );
}
