//! Closing an nf_tables socket after a deleting commit: gwsteer's socket
//! hands its release to the kernel (`gwsteer::kernel::nl::Socket::
//! release_in_kernel`) so that its close does not wait out the RCU grace
//! period nf_tables flushes on a socket's release. Used on this machine's
//! kernel (`firewall_steering`) and on Debian 12's 6.1 (`vrf_guest`).

use std::process::Command;
use std::time::{Duration, Instant};

use gwsteer::kernel::nl::{self, Ends};

use super::traffic::in_netns;

const BATCH_BEGIN: u16 = 16;
const BATCH_END: u16 = 17;
const SUBSYS_NFTABLES: u16 = 10;
const DELTABLE: u16 = (SUBSYS_NFTABLES << 8) | 2;
const NFPROTO_INET: u8 = 1;
const TABLE: &str = "gws-close";

/// One nfnetlink message: `nlmsghdr`, `nfgenmsg`, and a NUL-terminated
/// string attribute (type 1: the table's name) when given.
fn message(out: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, family: u8, name: Option<&str>) {
    let start = out.len();
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&(nl::NLM_F_REQUEST | flags).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.push(family);
    out.push(0);
    let res_id = if name.is_none() { SUBSYS_NFTABLES } else { 0 };
    out.extend_from_slice(&res_id.to_be_bytes());
    if let Some(name) = name {
        let len = 4 + name.len() + 1;
        out.extend_from_slice(&(len as u16).to_ne_bytes());
        out.extend_from_slice(&1u16.to_ne_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    let len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

fn nft(args: &[&str]) {
    let out = Command::new("nft").args(args).output().expect("run nft");
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// On the calling thread's namespace: makes a table with a base chain,
/// deletes it over a fresh netlink socket and times that socket's close,
/// handed to the kernel or plain.
fn close_after_delete(handed_over: bool) -> Duration {
    nft(&["add", "table", "inet", TABLE]);
    nft(&[
        "add",
        "chain",
        "inet",
        TABLE,
        "c",
        "{ type filter hook prerouting priority 0 ; }",
    ]);
    let mut sock = nl::Socket::open(nl::NETLINK_NETFILTER, 100).expect("nf_tables socket");
    sock.connect_kernel(Duration::from_secs(10))
        .expect("connect");
    let seq = sock.next_seq();
    let mut batch = Vec::new();
    message(&mut batch, BATCH_BEGIN, 0, seq, 0, None);
    message(
        &mut batch,
        DELTABLE,
        nl::NLM_F_ACK,
        seq + 1,
        NFPROTO_INET,
        Some(TABLE),
    );
    message(&mut batch, BATCH_END, 0, seq + 2, 0, None);
    sock.request(&batch, seq + 1, Ends::Ack)
        .expect("the table is deleted");
    if handed_over {
        sock.release_in_kernel();
    }
    let started = Instant::now();
    drop(sock);
    started.elapsed()
}

/// User space's `NETLINK_NETFILTER` sockets (port id not 0, the kernel's
/// own) in the calling thread's namespace.
fn nf_sockets() -> usize {
    let table = std::fs::read_to_string("/proc/thread-self/net/netlink").expect("netlink table");
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.get(1) == Some(&"12") && f.get(2) != Some(&"0"))
        .count()
}

/// The median of five closes after a deleting commit, handed over or plain
/// (the runs alternate), and all of them for the message.
fn medians() -> (Duration, Duration, String) {
    let mut plain = Vec::new();
    let mut handed = Vec::new();
    for _ in 0..5 {
        plain.push(close_after_delete(false));
        handed.push(close_after_delete(true));
    }
    let all = format!("plain {plain:?}, handed over {handed:?}");
    plain.sort();
    handed.sort();
    (plain[2], handed[2], all)
}

/// In namespace `ns`: a plain close after a deleting commit waits (else
/// there is nothing to compare, and this says so), a handed-over close
/// takes less than a quarter of it (medians of five: a scheduling hiccup
/// of an emulated guest is not the kernel's wait), and the kernel does
/// release the handed-over sockets within 5 s.
pub fn assert_close_after_delete_does_not_wait(ns: &str) {
    in_netns(ns, || {
        let (plain, handed, all) = medians();
        eprintln!(
            "close after a deleting commit, medians: plain {plain:?}, handed over {handed:?} ({all})"
        );
        if plain < Duration::from_millis(2) {
            eprintln!("this kernel does not make the release wait: nothing to compare");
            return;
        }
        assert!(
            handed * 4 < plain,
            "the handed-over close waited like a plain one: median {handed:?} against {plain:?} ({all})"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while nf_sockets() > 0 {
            assert!(
                Instant::now() < deadline,
                "{} nf_tables sockets still open 5 s after their close",
                nf_sockets()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}
