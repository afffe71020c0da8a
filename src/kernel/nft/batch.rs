//! A [`Transaction`] as one nf_tables netlink batch: the messages `nft`
//! would send for the same changes, built here so that making a policy's
//! chains costs a batch, not an `nft` process (~15 ms of start-up and
//! parsing before it sends the same bytes).
//!
//! Each [`Stmt`] becomes the expressions nft generates for it (checked
//! against `nft --debug=netlink`; the backend's tests prove that both
//! makings list the same): in an `inet` table an address match first loads
//! `meta nfproto` and compares it with the family, once per rule; a prefix
//! on a byte boundary loads only its bytes; several CIDRs or interface names
//! are an anonymous constant set made in the same batch (`__set%d`, named by
//! the kernel, found by its batch id). Interval sets hold a range as its
//! first key and, flagged as an end, the key after its last, with nft's
//! leading end element at the zero key.

use ipnet::IpNet;

use super::messages::{
    Batch, NFT_MSG_DELCHAIN, NFT_MSG_DELRULE, NFT_MSG_DELSET, NFT_MSG_DELTABLE, NFT_MSG_NEWCHAIN,
    NFT_MSG_NEWRULE, NFT_MSG_NEWSET, NFT_MSG_NEWSETELEM, NFT_MSG_NEWTABLE,
};
use super::nfnl::NLM_F_CREATE;
use super::ruleset::{Change, SetDef, Stmt, Transaction, set_flags};
use super::view::{
    NFT_SET_ANONYMOUS, NFT_SET_CONSTANT, NFT_SET_ELEM_INTERVAL_END, NFT_SET_INTERVAL,
    NFT_SET_TIMEOUT, TYPE_IFNAME, TYPE_IPV4_ADDR, TYPE_IPV6_ADDR, hook_number, key_max, ranges_of,
};
use crate::model::Family;

/// `NLM_F_EXCL`: fail if the object exists.
const NLM_F_EXCL: u16 = 0x200;
/// `NLM_F_APPEND`: a new rule goes to the end of its chain.
const NLM_F_APPEND: u16 = 0x800;

// enum nft_table_attributes, nft_chain_attributes, nft_rule_attributes
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
// enum nft_set_attributes, nft_set_desc_attributes
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_DESC: u16 = 9;
const NFTA_SET_DESC_SIZE: u16 = 1;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_USERDATA: u16 = 13;
// enum nft_set_elem_list_attributes, nft_set_elem_attributes, nft_data_attributes
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_LIST_SET_ID: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_DATA_VALUE: u16 = 1;
/// `NF_ACCEPT`, a chain's policy.
const NF_ACCEPT: u32 = 1;
/// `IFNAMSIZ`: an interface name key, NUL-padded.
const IFNAMSIZ: usize = 16;
// libnftnl's set userdata: the key's byte order (nft's BYTEORDER_*).
const NFTNL_UDATA_SET_KEYBYTEORDER: u8 = 0;
const BYTEORDER_HOST_ENDIAN: u32 = 1;
const BYTEORDER_BIG_ENDIAN: u32 = 2;
/// libnftnl's `NFTNL_UDATA_RULE_COMMENT`.
const NFTNL_UDATA_RULE_COMMENT: u8 = 0;
/// What an anonymous set is called until the kernel names it.
const ANONYMOUS: &str = "__set%d";

mod expr;

/// Puts the transaction's messages into `batch`.
pub fn encode(tx: &Transaction, batch: &mut Batch<'_>) {
    let mut enc = Encoder {
        tx,
        next_id: 1,
        made: Vec::new(),
    };
    for change in &tx.changes {
        enc.change(batch, change);
    }
}

struct Encoder<'t> {
    tx: &'t Transaction,
    /// The next batch-local set id.
    next_id: u32,
    /// Named sets made in this batch, with their ids: a rule's lookup
    /// names them by both.
    made: Vec<(String, u32)>,
}

/// A set about to be made: name, kernel numbers, key order, elements.
struct NewSet<'a> {
    name: &'a str,
    flags: u32,
    key_type: u32,
    key_len: usize,
    key_order: u32,
    /// Keys with their `NFT_SET_ELEM_*` flags.
    elems: Vec<(Vec<u8>, u32)>,
}

