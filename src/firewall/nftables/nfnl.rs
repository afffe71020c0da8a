//! Raw nf_tables netlink (`NETLINK_NETFILTER`, subsystem `NFNL_SUBSYS_NFTABLES`):
//! the handful of messages gwsteer's hot paths need, so that a pod's set
//! membership and the "is this policy still intact?" check never exec `nft`.
//!
//! One blocking socket, opened on the calling thread (a netlink socket
//! belongs for life to the network namespace it was opened in). Requests are
//! strictly one at a time; answers are matched by sequence number, so a
//! late answer to an earlier request that timed out is skipped.
//!
//! Wire format (all host byte order except where nf_tables says otherwise):
//! `nlmsghdr` (16 bytes), `nfgenmsg` (family, version 0, resource id in
//! network order), then attributes (`nlattr`: u16 length, u16 type, payload
//! padded to 4). Strings are NUL-terminated, as libnftnl sends them.

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_sys::{Socket, SocketAddr};

/// `NETLINK_NETFILTER`.
const NETLINK_NETFILTER: isize = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;

const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFT_MSG_GETGEN: u16 = 16;

const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLMSGERR_ATTR_MSG: u16 = 1;

const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;

// enum nft_table_attributes / nft_chain_attributes / nft_rule_attributes
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
// enum nft_set_elem_list_attributes / nft_set_elem_attributes / nft_data_attributes
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;
// enum nft_expr_attributes
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
/// libnftnl's `NFTNL_UDATA_RULE_COMMENT`: the rule comment in the userdata TLVs.
const NFTNL_UDATA_RULE_COMMENT: u8 = 0;

/// `nfgen_family` values (`NFPROTO_*`).
pub const NFPROTO_UNSPEC: u8 = 0;
pub const NFPROTO_INET: u8 = 1;
pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_IPV6: u8 = 10;

/// A kernel that has not answered in this long is not going to.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A dump interrupted by concurrent changes is retried this often in all.
const DUMP_ATTEMPTS: usize = 3;
/// Larger than any datagram the kernel sends a netlink socket (dumps are
/// capped at 32 KiB).
const RECV_BUFFER: usize = 64 * 1024;

/// What went wrong talking nf_tables netlink.
#[derive(Debug)]
pub enum NfError {
    /// The kernel refused: errno and the extended ack's text, if any.
    Kernel { errno: i32, ext: Option<String> },
    /// The socket or the answer was broken.
    Transport(String),
}

impl NfError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            NfError::Kernel { errno, .. } => Some(*errno),
            NfError::Transport(_) => None,
        }
    }

    pub fn is_enoent(&self) -> bool {
        self.errno() == Some(libc::ENOENT)
    }
}

impl fmt::Display for NfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NfError::Kernel { errno, ext } => {
                write!(f, "{}", io::Error::from_raw_os_error(*errno))?;
                if let Some(ext) = ext {
                    write!(f, ": {ext}")?;
                }
                Ok(())
            }
            NfError::Transport(msg) => f.write_str(msg),
        }
    }
}

fn transport(what: &str, err: io::Error) -> NfError {
    NfError::Transport(format!("{what}: {err}"))
}

/// A rule as a dump reports it: where it is, its comment, its expressions.
#[derive(Debug, Clone)]
pub struct DumpedRule {
    pub chain: String,
    pub comment: Option<String>,
    pub exprs: Vec<Expr>,
}

/// One expression of a dumped rule: its name (`payload`, `cmp`, `lookup`,
/// `match`…) and its attributes, undecoded.
#[derive(Debug, Clone)]
pub struct Expr {
    pub name: String,
    pub data: Vec<u8>,
}

impl Expr {
    /// The attributes of the expression's data.
    pub fn attrs(&self) -> Attrs<'_> {
        Attrs(&self.data)
    }
}

/// A table as a dump reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpedTable {
    pub family: u8,
    pub name: String,
}

/// Whether a set element is to be added or deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemOp {
    Add,
    Delete,
}

