//! Reads one chain of an iptables-legacy table the way `iptables-legacy`
//! itself does: `IPT_SO_GET_INFO` and `IPT_SO_GET_ENTRIES` (`IP6T_…` for
//! IPv6) on a raw socket, then a walk over the kernel's rule blob. No exec,
//! no xtables lock (the kernel hands out a consistent copy).
//!
//! Only what the exemption check needs is decoded: each rule's source
//! (address, mask, inversion), its `comment` match and its target (a
//! standard verdict, or a target's name). Layouts are the kernel's uapi
//! structs (`ipt_entry`, `ip6t_entry`, `xt_entry_match`, `xt_entry_target`),
//! the same on every Linux architecture gwsteer builds for.
//!
//! The caller must know that the table exists in the namespace (it is
//! listed in `/proc/thread-self/net/ip{,6}_tables_names`): asking for a
//! table that does not exist makes the kernel load and instantiate it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use ipnet::IpNet;

use crate::model::Family;

/// `IPT_SO_GET_INFO` / `IP6T_SO_GET_INFO`.
const SO_GET_INFO: libc::c_int = 64;
/// `IPT_SO_GET_ENTRIES` / `IP6T_SO_GET_ENTRIES`.
const SO_GET_ENTRIES: libc::c_int = 65;
/// `XT_TABLE_MAXNAMELEN`.
const TABLE_NAME_LEN: usize = 32;
/// `sizeof(struct ipt_getinfo)`: name, valid_hooks, hook_entry[5],
/// underflow[5], num_entries, size.
const GETINFO_LEN: usize = TABLE_NAME_LEN + 4 + 20 + 20 + 4 + 4;
/// Offset of `entrytable` in `struct ipt_get_entries` (name, size, then
/// entries aligned for their u64 counters).
const ENTRIES_OFFSET: usize = 40;
/// `xt_entry_match` / `xt_entry_target` header: u16 size, name[29], u8 revision.
const XT_HEADER_LEN: usize = 32;
/// `XT_RETURN`: the standard verdict of `-j RETURN`.
pub const XT_RETURN: i32 = -5;
/// `IPT_INV_SRCIP` (= `IP6T_INV_SRCIP`).
const INV_SRCIP: u8 = 0x08;
/// `IP6T_F_PROTO` (an IPv4 entry never has it set).
const IP6T_F_PROTO: u8 = 0x01;
/// The builtin chains by hook number (`NF_INET_*`).
const HOOKS: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];
/// A table that changes between the two getsockopt calls is read again.
const ATTEMPTS: usize = 3;

/// One rule as far as gwsteer cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyRule {
    /// `-s`; `None` when the source is inverted (`! -s`).
    pub source: Option<IpNet>,
    pub comment: Option<String>,
    /// The standard verdict (`-j RETURN` is [`XT_RETURN`]); `None` for a
    /// target extension or a jump.
    pub verdict: Option<i32>,
    /// Conditions other than the source and the comment: matches,
    /// destination, interfaces, protocol, fragment flags.
    pub other_conditions: usize,
}

/// Where the fields of an entry are, per family.
struct Layout {
    /// Offsets of src, smsk and their length.
    src: usize,
    smsk: usize,
    addr_len: usize,
    dmsk: usize,
    /// iniface, outiface (16 bytes each, back to back).
    ifaces: usize,
    proto: usize,
    flags: usize,
    /// Flags that add no condition of their own.
    plain_flags: u8,
    invflags: usize,
    target_offset: usize,
    next_offset: usize,
    /// `sizeof(struct ipt_entry)`: where the matches start.
    entry_len: usize,
}

const V4: Layout = Layout {
    src: 0,
    smsk: 8,
    addr_len: 4,
    dmsk: 12,
    ifaces: 16,
    proto: 80,
    flags: 82,
    plain_flags: 0,
    invflags: 83,
    target_offset: 88,
    next_offset: 90,
    entry_len: 112,
};