impl Encoder<'_> {
    fn change(&mut self, b: &mut Batch<'_>, change: &Change) {
        let table = self.tx.table.as_str();
        match change {
            Change::AddTable => {
                b.begin(NFT_MSG_NEWTABLE, NLM_F_CREATE)
                    .str(NFTA_TABLE_NAME, table)
                    .bytes(NFTA_TABLE_FLAGS, &0u32.to_be_bytes())
                    .end();
            }
            Change::CreateTable => {
                b.begin(NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_EXCL)
                    .str(NFTA_TABLE_NAME, table)
                    .bytes(NFTA_TABLE_FLAGS, &0u32.to_be_bytes())
                    .end();
            }
            Change::DeleteTable => b
                .begin(NFT_MSG_DELTABLE, 0)
                .str(NFTA_TABLE_NAME, table)
                .end(),
            Change::TouchChain(name) => b
                .begin(NFT_MSG_NEWCHAIN, NLM_F_CREATE)
                .str(NFTA_CHAIN_TABLE, table)
                .str(NFTA_CHAIN_NAME, name)
                .end(),
            Change::FlushChain(name) => b
                .begin(NFT_MSG_DELRULE, 0)
                .str(NFTA_RULE_TABLE, table)
                .str(NFTA_RULE_CHAIN, name)
                .end(),
            Change::DeleteChain(name) => b
                .begin(NFT_MSG_DELCHAIN, 0)
                .str(NFTA_CHAIN_TABLE, table)
                .str(NFTA_CHAIN_NAME, name)
                .end(),
            Change::DeleteSet(name) => b
                .begin(NFT_MSG_DELSET, 0)
                .str(NFTA_SET_TABLE, table)
                .str(NFTA_SET_NAME, name)
                .end(),
            Change::AddSet { set, new } => {
                let made = named_set(set, self.tx.timeouts);
                let id = self.new_set(b, &made, exclusive(*new));
                self.made.push((set.name.clone(), id));
            }
            Change::AddChain {
                name,
                kind,
                hook,
                prio,
                new,
            } => {
                // Plans name their hooks; an unknown one is a bug, which the
                // kernel then refuses (hook number out of range).
                let hook = hook_number(hook).unwrap_or(u32::MAX);
                b.begin(NFT_MSG_NEWCHAIN, NLM_F_CREATE | exclusive(*new))
                    .str(NFTA_CHAIN_TABLE, table)
                    .str(NFTA_CHAIN_NAME, name)
                    .nested(NFTA_CHAIN_HOOK, |h| {
                        h.bytes(NFTA_HOOK_HOOKNUM, &hook.to_be_bytes())
                            .bytes(NFTA_HOOK_PRIORITY, &(*prio as i32).to_be_bytes());
                    })
                    .bytes(NFTA_CHAIN_POLICY, &NF_ACCEPT.to_be_bytes())
                    .str(NFTA_CHAIN_TYPE, kind)
                    .end();
            }
            Change::AddRule { chain, rule } => self.rule(b, chain, rule),
        }
    }

    /// NEWSET and, if it has elements, NEWSETELEM; the set's batch id.
    fn new_set(&mut self, b: &mut Batch<'_>, set: &NewSet<'_>, excl: u16) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        let table = self.tx.table.as_str();
        let mut udata = vec![NFTNL_UDATA_SET_KEYBYTEORDER, 4];
        udata.extend_from_slice(&set.key_order.to_ne_bytes());
        let msg = b
            .begin(NFT_MSG_NEWSET, NLM_F_CREATE | excl)
            .str(NFTA_SET_TABLE, table)
            .str(NFTA_SET_NAME, set.name)
            .bytes(NFTA_SET_FLAGS, &set.flags.to_be_bytes())
            .bytes(NFTA_SET_KEY_TYPE, &set.key_type.to_be_bytes())
            .bytes(NFTA_SET_KEY_LEN, &(set.key_len as u32).to_be_bytes())
            .bytes(NFTA_SET_ID, &id.to_be_bytes());
        if set.flags & NFT_SET_CONSTANT != 0 {
            let size = set.elems.len() as u32;
            msg.nested(NFTA_SET_DESC, |d| {
                d.bytes(NFTA_SET_DESC_SIZE, &size.to_be_bytes());
            });
        }
        msg.bytes(NFTA_SET_USERDATA, &udata).end();
        if !set.elems.is_empty() {
            b.begin(NFT_MSG_NEWSETELEM, NLM_F_CREATE)
                .str(NFTA_SET_ELEM_LIST_TABLE, table)
                .str(NFTA_SET_ELEM_LIST_SET, set.name)
                .bytes(NFTA_SET_ELEM_LIST_SET_ID, &id.to_be_bytes())
                .nested(NFTA_SET_ELEM_LIST_ELEMENTS, |list| {
                    for (key, flags) in &set.elems {
                        list.nested(NFTA_LIST_ELEM, |e| {
                            if *flags != 0 {
                                e.bytes(NFTA_SET_ELEM_FLAGS, &flags.to_be_bytes());
                            }
                            e.nested(NFTA_SET_ELEM_KEY, |k| {
                                k.bytes(NFTA_DATA_VALUE, key);
                            });
                        });
                    }
                })
                .end();
        }
        id
    }

    fn rule(&mut self, b: &mut Batch<'_>, chain: &str, rule: &[Stmt]) {
        // Anonymous sets go before the rule that uses them.
        let mut anon = Vec::new();
        for stmt in rule {
            if let Some(set) = anonymous_set(stmt) {
                anon.push(self.new_set(b, &set, 0));
            }
        }
        let mut udata = vec![NFTNL_UDATA_RULE_COMMENT, (self.tx.comment.len() + 1) as u8];
        udata.extend_from_slice(self.tx.comment.as_bytes());
        udata.push(0);
        let table = self.tx.table.as_str();
        let made = &self.made;
        b.begin(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND)
            .str(NFTA_RULE_TABLE, table)
            .str(NFTA_RULE_CHAIN, chain)
            .nested(NFTA_RULE_EXPRESSIONS, |m| {
                let mut proto: Option<Family> = None;
                let mut anon = anon.into_iter();
                for stmt in rule {
                    let set_id =
                        |name: &str| made.iter().find(|(n, _)| n == name).map(|(_, id)| *id);
                    expr::stmt_exprs(m, stmt, &mut proto, &mut anon, set_id);
                }
            })
            .bytes(NFTA_RULE_USERDATA, &udata)
            .end();
    }
}