/// An nf_tables netlink socket in the namespace it was opened in.
pub struct NfSocket {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl NfSocket {
    /// Opens the socket on the calling thread (so in its network namespace)
    /// and asks the kernel for the ruleset generation: proof that nf_tables
    /// answers and that gwsteer may talk to it.
    pub fn open() -> Result<NfSocket, NfError> {
        let mut sock = Socket::new(NETLINK_NETFILTER)
            .map_err(|e| transport("opening a NETLINK_NETFILTER socket", e))?;
        sock.bind_auto()
            .map_err(|e| transport("binding the netlink socket", e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| transport("connecting the netlink socket", e))?;
        // Best effort: extended acks carry the kernel's reason for a refusal;
        // capped acks keep it from echoing whole requests back.
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        set_receive_timeout(&sock, REQUEST_TIMEOUT)
            .map_err(|e| transport("setting the netlink receive timeout", e))?;
        let seq = std::process::id().wrapping_mul(7919) ^ 0x5eed;
        let mut this = NfSocket {
            sock,
            seq,
            buf: Vec::with_capacity(RECV_BUFFER),
        };
        this.generation()?;
        Ok(this)
    }

    /// The ruleset generation id (`NFT_MSG_GETGEN`); changes with every commit.
    pub fn generation(&mut self) -> Result<u32, NfError> {
        let seq = self.next_seq();
        let mut msg = MsgBuf::default();
        msg.begin(
            nft_type(NFT_MSG_GETGEN),
            NLM_F_REQUEST,
            seq,
            NFPROTO_UNSPEC,
            0,
        );
        msg.end();
        let answer = self.request(&msg, seq)?;
        // NFTA_GEN_ID = 1, big-endian u32.
        answer
            .iter()
            .find_map(|m| Attrs(&m[NFGENMSG_LEN.min(m.len())..]).get(1))
            .and_then(|v| v.get(..4))
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| NfError::Transport("the kernel's generation answer had no id".into()))
    }

    /// Adds or deletes one element of a set, in a batch of its own. Adding an
    /// element that exists and deleting one that does not both succeed.
    pub fn set_element(
        &mut self,
        op: ElemOp,
        family: u8,
        table: &str,
        set: &str,
        key: &[u8],
    ) -> Result<(), NfError> {
        let begin_seq = self.next_seq();
        let seq = self.next_seq();
        let end_seq = self.next_seq();
        let mut msg = MsgBuf::default();
        batch_marker(&mut msg, NFNL_MSG_BATCH_BEGIN, begin_seq);
        let (kind, flags) = match op {
            // CREATE without EXCL: an element that is already there is fine.
            ElemOp::Add => (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK),
            ElemOp::Delete => (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK),
        };
        msg.begin(nft_type(kind), flags, seq, family, 0);
        elem_list(&mut msg, table, set, key);
        msg.end();
        batch_marker(&mut msg, NFNL_MSG_BATCH_END, end_seq);
        match self.batch(&msg, begin_seq, seq) {
            Err(e) if op == ElemOp::Delete && e.is_enoent() => Ok(()),
            other => other,
        }
    }

