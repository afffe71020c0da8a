//! The dumps that read one of gwsteer's tables back: its chains, its sets
//! and a set's elements (what [`crate::kernel::nft::view`] is made of).

use super::{
    Attrs, NFGENMSG_LEN, NFT_MSG_GETCHAIN, NFT_MSG_GETSET, NFT_MSG_GETSETELEM, NFT_MSG_NEWCHAIN,
    NFT_MSG_NEWSET, NFT_MSG_NEWSETELEM, NFTA_CHAIN_NAME, NFTA_CHAIN_TABLE, NFTA_DATA_VALUE,
    NFTA_LIST_ELEM, NFTA_SET_ELEM_FLAGS, NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_LIST_ELEMENTS,
    NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_TABLE, NLM_F_DUMP, NLM_F_REQUEST, NfError, NfSocket,
    nft_type,
};

const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
// enum nft_set_attributes
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;

/// A chain as a dump reports it: name, type and, for a base chain, hook
/// number and priority.
#[derive(Debug, Clone)]
pub struct DumpedChain {
    pub name: String,
    pub kind: Option<String>,
    pub hook: Option<(u32, i32)>,
}

/// A set as a dump reports it (numbers as the kernel has them).
#[derive(Debug, Clone)]
pub struct DumpedSet {
    pub name: String,
    pub flags: u32,
    pub key_type: u32,
    pub key_len: u32,
}

/// A set element as a dump reports it: its key and `NFT_SET_ELEM_*` flags.
#[derive(Debug, Clone)]
pub struct DumpedElem {
    pub key: Vec<u8>,
    pub flags: u32,
}

impl NfSocket {
    /// The chains of one table (`NFT_MSG_GETCHAIN` dump). A missing table
    /// is an `ENOENT` error or no chains, as the kernel has it.
    pub fn chains(&mut self, family: u8, table: &str) -> Result<Vec<DumpedChain>, NfError> {
        let answer = self.dump(|msg, seq| {
            msg.begin(
                nft_type(NFT_MSG_GETCHAIN),
                NLM_F_REQUEST | NLM_F_DUMP,
                seq,
                family,
                0,
            )
            .str(NFTA_CHAIN_TABLE, table)
            .end();
        })?;
        Ok(of_table(&answer, NFT_MSG_NEWCHAIN, NFTA_CHAIN_TABLE, table)
            .filter_map(|attrs| {
                let hook = attrs.nested(NFTA_CHAIN_HOOK).and_then(|h| {
                    Some((
                        h.be_u32(NFTA_HOOK_HOOKNUM)?,
                        h.be_u32(NFTA_HOOK_PRIORITY)? as i32,
                    ))
                });
                Some(DumpedChain {
                    name: attrs.string(NFTA_CHAIN_NAME)?,
                    kind: attrs.string(NFTA_CHAIN_TYPE),
                    hook,
                })
            })
            .collect())
    }

    /// The sets of one table, anonymous ones included (`NFT_MSG_GETSET` dump).
    pub fn sets(&mut self, family: u8, table: &str) -> Result<Vec<DumpedSet>, NfError> {
        let answer = self.dump(|msg, seq| {
            msg.begin(
                nft_type(NFT_MSG_GETSET),
                NLM_F_REQUEST | NLM_F_DUMP,
                seq,
                family,
                0,
            )
            .str(NFTA_SET_TABLE, table)
            .end();
        })?;
        Ok(of_table(&answer, NFT_MSG_NEWSET, NFTA_SET_TABLE, table)
            .filter_map(|attrs| {
                Some(DumpedSet {
                    name: attrs.string(NFTA_SET_NAME)?,
                    flags: attrs.be_u32(NFTA_SET_FLAGS).unwrap_or(0),
                    key_type: attrs.be_u32(NFTA_SET_KEY_TYPE).unwrap_or(0),
                    key_len: attrs.be_u32(NFTA_SET_KEY_LEN).unwrap_or(0),
                })
            })
            .collect())
    }

    /// The elements of one set (`NFT_MSG_GETSETELEM` dump).
    pub fn elements(
        &mut self,
        family: u8,
        table: &str,
        set: &str,
    ) -> Result<Vec<DumpedElem>, NfError> {
        let answer = self.dump(|msg, seq| {
            msg.begin(
                nft_type(NFT_MSG_GETSETELEM),
                NLM_F_REQUEST | NLM_F_DUMP,
                seq,
                family,
                0,
            )
            .str(NFTA_SET_ELEM_LIST_TABLE, table)
            .str(NFTA_SET_ELEM_LIST_SET, set)
            .end();
        })?;
        let mut elems = Vec::new();
        for attrs in of_table(&answer, NFT_MSG_NEWSETELEM, NFTA_SET_ELEM_LIST_TABLE, table) {
            if attrs.string(NFTA_SET_ELEM_LIST_SET).as_deref() != Some(set) {
                continue;
            }
            let Some(list) = attrs.nested(NFTA_SET_ELEM_LIST_ELEMENTS) else {
                continue;
            };
            for (kind, elem) in list.iter() {
                if kind != NFTA_LIST_ELEM {
                    continue;
                }
                let elem = Attrs(elem);
                let Some(key) = elem
                    .nested(NFTA_SET_ELEM_KEY)
                    .and_then(|k| k.get(NFTA_DATA_VALUE))
                else {
                    continue;
                };
                elems.push(DumpedElem {
                    key: key.to_vec(),
                    flags: elem.be_u32(NFTA_SET_ELEM_FLAGS).unwrap_or(0),
                });
            }
        }
        Ok(elems)
    }
}

/// The attributes of the dumped messages of type `kind` (`NFT_MSG_*`)
/// whose `table_attr` names `table`: the kernel filters by table, this
/// guards against one that does not.
fn of_table<'a>(
    answer: &'a [(u16, Vec<u8>)],
    kind: u16,
    table_attr: u16,
    table: &'a str,
) -> impl Iterator<Item = Attrs<'a>> + 'a {
    answer
        .iter()
        .filter(move |(k, _)| *k == nft_type(kind))
        .map(|(_, body)| Attrs(body.get(NFGENMSG_LEN..).unwrap_or_default()))
        .filter(move |attrs| attrs.string(table_attr).as_deref() == Some(table))
}
