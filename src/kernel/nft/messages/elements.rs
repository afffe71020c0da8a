//! A set's elements: one added, expired or deleted, an interval set's
//! range, one looked up. Each change is a batch of its own: a pod's ADD or
//! DEL touches one element, never the set.

use super::{
    MsgBuf, NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END, NFT_MSG_DELSETELEM, NFT_MSG_GETSETELEM,
    NFT_MSG_NEWSETELEM, NFT_SET_ELEM_INTERVAL_END, NFTA_DATA_VALUE, NFTA_LIST_ELEM,
    NFTA_SET_ELEM_EXPIRATION, NFTA_SET_ELEM_FLAGS, NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_LIST_ELEMENTS,
    NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_TIMEOUT, NLM_F_ACK,
    NLM_F_CREATE, NLM_F_REQUEST, NfError, NfSocket, batch_marker, found, nft_type,
};

/// Whether a set element is to be added or deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemOp {
    Add,
    Delete,
    /// The element expires in a millisecond (an update of its timeout, in
    /// a set with `flags timeout`, Linux ≥ 6.10): gone as good as at once,
    /// without a deleting transaction — whose release makes the socket's
    /// close wait for an RCU grace period under the nf_tables commit mutex
    /// (`nft_rcv_nl_event` flushes the destroy list), 10–30 ms per DEL and
    /// every concurrent caller in line behind it. Expired elements go by the
    /// set's own garbage collection. `EINVAL` means the set has no timeout
    /// flag (made by an earlier version): then delete.
    Expire,
}

/// How soon an expiring element stops matching: the kernel counts in
/// jiffies, so "1 ms" is at most one tick (4 ms at HZ=250).
const EXPIRE_MS: u64 = 1;

impl NfSocket {
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
        // CREATE without EXCL: an element that is already there is fine
        // (and, in a timeout set, loses any expiry it had).
        let add = op != ElemOp::Delete;
        let expiry = (op == ElemOp::Expire).then_some(EXPIRE_MS);
        self.element_batch(add, op != ElemOp::Add, family, |msg| {
            elem_list_with(msg, table, set, key, expiry)
        })
    }

    /// One `NFT_MSG_NEWSETELEM` (`add`) or `NFT_MSG_DELSETELEM` whose
    /// attributes `fill` adds, in a batch of its own. With `missing_ok`, a
    /// missing table, set or element is success.
    fn element_batch(
        &mut self,
        add: bool,
        missing_ok: bool,
        family: u8,
        fill: impl FnOnce(&mut MsgBuf),
    ) -> Result<(), NfError> {
        let begin_seq = self.sock.next_seq();
        let seq = self.sock.next_seq();
        let end_seq = self.sock.next_seq();
        let mut msg = MsgBuf::default();
        batch_marker(&mut msg, NFNL_MSG_BATCH_BEGIN, begin_seq);
        let (kind, flags) = if add {
            (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK)
        } else {
            (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK)
        };
        msg.begin(nft_type(kind), flags, seq, family, 0);
        fill(&mut msg);
        msg.end();
        batch_marker(&mut msg, NFNL_MSG_BATCH_END, end_seq);
        match self.batch(&msg, begin_seq, seq) {
            Err(e) if missing_ok && e.is_enoent() => Ok(()),
            other => other,
        }
    }

    /// Adds (`add`) or deletes a range of an interval set, in a batch of its
    /// own: its first key and, flagged as an end, `end` — the key after its
    /// last (none for a range up to the largest key). Adding a range that is
    /// there and deleting one that is not both succeed.
    pub fn set_range(
        &mut self,
        add: bool,
        family: u8,
        table: &str,
        set: &str,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Result<(), NfError> {
        let mut elems = vec![Elem::key(start)];
        if let Some(end) = end {
            elems.push(Elem {
                end: true,
                ..Elem::key(end)
            });
        }
        self.element_batch(add, !add, family, |msg| {
            elem_list_of(msg, table, set, &elems)
        })
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
        let seq = self.sock.next_seq();
        let mut msg = MsgBuf::default();
        msg.begin(nft_type(NFT_MSG_GETSETELEM), NLM_F_REQUEST, seq, family, 0);
        elem_list(&mut msg, table, set, key);
        msg.end();
        found(self.request(&msg, seq).map(|answer| !answer.is_empty()))
    }
}

/// `NFTA_SET_ELEM_LIST_*` naming one element by its key.
fn elem_list(msg: &mut MsgBuf, table: &str, set: &str, key: &[u8]) {
    elem_list_of(msg, table, set, &[Elem::key(key)])
}

/// One element; with `expire_ms`, a timeout and an expiration of that
/// many milliseconds.
fn elem_list_with(msg: &mut MsgBuf, table: &str, set: &str, key: &[u8], expire_ms: Option<u64>) {
    elem_list_of(
        msg,
        table,
        set,
        &[Elem {
            expire_ms,
            ..Elem::key(key)
        }],
    )
}

/// An element of a set element list.
#[derive(Clone, Copy)]
struct Elem<'a> {
    key: &'a [u8],
    /// `NFT_SET_ELEM_INTERVAL_END`: the key after a range's last.
    end: bool,
    /// A timeout and expiration of this many milliseconds (big-endian u64,
    /// as the kernel reads them).
    expire_ms: Option<u64>,
}

impl<'a> Elem<'a> {
    fn key(key: &'a [u8]) -> Elem<'a> {
        Elem {
            key,
            end: false,
            expire_ms: None,
        }
    }
}

/// `NFTA_SET_ELEM_LIST_*` with these elements.
fn elem_list_of(msg: &mut MsgBuf, table: &str, set: &str, elems: &[Elem<'_>]) {
    msg.str(NFTA_SET_ELEM_LIST_TABLE, table)
        .str(NFTA_SET_ELEM_LIST_SET, set)
        .nested(NFTA_SET_ELEM_LIST_ELEMENTS, |m| {
            for e in elems {
                m.nested(NFTA_LIST_ELEM, |m| {
                    if e.end {
                        m.bytes(
                            NFTA_SET_ELEM_FLAGS,
                            &NFT_SET_ELEM_INTERVAL_END.to_be_bytes(),
                        );
                    }
                    m.nested(NFTA_SET_ELEM_KEY, |m| {
                        m.bytes(NFTA_DATA_VALUE, e.key);
                    });
                    if let Some(ms) = e.expire_ms {
                        m.bytes(NFTA_SET_ELEM_TIMEOUT, &ms.to_be_bytes());
                        // 0 would mean "the timeout" to the kernel: say 1 ms.
                        m.bytes(NFTA_SET_ELEM_EXPIRATION, &ms.to_be_bytes());
                    }
                });
            }
        });
}

#[cfg(test)]
mod tests {
    use super::super::{Attrs, NFPROTO_INET};
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
        let b = msg.as_bytes();
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
}
