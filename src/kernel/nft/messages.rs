//! Raw nf_tables netlink (`NETLINK_NETFILTER`, subsystem `NFNL_SUBSYS_NFTABLES`):
//! the handful of messages gwsteer's hot paths need, so that a pod's set
//! membership and the "is this policy still intact?" check never exec `nft`.
//!
//! The one blocking netlink socket ([`crate::kernel::nl`], opened for nfnetlink by
//! [`crate::kernel::nft::nfnl`], which also has the wire format), opened on
//! the calling thread, connected to the kernel, with extended acks and a
//! receive timeout. Requests are strictly one at a time; answers are
//! matched by sequence number, so a late answer to an earlier request that
//! timed out is skipped.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::kernel::nft::nfnl::{
    self, Attrs, Ends, Msg, MsgBuf, NFGENMSG_LEN, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REQUEST, NLMSG_ERROR, NlError, Step,
};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;

pub const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
pub const NFT_MSG_DELTABLE: u16 = 2;
pub const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
pub const NFT_MSG_DELCHAIN: u16 = 5;
pub const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
pub const NFT_MSG_DELRULE: u16 = 8;
pub const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_GETSET: u16 = 10;
pub const NFT_MSG_DELSET: u16 = 11;
pub const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFT_MSG_GETGEN: u16 = 16;

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
const NFTA_SET_ELEM_FLAGS: u16 = 3;
/// `NFT_SET_ELEM_INTERVAL_END`.
const NFT_SET_ELEM_INTERVAL_END: u32 = 0x1;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFTA_SET_ELEM_EXPIRATION: u16 = 5;
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

/// What went wrong talking nf_tables netlink.
#[derive(Debug)]
pub struct NfError(NlError);

impl From<NlError> for NfError {
    fn from(e: NlError) -> NfError {
        NfError(e)
    }
}

impl NfError {
    pub fn errno(&self) -> Option<i32> {
        self.0.errno()
    }

    pub fn is_enoent(&self) -> bool {
        self.0.is_enoent()
    }
}

impl fmt::Display for NfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let io = |f: &mut fmt::Formatter<'_>, what: &str, e: &io::Error| write!(f, "{what}: {e}");
        match &self.0 {
            NlError::Kernel { errno, ext } => {
                write!(f, "{}", io::Error::from_raw_os_error(*errno))?;
                if let Some(ext) = ext {
                    write!(f, ": {ext}")?;
                }
                Ok(())
            }
            NlError::Socket(step, e) => {
                let what = match step {
                    Step::Open => "opening a NETLINK_NETFILTER socket",
                    Step::Bind => "binding the netlink socket",
                    Step::Connect => "connecting the netlink socket",
                    Step::SetTimeout => "setting the netlink receive timeout",
                    Step::StrictCheck => "asking for strict netlink checks",
                    Step::Send => "sending to nf_tables",
                    Step::Receive => "receiving from nf_tables",
                    Step::DeviceLookup => "looking up a network device",
                };
                io(f, what, e)
            }
            NlError::ShortSend { sent, len } => write!(f, "nf_tables took {sent} of {len} bytes"),
            NlError::Timeout(t) => write!(f, "nf_tables did not answer within {}s", t.as_secs()),
            NlError::TooLarge(n) => {
                write!(f, "an nf_tables answer of {n} bytes did not fit the buffer")
            }
            NlError::BadLength => f.write_str("a malformed netlink message"),
            NlError::TruncatedError => f.write_str("a truncated netlink error"),
            NlError::Malformed(what) => f.write_str(what),
            NlError::Other(what) => f.write_str(what),
        }
    }
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

mod dumps;
mod elements;
pub use dumps::{DumpedChain, DumpedElem, DumpedSet};
pub use elements::ElemOp;

/// Messages of one nf_tables batch being built: each numbered, with an ack
/// asked for, all for one family.
pub struct Batch<'s> {
    sock: &'s mut nfnl::Socket,
    msg: MsgBuf,
    family: u8,
    first: u32,
    last: Option<u32>,
}

impl Batch<'_> {
    /// Starts a message of type `kind` (`NFT_MSG_*`) with `flags` besides
    /// `NLM_F_REQUEST | NLM_F_ACK`; attributes follow, then [`MsgBuf::end`].
    pub fn begin(&mut self, kind: u16, flags: u16) -> &mut MsgBuf {
        let seq = self.sock.next_seq();
        self.last = Some(seq);
        self.msg.begin(
            nft_type(kind),
            NLM_F_REQUEST | NLM_F_ACK | flags,
            seq,
            self.family,
            0,
        )
    }
}

/// An nf_tables netlink socket in the namespace it was opened in.
pub struct NfSocket {
    sock: nfnl::Socket,
}

impl NfSocket {
    /// Opens the socket on the calling thread (so in its network namespace)
    /// and asks the kernel for the ruleset generation: proof that nf_tables
    /// answers and that gwsteer may talk to it.
    pub fn open() -> Result<NfSocket, NfError> {
        let seq = std::process::id().wrapping_mul(7919) ^ 0x5eed;
        let mut sock = nfnl::Socket::open(seq)?;
        sock.connect_kernel(REQUEST_TIMEOUT)?;
        let mut this = NfSocket { sock };
        this.generation()?;
        Ok(this)
    }