/// `NLM_F_EXCL` for an object that must not exist yet.
fn exclusive(new: bool) -> u16 {
    if new { NLM_F_EXCL } else { 0 }
}

/// A named set of a plan: member (hash, maybe timeout) or constant interval.
fn named_set(set: &SetDef, timeouts: bool) -> NewSet<'_> {
    let flags = set_flags(set, timeouts)
        .iter()
        .map(|f| match f.as_str() {
            "constant" => NFT_SET_CONSTANT,
            "interval" => NFT_SET_INTERVAL,
            "timeout" => NFT_SET_TIMEOUT,
            _ => 0,
        })
        .fold(0, |all, bit| all | bit);
    NewSet {
        name: &set.name,
        flags,
        key_type: key_type(set.family),
        key_len: key_len(set.family),
        key_order: BYTEORDER_BIG_ENDIAN,
        elems: set
            .constant
            .as_deref()
            .map(|cidrs| interval_elems(cidrs, set.family))
            .unwrap_or_default(),
    }
}

/// The anonymous set a statement needs, if any.
fn anonymous_set(stmt: &Stmt) -> Option<NewSet<'static>> {
    match stmt {
        Stmt::InCidrs { family, cidrs, .. } if cidrs.len() > 1 => Some(NewSet {
            name: ANONYMOUS,
            flags: NFT_SET_ANONYMOUS | NFT_SET_CONSTANT | NFT_SET_INTERVAL,
            key_type: key_type(*family),
            key_len: key_len(*family),
            key_order: BYTEORDER_BIG_ENDIAN,
            elems: interval_elems(cidrs, *family),
        }),
        Stmt::IifName(names) if names.len() > 1 => Some(NewSet {
            name: ANONYMOUS,
            flags: NFT_SET_ANONYMOUS | NFT_SET_CONSTANT,
            key_type: TYPE_IFNAME,
            key_len: IFNAMSIZ,
            key_order: BYTEORDER_HOST_ENDIAN,
            elems: names.iter().map(|n| (ifname(n), 0)).collect(),
        }),
        _ => None,
    }
}

/// The elements of an interval set holding `cidrs`, ascending: nft's
/// leading end at the zero key (unless a range starts there), then each
/// range's first key and the key after its last (none after the largest).
fn interval_elems(cidrs: &[IpNet], family: Family) -> Vec<(Vec<u8>, u32)> {
    let len = key_len(family);
    let key = |n: u128| n.to_be_bytes()[16 - len..].to_vec();
    let ranges = ranges_of(cidrs);
    let mut elems = Vec::new();
    if ranges.first().is_some_and(|(lo, _)| *lo != 0) {
        elems.push((key(0), NFT_SET_ELEM_INTERVAL_END));
    }
    for (lo, hi) in ranges {
        elems.push((key(lo), 0));
        if hi != key_max(len) {
            elems.push((key(hi + 1), NFT_SET_ELEM_INTERVAL_END));
        }
    }
    elems
}

fn key_type(family: Family) -> u32 {
    match family {
        Family::V4 => TYPE_IPV4_ADDR,
        Family::V6 => TYPE_IPV6_ADDR,
    }
}

fn key_len(family: Family) -> usize {
    match family {
        Family::V4 => 4,
        Family::V6 => 16,
    }
}

/// An interface name as a key: NUL-padded to `IFNAMSIZ` (config checks the
/// length).
fn ifname(name: &str) -> Vec<u8> {
    let mut key = name.as_bytes().to_vec();
    key.resize(IFNAMSIZ, 0);
    key
}

/// Deletes a table and everything in it (cleanup; the batch's family).
pub fn delete_table(b: &mut Batch<'_>, table: &str) {
    b.begin(NFT_MSG_DELTABLE, 0)
        .str(NFTA_TABLE_NAME, table)
        .end();
}