const V6: Layout = Layout {
    src: 0,
    smsk: 32,
    addr_len: 16,
    dmsk: 48,
    ifaces: 64,
    proto: 128,
    // ip6t_ip6 has a tos byte before flags.
    flags: 131,
    // IP6T_F_PROTO only says that proto was given, which proto shows.
    plain_flags: IP6T_F_PROTO,
    invflags: 132,
    target_offset: 140,
    next_offset: 142,
    entry_len: 168,
};

/// The rules of `chain` in `table`, in order; `None` when the chain does
/// not exist.
pub fn read_chain(family: Family, table: &str, chain: &str) -> io::Result<Option<Vec<LegacyRule>>> {
    let (domain, level, layout) = match family {
        Family::V4 => (libc::AF_INET, libc::IPPROTO_IP, &V4),
        Family::V6 => (libc::AF_INET6, libc::IPPROTO_IPV6, &V6),
    };
    // SAFETY: plain socket(2); the result is checked before being owned.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    for _ in 0..ATTEMPTS {
        let info = get_info(&sock, level, table)?;
        match get_entries(&sock, level, table, info.size) {
            Ok(blob) => return Ok(find_chain(&blob, &info, layout, chain)),
            // The table changed size between the two calls.
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "the legacy {table} table kept changing while being read"
    )))
}

struct Info {
    valid_hooks: u32,
    hook_entry: [u32; 5],
    underflow: [u32; 5],
    size: usize,
}

fn table_name(table: &str) -> io::Result<[u8; TABLE_NAME_LEN]> {
    let mut name = [0u8; TABLE_NAME_LEN];
    if table.len() >= TABLE_NAME_LEN {
        return Err(io::Error::other(format!(
            "table name {table:?} is too long"
        )));
    }
    name[..table.len()].copy_from_slice(table.as_bytes());
    Ok(name)
}