    /// The ruleset generation id (`NFT_MSG_GETGEN`); changes with every commit.
    pub fn generation(&mut self) -> Result<u32, NfError> {
        let seq = self.sock.next_seq();
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
            .find_map(|m| Attrs(&m[NFGENMSG_LEN.min(m.len())..]).be_u32(1))
            .ok_or(NfError(NlError::Malformed(
                "the kernel's generation answer had no id",
            )))
    }

    /// Does the table exist? One `NFT_MSG_GETTABLE`.
    pub fn table_exists(&mut self, family: u8, table: &str) -> Result<bool, NfError> {
        let seq = self.sock.next_seq();
        let mut msg = MsgBuf::default();
        msg.begin(nft_type(NFT_MSG_GETTABLE), NLM_F_REQUEST, seq, family, 0)
            .str(NFTA_TABLE_NAME, table)
            .end();
        found(self.request(&msg, seq).map(|_| true))
    }

    /// Does the chain exist? One `NFT_MSG_GETCHAIN`; a missing table is "no".
    /// (A rule dump cannot tell: filtered by a missing chain, it is empty.)
    pub fn chain_exists(&mut self, family: u8, table: &str, chain: &str) -> Result<bool, NfError> {
        let seq = self.sock.next_seq();
        let mut msg = MsgBuf::default();
        msg.begin(nft_type(NFT_MSG_GETCHAIN), NLM_F_REQUEST, seq, family, 0)
            .str(NFTA_CHAIN_TABLE, table)
            .str(NFTA_CHAIN_NAME, chain)
            .end();
        found(self.request(&msg, seq).map(|_| true))
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
            )
            .end();
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
            )
            .str(NFTA_RULE_TABLE, table);
            if let Some(chain) = chain {
                msg.str(NFTA_RULE_CHAIN, chain);
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

    /// One batch of the messages `fill` builds, committed all or nothing;
    /// done when the kernel has acked them all, or failed with the first
    /// error. A batch without messages sends nothing.
    pub fn commit(&mut self, family: u8, fill: impl FnOnce(&mut Batch<'_>)) -> Result<(), NfError> {
        let first = self.sock.next_seq();
        let mut msg = MsgBuf::default();
        batch_marker(&mut msg, NFNL_MSG_BATCH_BEGIN, first);
        let mut batch = Batch {
            sock: &mut self.sock,
            msg,
            family,
            first,
            last: None,
        };
        fill(&mut batch);
        let Batch {
            mut msg,
            first,
            last,
            ..
        } = batch;
        let Some(last) = last else {
            return Ok(());
        };
        let end = self.sock.next_seq();
        batch_marker(&mut msg, NFNL_MSG_BATCH_END, end);
        self.batch(&msg, first, last)
    }

    /// A non-dump request: its answers (message bodies after the header)
    /// until the kernel's ack or the single reply.
    fn request(&mut self, msg: &MsgBuf, seq: u32) -> Result<Vec<Vec<u8>>, NfError> {
        Ok(self.sock.request(msg, seq, Ends::Reply)?)
    }

    /// A batch whose message `seq` asked for an ack: done at that ack, or at
    /// the first error for any message of the batch (from `first_seq` on:
    /// a refused batch start or a failed commit is reported on the batch's
    /// first message).
    fn batch(&mut self, msg: &MsgBuf, first_seq: u32, seq: u32) -> Result<(), NfError> {
        self.sock.exchange(msg, |m: Msg<'_>| {
            if m.kind != NLMSG_ERROR || m.seq < first_seq || m.seq > seq.wrapping_add(1) {
                return Ok(false);
            }
            m.ack()?;
            Ok(m.seq == seq)
        })?;
        Ok(())
    }

    /// A dump: (type, body) of every message until `NLMSG_DONE`, retried
    /// when the kernel says the dump was interrupted by a change.
    fn dump(&mut self, build: impl Fn(&mut MsgBuf, u32)) -> Result<Vec<(u16, Vec<u8>)>, NfError> {
        Ok(self.sock.dump(build)?)
    }
}

/// A lookup's answer, with `ENOENT` (no such table, chain, set or element)
/// read as "no".
fn found(answer: Result<bool, NfError>) -> Result<bool, NfError> {
    match answer {
        Err(e) if e.is_enoent() => Ok(false),
        other => other,
    }
}

const fn nft_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

fn batch_marker(msg: &mut MsgBuf, kind: u16, seq: u32) {
    // The batch markers name the subsystem in nfgenmsg's res_id.
    msg.begin(
        kind,
        NLM_F_REQUEST,
        seq,
        NFPROTO_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
    )
    .end();
}

/// The comment among libnftnl userdata TLVs (u8 type, u8 length, value).
fn udata_comment(mut udata: &[u8]) -> Option<String> {
    while udata.len() >= 2 {
        let (kind, len) = (udata[0], usize::from(udata[1]));
        let value = udata.get(2..2 + len)?;
        if kind == NFTNL_UDATA_RULE_COMMENT {
            return Some(nfnl::c_string(value));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_from_userdata() {
        let mut udata = vec![NFTNL_UDATA_RULE_COMMENT, 4];
        udata.extend_from_slice(b"abc\0");
        assert_eq!(udata_comment(&udata).as_deref(), Some("abc"));
        assert_eq!(udata_comment(&[1, 1, 0]), None);
    }
}