    /// Is `key` an element of the set? One `NFT_MSG_GETSETELEM` for that
    /// element, never a dump. A missing table or set reads as "no".
    pub fn has_element(
        &mut self,
        family: u8,
        table: &str,
        set: &str,
        key: &[u8],
    ) -> Result<bool, NfError> {
        let seq = self.next_seq();
        let mut msg = MsgBuf::default();
        msg.begin(nft_type(NFT_MSG_GETSETELEM), NLM_F_REQUEST, seq, family, 0);
        elem_list(&mut msg, table, set, key);
        msg.end();
        match self.request(&msg, seq) {
            Ok(answer) => Ok(!answer.is_empty()),
            Err(e) if e.is_enoent() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Does the table exist? One `NFT_MSG_GETTABLE`.
    pub fn table_exists(&mut self, family: u8, table: &str) -> Result<bool, NfError> {
        let seq = self.next_seq();
        let mut msg = MsgBuf::default();
        msg.begin(nft_type(NFT_MSG_GETTABLE), NLM_F_REQUEST, seq, family, 0);
        msg.attr_str(NFTA_TABLE_NAME, table);
        msg.end();
        match self.request(&msg, seq) {
            Ok(_) => Ok(true),
            Err(e) if e.is_enoent() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Does the chain exist? One `NFT_MSG_GETCHAIN`; a missing table is "no".
    /// (A rule dump cannot tell: filtered by a missing chain, it is empty.)
    pub fn chain_exists(&mut self, family: u8, table: &str, chain: &str) -> Result<bool, NfError> {
        let seq = self.next_seq();
        let mut msg = MsgBuf::default();
        msg.begin(nft_type(NFT_MSG_GETCHAIN), NLM_F_REQUEST, seq, family, 0);
        msg.attr_str(NFTA_CHAIN_TABLE, table);
        msg.attr_str(NFTA_CHAIN_NAME, chain);
        msg.end();
        match self.request(&msg, seq) {
            Ok(_) => Ok(true),
            Err(e) if e.is_enoent() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every table of every family (`NFT_MSG_GETTABLE` dump).
    pub fn tables(&mut self) -> Result<Vec<DumpedTable>, NfError> {
        let answer = self.dump(|msg, seq| {
            msg.begin(
                nft_type(NFT_MSG_GETTABLE),
                NLM_F_REQUEST | NLM_F_DUMP,
                seq,
                NFPROTO_UNSPEC,
                0,
            );
            msg.end();
        })?;
        Ok(answer
            .iter()
            .filter(|(kind, _)| *kind == nft_type(NFT_MSG_NEWTABLE))
            .filter_map(|(_, body)| {
                let family = *body.first()?;
                let name = Attrs(body.get(NFGENMSG_LEN..)?).string(NFTA_TABLE_NAME)?;
                Some(DumpedTable { family, name })
            })
            .collect())
    }

    /// The rules of one table (and, if given, one chain) in chain order
    /// (`NFT_MSG_GETRULE` dump, filtered by the kernel). A missing table is
    /// an `ENOENT` error; a missing chain just has no rules.
    pub fn rules(
        &mut self,
        family: u8,
        table: &str,
        chain: Option<&str>,
    ) -> Result<Vec<DumpedRule>, NfError> {
        let answer = self.dump(|msg, seq| {
            msg.begin(
                nft_type(NFT_MSG_GETRULE),
                NLM_F_REQUEST | NLM_F_DUMP,
                seq,
                family,
                0,
            );
            msg.attr_str(NFTA_RULE_TABLE, table);
            if let Some(chain) = chain {
                msg.attr_str(NFTA_RULE_CHAIN, chain);
            }
            msg.end();
        })?;
        let mut rules = Vec::new();
        for (kind, body) in &answer {
            if *kind != nft_type(NFT_MSG_NEWRULE) {
                continue;
            }
            let attrs = Attrs(body.get(NFGENMSG_LEN..).unwrap_or_default());
            // The kernel filters; this guards against one that does not.
            if attrs.string(NFTA_RULE_TABLE).as_deref() != Some(table) {
                continue;
            }
            let Some(rule_chain) = attrs.string(NFTA_RULE_CHAIN) else {
                continue;
            };
            if chain.is_some_and(|c| c != rule_chain) {
                continue;
            }
            rules.push(DumpedRule {
                chain: rule_chain,
                comment: attrs.get(NFTA_RULE_USERDATA).and_then(udata_comment),
                exprs: attrs
                    .get(NFTA_RULE_EXPRESSIONS)
                    .map(parse_exprs)
                    .unwrap_or_default(),
            });
        }
        Ok(rules)
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send(&mut self, msg: &MsgBuf) -> Result<(), NfError> {
        let sent = self
            .sock
            .send(&msg.bytes, 0)
            .map_err(|e| transport("sending to nf_tables", e))?;
        if sent != msg.bytes.len() {
            return Err(NfError::Transport(format!(
                "nf_tables took {sent} of {} bytes",
                msg.bytes.len()
            )));
        }
        Ok(())
    }

    /// Reads one datagram; calls `each` for every message in it with
    /// (type, flags, seq, body after the header). Stops early when `each`
    /// says so.
    fn receive(
        &mut self,
        mut each: impl FnMut(u16, u16, u32, &[u8]) -> Result<bool, NfError>,
    ) -> Result<bool, NfError> {
        self.buf.clear();
        let n = self
            .sock
            .recv(&mut self.buf, libc::MSG_TRUNC)
            .map_err(|e| {
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) {
                    NfError::Transport(format!(
                        "nf_tables did not answer within {}s",
                        REQUEST_TIMEOUT.as_secs()
                    ))
                } else {
                    transport("receiving from nf_tables", e)
                }
            })?;
        if n > self.buf.len() {
            return Err(NfError::Transport(format!(
                "an nf_tables answer of {n} bytes did not fit the buffer"
            )));
        }
        let mut rest: &[u8] = &self.buf;
        while rest.len() >= NLMSG_HDRLEN {
            let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if len < NLMSG_HDRLEN || len > rest.len() {
                return Err(NfError::Transport("a malformed netlink message".into()));
            }
            let kind = u16::from_ne_bytes([rest[4], rest[5]]);
            let flags = u16::from_ne_bytes([rest[6], rest[7]]);
            let seq = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
            if each(kind, flags, seq, &rest[NLMSG_HDRLEN..len])? {
                return Ok(true);
            }
            rest = rest.get(align(len)..).unwrap_or_default();
        }
        Ok(false)
    }

    /// A non-dump request: its answers (message bodies after the header)
    /// until the kernel's ack or the single reply.
    fn request(&mut self, msg: &MsgBuf, seq: u32) -> Result<Vec<Vec<u8>>, NfError> {
        self.send(msg)?;
        let mut answers = Vec::new();
        let mut failure = None;
        loop {
            let done = self.receive(|kind, flags, got, body| {
                if got != seq {
                    return Ok(false);
                }
                match kind {
                    NLMSG_ERROR => {
                        let (errno, ext) = parse_error(flags, body)?;
                        if errno != 0 {
                            failure = Some(NfError::Kernel { errno, ext });
                        }
                        Ok(true)
                    }
                    NLMSG_NOOP => Ok(false),
                    NLMSG_DONE => Ok(true),
                    _ => {
                        answers.push(body.to_vec());
                        // A GET without NLM_F_ACK has a single reply.
                        Ok(true)
                    }
                }
            })?;
            if done {
                break;
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(answers),
        }
    }

    /// A batch whose message `seq` asked for an ack: done at that ack, or at
    /// the first error for any message of the batch (from `first_seq` on:
    /// a refused batch start or a failed commit is reported on the batch's
    /// first message).
    fn batch(&mut self, msg: &MsgBuf, first_seq: u32, seq: u32) -> Result<(), NfError> {
        self.send(msg)?;
        let mut failure = None;
        loop {
            let done = self.receive(|kind, flags, got, body| {
                if kind != NLMSG_ERROR || got < first_seq || got > seq.wrapping_add(1) {
                    return Ok(false);
                }
                let (errno, ext) = parse_error(flags, body)?;
                if errno != 0 {
                    failure = Some(NfError::Kernel { errno, ext });
                    return Ok(true);
                }
                Ok(got == seq)
            })?;
            if done {
                break;
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A dump: (type, body) of every message until `NLMSG_DONE`, retried
    /// when the kernel says the dump was interrupted by a change.
    fn dump(&mut self, build: impl Fn(&mut MsgBuf, u32)) -> Result<Vec<(u16, Vec<u8>)>, NfError> {
        for _ in 0..DUMP_ATTEMPTS {
            let seq = self.next_seq();
            let mut msg = MsgBuf::default();
            build(&mut msg, seq);
            self.send(&msg)?;
            let mut answers = Vec::new();
            let mut failure = None;
            let mut interrupted = false;
            loop {
                let done = self.receive(|kind, flags, got, body| {
                    if got != seq {
                        return Ok(false);
                    }
                    if flags & NLM_F_DUMP_INTR != 0 {
                        interrupted = true;
                    }
                    match kind {
                        NLMSG_DONE => Ok(true),
                        NLMSG_ERROR => {
                            let (errno, ext) = parse_error(flags, body)?;
                            if errno != 0 {
                                failure = Some(NfError::Kernel { errno, ext });
                            }
                            Ok(true)
                        }
                        NLMSG_NOOP => Ok(false),
                        _ => {
                            answers.push((kind, body.to_vec()));
                            Ok(false)
                        }
                    }
                })?;
                if done {
                    break;
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
            if !interrupted {
                return Ok(answers);
            }
        }
        Err(NfError::Transport(format!(
            "an nf_tables dump was interrupted by concurrent changes {DUMP_ATTEMPTS} times"
        )))
    }
}

fn set_receive_timeout(sock: &Socket, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: the fd is a live socket owned by `sock`; `tv` is a valid
    // `timeval` that outlives the call, and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

const fn nft_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

const fn align(len: usize) -> usize {
    (len + 3) & !3
}

fn batch_marker(msg: &mut MsgBuf, kind: u16, seq: u32) {
    // The batch markers name the subsystem in nfgenmsg's res_id.
    msg.begin(
        kind,
        NLM_F_REQUEST,
        seq,
        NFPROTO_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
    );
    msg.end();
}

/// `NFTA_SET_ELEM_LIST_*` naming one element by its key.
fn elem_list(msg: &mut MsgBuf, table: &str, set: &str, key: &[u8]) {
    msg.attr_str(NFTA_SET_ELEM_LIST_TABLE, table);
    msg.attr_str(NFTA_SET_ELEM_LIST_SET, set);
    let elements = msg.nest_begin(NFTA_SET_ELEM_LIST_ELEMENTS);
    let elem = msg.nest_begin(NFTA_LIST_ELEM);
    let k = msg.nest_begin(NFTA_SET_ELEM_KEY);
    msg.attr_bytes(NFTA_DATA_VALUE, key);
    msg.nest_end(k);
    msg.nest_end(elem);
    msg.nest_end(elements);
}

/// The errno (0 for an ack) and extended-ack text of an `NLMSG_ERROR` body;
/// `flags` are the error message's own.
fn parse_error(flags: u16, body: &[u8]) -> Result<(i32, Option<String>), NfError> {
    let Some(code) = body.get(..4) else {
        return Err(NfError::Transport("a truncated netlink error".into()));
    };
    let code = i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
    Ok((-code, extack(flags, &body[4..])))
}

/// The extended-ack text after the error code: the failed request's header
/// (capped) or whole request (uncapped), then attributes.
fn extack(flags: u16, echoed: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let offset = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        align(u32::from_ne_bytes(echoed.get(0..4)?.try_into().ok()?) as usize)
    };
    extack_text(echoed.get(offset..)?)
}

fn extack_text(attrs: &[u8]) -> Option<String> {
    let mut rest = attrs;
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > rest.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = rest[4..len].split(|b| *b == 0).next()?;
            let text = String::from_utf8_lossy(text).trim().to_string();
            return (!text.is_empty()).then_some(text);
        }
        rest = rest.get(align(len)..)?;
    }
    None
}

/// The comment among libnftnl userdata TLVs (u8 type, u8 length, value).
fn udata_comment(mut udata: &[u8]) -> Option<String> {
    while udata.len() >= 2 {
        let (kind, len) = (udata[0], usize::from(udata[1]));
        let value = udata.get(2..2 + len)?;
        if kind == NFTNL_UDATA_RULE_COMMENT {
            let text = value.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        udata = &udata[2 + len..];
    }
    None
}

/// `NFTA_RULE_EXPRESSIONS`: a list of `NFTA_LIST_ELEM`, each with a name and data.
fn parse_exprs(list: &[u8]) -> Vec<Expr> {
    Attrs(list)
        .iter()
        .filter(|(kind, _)| *kind == NFTA_LIST_ELEM)
        .filter_map(|(_, elem)| {
            let attrs = Attrs(elem);
            Some(Expr {
                name: attrs.string(NFTA_EXPR_NAME)?,
                data: attrs.get(NFTA_EXPR_DATA).unwrap_or_default().to_vec(),
            })
        })
        .collect()
}

/// A run of netlink attributes.
#[derive(Clone, Copy)]
pub struct Attrs<'a>(pub &'a [u8]);

impl<'a> Attrs<'a> {
    /// (type without flags, payload) of each attribute; stops at the first
    /// malformed one.
    pub fn iter(self) -> impl Iterator<Item = (u16, &'a [u8])> {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            if rest.len() < 4 {
                return None;
            }
            let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
            let kind = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
            if len < 4 || len > rest.len() {
                return None;
            }
            let payload = &rest[4..len];
            rest = rest.get(align(len)..).unwrap_or_default();
            Some((kind, payload))
        })
    }

    pub fn get(self, kind: u16) -> Option<&'a [u8]> {
        self.iter().find(|(k, _)| *k == kind).map(|(_, v)| v)
    }

    pub fn string(self, kind: u16) -> Option<String> {
        let raw = self.get(kind)?;
        let raw = raw.split(|b| *b == 0).next().unwrap_or_default();
        Some(String::from_utf8_lossy(raw).into_owned())
    }

    pub fn be_u32(self, kind: u16) -> Option<u32> {
        let b = self.get(kind)?.get(..4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Netlink messages being built, back to back in one buffer.
#[derive(Default)]
struct MsgBuf {
    bytes: Vec<u8>,
    /// Where the message being built starts.
    start: usize,
}

impl MsgBuf {
    fn begin(&mut self, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) {
        self.start = self.bytes.len();
        self.bytes.extend_from_slice(&0u32.to_ne_bytes()); // length, set in end()
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(&flags.to_ne_bytes());
        self.bytes.extend_from_slice(&seq.to_ne_bytes());
        self.bytes.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
        self.bytes.push(family);
        self.bytes.push(0); // NFNETLINK_V0
        self.bytes.extend_from_slice(&res_id.to_be_bytes());
    }

    fn end(&mut self) {
        let len = (self.bytes.len() - self.start) as u32;
        self.bytes[self.start..self.start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    fn attr_bytes(&mut self, kind: u16, value: &[u8]) {
        let len = (4 + value.len()) as u16;
        self.bytes.extend_from_slice(&len.to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(value);
        self.pad();
    }

    fn attr_str(&mut self, kind: u16, value: &str) {
        let mut raw = Vec::with_capacity(value.len() + 1);
        raw.extend_from_slice(value.as_bytes());
        raw.push(0);
        self.attr_bytes(kind, &raw);
    }

    fn nest_begin(&mut self, kind: u16) -> usize {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&0u16.to_ne_bytes());
        self.bytes
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        at
    }

    fn nest_end(&mut self, at: usize) {
        let len = (self.bytes.len() - at) as u16;
        self.bytes[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_message_layout() {
        let mut msg = MsgBuf::default();
        msg.begin(
            nft_type(NFT_MSG_NEWSETELEM),
            NLM_F_REQUEST,
            7,
            NFPROTO_INET,
            0,
        );
        elem_list(&mut msg, "t", "s_v4", &[10, 0, 0, 1]);
        msg.end();
        let b = &msg.bytes;
        assert_eq!(
            u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize,
            b.len()
        );
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), (10 << 8) | 12);
        assert_eq!(b[16], NFPROTO_INET);
        let attrs = Attrs(&b[20..]);
        assert_eq!(attrs.string(NFTA_SET_ELEM_LIST_TABLE).as_deref(), Some("t"));
        assert_eq!(
            attrs.string(NFTA_SET_ELEM_LIST_SET).as_deref(),
            Some("s_v4")
        );
        let elems = attrs.get(NFTA_SET_ELEM_LIST_ELEMENTS).unwrap();
        let elem = Attrs(elems).get(NFTA_LIST_ELEM).unwrap();
        let key = Attrs(elem).get(NFTA_SET_ELEM_KEY).unwrap();
        assert_eq!(Attrs(key).get(NFTA_DATA_VALUE), Some(&[10u8, 0, 0, 1][..]));
    }

    #[test]
    fn comment_from_userdata() {
        let mut udata = vec![NFTNL_UDATA_RULE_COMMENT, 4];
        udata.extend_from_slice(b"abc\0");
        assert_eq!(udata_comment(&udata).as_deref(), Some("abc"));
        assert_eq!(udata_comment(&[1, 1, 0]), None);
    }
}