fn getsockopt(
    sock: &OwnedFd,
    level: libc::c_int,
    opt: libc::c_int,
    buf: &mut [u8],
) -> io::Result<usize> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` is valid for `len` bytes for the duration of the call,
    // and `len` tells the kernel so.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            level,
            opt,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(len as usize)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn get_info(sock: &OwnedFd, level: libc::c_int, table: &str) -> io::Result<Info> {
    let mut buf = [0u8; GETINFO_LEN];
    buf[..TABLE_NAME_LEN].copy_from_slice(&table_name(table)?);
    getsockopt(sock, level, SO_GET_INFO, &mut buf)?;
    let u32_at = |at: usize| u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let mut hook_entry = [0; 5];
    let mut underflow = [0; 5];
    for i in 0..5 {
        hook_entry[i] = u32_at(TABLE_NAME_LEN + 4 + 4 * i);
        underflow[i] = u32_at(TABLE_NAME_LEN + 24 + 4 * i);
    }
    Ok(Info {
        valid_hooks: u32_at(TABLE_NAME_LEN),
        hook_entry,
        underflow,
        size: u32_at(TABLE_NAME_LEN + 48) as usize,
    })
}

fn get_entries(
    sock: &OwnedFd,
    level: libc::c_int,
    table: &str,
    size: usize,
) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; ENTRIES_OFFSET + size];
    buf[..TABLE_NAME_LEN].copy_from_slice(&table_name(table)?);
    buf[TABLE_NAME_LEN..TABLE_NAME_LEN + 4].copy_from_slice(&(size as u32).to_ne_bytes());
    getsockopt(sock, level, SO_GET_ENTRIES, &mut buf)?;
    Ok(buf.split_off(ENTRIES_OFFSET))
}

/// One entry of the blob, located.
struct Entry<'a> {
    offset: usize,
    raw: &'a [u8],
    target_name: String,
    target_data: &'a [u8],
}

fn entries<'a>(blob: &'a [u8], layout: &Layout) -> Vec<Entry<'a>> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset + layout.entry_len <= blob.len() {
        let raw = &blob[offset..];
        let u16_at = |at: usize| usize::from(u16::from_ne_bytes([raw[at], raw[at + 1]]));
        let target_offset = u16_at(layout.target_offset);
        let next_offset = u16_at(layout.next_offset);
        if next_offset < layout.entry_len
            || target_offset < layout.entry_len
            || target_offset + XT_HEADER_LEN > next_offset
            || offset + next_offset > blob.len()
        {
            break;
        }
        let raw = &raw[..next_offset];
        let target = &raw[target_offset..];
        out.push(Entry {
            offset,
            raw,
            target_name: c_string(&target[2..XT_HEADER_LEN - 1]),
            target_data: &target[XT_HEADER_LEN..],
        });
        offset += next_offset;
    }
    out
}

fn find_chain(blob: &[u8], info: &Info, layout: &Layout, chain: &str) -> Option<Vec<LegacyRule>> {
    let all = entries(blob, layout);
    let range = if let Some(hook) = HOOKS.iter().position(|h| *h == chain) {
        if info.valid_hooks & (1 << hook) == 0 {
            return None;
        }
        let (start, end) = (
            info.hook_entry[hook] as usize,
            info.underflow[hook] as usize,
        );
        // Up to, not including, the policy entry at the underflow.
        all.iter()
            .filter(|e| e.offset >= start && e.offset < end)
            .collect::<Vec<_>>()
    } else {
        // A user chain: an ERROR entry naming it, its rules, then an
        // implicit RETURN, then the next chain's ERROR entry.
        let head = all
            .iter()
            .position(|e| e.target_name == "ERROR" && c_string(e.target_data) == chain)?;
        let rest = &all[head + 1..];
        let end = rest
            .iter()
            .position(|e| e.target_name == "ERROR")
            .unwrap_or(rest.len());
        rest[..end.saturating_sub(1)].iter().collect()
    };
    Some(range.into_iter().map(|e| decode(e, layout)).collect())
}

fn decode(entry: &Entry<'_>, layout: &Layout) -> LegacyRule {
    let raw = entry.raw;
    let n = layout.addr_len;
    let addr = &raw[layout.src..layout.src + n];
    let mask = &raw[layout.smsk..layout.smsk + n];
    let prefix = mask.iter().map(|b| b.count_ones()).sum::<u32>() as u8;
    let ip = match n {
        4 => IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])),
        _ => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(addr);
            IpAddr::V6(Ipv6Addr::from(octets))
        }
    };
    let inverted = raw[layout.invflags] & INV_SRCIP != 0;
    let source = (!inverted)
        .then(|| IpNet::new(ip, prefix).ok().map(|net| net.trunc()))
        .flatten();

    let target_offset = usize::from(u16::from_ne_bytes([
        raw[layout.target_offset],
        raw[layout.target_offset + 1],
    ]));
    let mut comment = None;
    let mut other_conditions = [
        raw[layout.dmsk..layout.dmsk + n].iter().any(|b| *b != 0),
        raw[layout.ifaces..layout.ifaces + 32]
            .iter()
            .any(|b| *b != 0),
        raw[layout.proto] != 0 || raw[layout.proto + 1] != 0,
        raw[layout.flags] & !layout.plain_flags != 0,
        raw[layout.invflags] & !INV_SRCIP != 0,
    ]
    .iter()
    .filter(|c| **c)
    .count();
    let mut at = layout.entry_len;
    while at + XT_HEADER_LEN <= target_offset {
        let size = usize::from(u16::from_ne_bytes([raw[at], raw[at + 1]]));
        if size < XT_HEADER_LEN || at + size > target_offset {
            break;
        }
        let name = c_string(&raw[at + 2..at + XT_HEADER_LEN - 1]);
        if name == "comment" {
            comment = Some(c_string(&raw[at + XT_HEADER_LEN..at + size]));
        } else {
            other_conditions += 1;
        }
        at += size;
    }
    let verdict = (entry.target_name.is_empty() && entry.target_data.len() >= 4).then(|| {
        let d = entry.target_data;
        i32::from_ne_bytes([d[0], d[1], d[2], d[3]])
    });
    LegacyRule {
        source,
        comment,
        verdict,
        other_conditions,
    }
}

fn c_string(raw: &[u8]) -> String {
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}
