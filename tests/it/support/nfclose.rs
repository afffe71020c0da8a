//! Closing an nf_tables socket after a deleting commit: gwsteer's socket
//! (`gwsteer::kernel::nft::nfnl::Socket`) hands its release to the kernel
//! so that its close does not wait out the RCU grace period nf_tables
//! flushes on a socket's release. Used on this machine's
//! kernel (`firewall_steering`) and on Debian 12's 6.1 (`vrf_guest`).

use std::time::{Duration, Instant};

use gwsteer::kernel::nft::nfnl::{self, Ends, MsgBuf, NLM_F_ACK, NLM_F_REQUEST};
use gwsteer::kernel::nl;

use super::cmd::run;
use super::traffic::in_netns;

const BATCH_BEGIN: u16 = 16;
const BATCH_END: u16 = 17;
const SUBSYS_NFTABLES: u16 = 10;
const DELTABLE: u16 = (SUBSYS_NFTABLES << 8) | 2;
const NFPROTO_INET: u8 = 1;
const NFTA_TABLE_NAME: u16 = 1;
const TABLE: &str = "gws-close";
const TIMEOUT: Duration = Duration::from_secs(10);

/// One batch deleting table `inet TABLE`; the kernel acks message 2.
fn delete_table() -> MsgBuf {
    let mut m = MsgBuf::default();
    m.begin(BATCH_BEGIN, NLM_F_REQUEST, 1, 0, SUBSYS_NFTABLES)
        .end();
    m.begin(DELTABLE, NLM_F_REQUEST | NLM_F_ACK, 2, NFPROTO_INET, 0)
        .str(NFTA_TABLE_NAME, TABLE)
        .end();
    m.begin(BATCH_END, NLM_F_REQUEST, 3, 0, SUBSYS_NFTABLES)
        .end();
    m
}

/// On the calling thread's namespace: makes a table with a base chain,
/// deletes it over a fresh socket and times that socket's close: gwsteer's
/// nf_tables socket (`nfnl::Socket`, which hands its release over) or the
/// bare netlink socket underneath it (a plain close).
fn close_after_delete(handed_over: bool) -> Duration {
    run("nft", ["add", "table", "inet", TABLE]);
    run(
        "nft",
        [
            "add",
            "chain",
            "inet",
            TABLE,
            "c",
            "{ type filter hook prerouting priority 0 ; }",
        ],
    );
    let batch = delete_table();
    let deleted = "the table is deleted";
    let started;
    if handed_over {
        let mut sock = nfnl::Socket::open(100).expect("nf_tables socket");
        sock.connect_kernel(TIMEOUT).expect("connect");
        sock.request(&batch, 2, Ends::Ack).expect(deleted);
        started = Instant::now();
        drop(sock);
    } else {
        let mut sock = nl::Socket::open(nl::NETLINK_NETFILTER, 100).expect("netlink socket");
        sock.connect_kernel(TIMEOUT).expect("connect");
        sock.request(batch.as_bytes(), 2, Ends::Ack).expect(deleted);
        started = Instant::now();
        drop(sock);
    }
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
