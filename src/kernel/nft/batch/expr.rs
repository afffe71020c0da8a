//! The expressions of each [`Stmt`], as nft generates them (checked
//! against `nft --debug=netlink`): registers, payload offsets, byte orders.

use ipnet::IpNet;

use super::{ANONYMOUS, NFTA_DATA_VALUE, NFTA_LIST_ELEM, ifname};
use crate::kernel::nft::nfnl::MsgBuf;
use crate::kernel::nft::ruleset::{Field, MarkOf, Stmt};
use crate::model::Family;

const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFT_REG_1: u32 = 1;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_META_SREG: u16 = 3;
const NFT_META_MARK: u32 = 3;
const NFT_META_IIFNAME: u32 = 6;
const NFT_META_NFPROTO: u32 = 15;
const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFTA_CT_SREG: u16 = 4;
const NFT_CT_STATE: u32 = 0;
const NFT_CT_DIRECTION: u32 = 1;
const NFT_CT_MARK: u32 = 3;
/// `IP_CT_DIR_REPLY`, `NF_CT_STATE_BIT(IP_CT_NEW)`.
const CT_DIR_REPLY: u8 = 1;
const CT_STATE_NEW: u32 = 0x8;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFTA_LOOKUP_SET: u16 = 1;
const NFTA_LOOKUP_SREG: u16 = 2;
const NFTA_LOOKUP_SET_ID: u16 = 4;
const NFTA_LOOKUP_FLAGS: u16 = 5;
const NFT_LOOKUP_F_INV: u32 = 1;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_BITWISE_OP: u16 = 6;
const NFT_BITWISE_BOOL: u32 = 0;
const NFTA_NAT_TYPE: u16 = 1;
const NFTA_NAT_FAMILY: u16 = 2;
const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
const NFT_NAT_SNAT: u32 = 0;

/// `NFPROTO_*` of a family, as `meta nfproto` holds it.
fn nfproto(family: Family) -> u8 {
    match family {
        Family::V4 => 2,
        Family::V6 => 10,
    }
}

/// Offset and length of an address in the network header.
fn address_at(family: Family, field: Field) -> (u32, u32) {
    match (family, field) {
        (Family::V4, Field::Saddr) => (12, 4),
        (Family::V4, Field::Daddr) => (16, 4),
        (Family::V6, Field::Saddr) => (8, 16),
        (Family::V6, Field::Daddr) => (24, 16),
    }
}

/// The expressions of one statement. `proto`: the family the rule has
/// already matched (nft adds the `meta nfproto` dependency once).
pub(super) fn stmt_exprs(
    m: &mut MsgBuf,
    stmt: &Stmt,
    proto: &mut Option<Family>,
    anon: &mut impl Iterator<Item = u32>,
    set_id: impl Fn(&str) -> Option<u32>,
) {
    let mut depend = |m: &mut MsgBuf, family: Family| {
        if *proto != Some(family) {
            meta_load(m, NFT_META_NFPROTO);
            cmp(m, NFT_CMP_EQ, &[nfproto(family)]);
            *proto = Some(family);
        }
    };
    match stmt {
        Stmt::InSet {
            family,
            field,
            set,
            negate,
        } => {
            depend(m, *family);
            let (offset, len) = address_at(*family, *field);
            payload(m, offset, len);
            lookup(m, set, set_id(set), *negate);
        }
        Stmt::InCidrs {
            family,
            field,
            cidrs,
        } => {
            depend(m, *family);
            let (offset, len) = address_at(*family, *field);
            match cidrs.as_slice() {
                [one] => prefix_match(m, offset, len, one),
                _ => {
                    payload(m, offset, len);
                    lookup(m, ANONYMOUS, anon.next(), false);
                }
            }
        }
        Stmt::IifName(names) => {
            meta_load(m, NFT_META_IIFNAME);
            match names.as_slice() {
                [one] => cmp(m, NFT_CMP_EQ, &ifname(one)),
                _ => lookup(m, ANONYMOUS, anon.next(), false),
            }
        }
        Stmt::CtStateNew => {
            ct_load(m, NFT_CT_STATE);
            bitwise(m, &CT_STATE_NEW.to_ne_bytes(), &0u32.to_ne_bytes());
            cmp(m, NFT_CMP_NEQ, &0u32.to_ne_bytes());
        }
        Stmt::CtReply => {
            ct_load(m, NFT_CT_DIRECTION);
            cmp(m, NFT_CMP_EQ, &[CT_DIR_REPLY]);
        }
        Stmt::CtMarkIs { mark, mask } => {
            ct_load(m, NFT_CT_MARK);
            if *mask != u32::MAX {
                bitwise(m, &mask.to_ne_bytes(), &0u32.to_ne_bytes());
            }
            cmp(m, NFT_CMP_EQ, &mark.to_ne_bytes());
        }
        Stmt::SetMark { of, mark, mask } => {
            if *mask == u32::MAX {
                expr(m, "immediate", |d| {
                    d.bytes(NFTA_IMMEDIATE_DREG, &NFT_REG_1.to_be_bytes())
                        .nested(NFTA_IMMEDIATE_DATA, |v| {
                            v.bytes(NFTA_DATA_VALUE, &mark.to_ne_bytes());
                        });
                });
            } else {
                match of {
                    MarkOf::Packet => meta_load(m, NFT_META_MARK),
                    MarkOf::Conn => ct_load(m, NFT_CT_MARK),
                }
                bitwise(m, &(!mask).to_ne_bytes(), &mark.to_ne_bytes());
            }
            match of {
                MarkOf::Packet => expr(m, "meta", |d| {
                    d.bytes(NFTA_META_KEY, &NFT_META_MARK.to_be_bytes())
                        .bytes(NFTA_META_SREG, &NFT_REG_1.to_be_bytes());
                }),
                MarkOf::Conn => expr(m, "ct", |d| {
                    d.bytes(NFTA_CT_KEY, &NFT_CT_MARK.to_be_bytes())
                        .bytes(NFTA_CT_SREG, &NFT_REG_1.to_be_bytes());
                }),
            }
        }
        Stmt::SnatToSelf { family } => {
            depend(m, *family);
            let (offset, len) = address_at(*family, Field::Saddr);
            payload(m, offset, len);
            expr(m, "nat", |d| {
                d.bytes(NFTA_NAT_TYPE, &NFT_NAT_SNAT.to_be_bytes())
                    .bytes(NFTA_NAT_FAMILY, &u32::from(nfproto(*family)).to_be_bytes())
                    .bytes(NFTA_NAT_REG_ADDR_MIN, &NFT_REG_1.to_be_bytes());
            });
        }
    }
}

/// `<address> == cidr` as nft builds it: a whole address compared; a
/// prefix on a byte boundary by loading only its bytes; another prefix
/// masked first.
fn prefix_match(m: &mut MsgBuf, offset: u32, len: u32, net: &IpNet) {
    let net = net.trunc();
    let bytes = match net.network() {
        std::net::IpAddr::V4(a) => a.octets().to_vec(),
        std::net::IpAddr::V6(a) => a.octets().to_vec(),
    };
    let prefix = u32::from(net.prefix_len());
    if prefix % 8 == 0 && prefix > 0 {
        let n = prefix / 8;
        payload(m, offset, n);
        cmp(m, NFT_CMP_EQ, &bytes[..n as usize]);
    } else {
        payload(m, offset, len);
        let mask = match net.netmask() {
            std::net::IpAddr::V4(a) => a.octets().to_vec(),
            std::net::IpAddr::V6(a) => a.octets().to_vec(),
        };
        bitwise(m, &mask, &vec![0; mask.len()]);
        cmp(m, NFT_CMP_EQ, &bytes);
    }
}

/// One expression: its name and the attributes `data` adds.
fn expr(m: &mut MsgBuf, name: &str, data: impl FnOnce(&mut MsgBuf)) {
    m.nested(NFTA_LIST_ELEM, |e| {
        e.str(NFTA_EXPR_NAME, name).nested(NFTA_EXPR_DATA, data);
    });
}

fn meta_load(m: &mut MsgBuf, key: u32) {
    expr(m, "meta", |d| {
        d.bytes(NFTA_META_KEY, &key.to_be_bytes())
            .bytes(NFTA_META_DREG, &NFT_REG_1.to_be_bytes());
    });
}

fn ct_load(m: &mut MsgBuf, key: u32) {
    expr(m, "ct", |d| {
        d.bytes(NFTA_CT_KEY, &key.to_be_bytes())
            .bytes(NFTA_CT_DREG, &NFT_REG_1.to_be_bytes());
    });
}

fn payload(m: &mut MsgBuf, offset: u32, len: u32) {
    expr(m, "payload", |d| {
        d.bytes(NFTA_PAYLOAD_DREG, &NFT_REG_1.to_be_bytes())
            .bytes(NFTA_PAYLOAD_BASE, &NFT_PAYLOAD_NETWORK_HEADER.to_be_bytes())
            .bytes(NFTA_PAYLOAD_OFFSET, &offset.to_be_bytes())
            .bytes(NFTA_PAYLOAD_LEN, &len.to_be_bytes());
    });
}

fn cmp(m: &mut MsgBuf, op: u32, value: &[u8]) {
    expr(m, "cmp", |d| {
        d.bytes(NFTA_CMP_SREG, &NFT_REG_1.to_be_bytes())
            .bytes(NFTA_CMP_OP, &op.to_be_bytes())
            .nested(NFTA_CMP_DATA, |v| {
                v.bytes(NFTA_DATA_VALUE, value);
            });
    });
}

/// `reg = (reg & mask) ^ xor` over the mask's length.
fn bitwise(m: &mut MsgBuf, mask: &[u8], xor: &[u8]) {
    expr(m, "bitwise", |d| {
        d.bytes(NFTA_BITWISE_SREG, &NFT_REG_1.to_be_bytes())
            .bytes(NFTA_BITWISE_DREG, &NFT_REG_1.to_be_bytes())
            .bytes(NFTA_BITWISE_OP, &NFT_BITWISE_BOOL.to_be_bytes())
            .bytes(NFTA_BITWISE_LEN, &(mask.len() as u32).to_be_bytes())
            .nested(NFTA_BITWISE_MASK, |v| {
                v.bytes(NFTA_DATA_VALUE, mask);
            })
            .nested(NFTA_BITWISE_XOR, |v| {
                v.bytes(NFTA_DATA_VALUE, xor);
            });
    });
}

fn lookup(m: &mut MsgBuf, set: &str, id: Option<u32>, negate: bool) {
    expr(m, "lookup", |d| {
        d.bytes(NFTA_LOOKUP_SREG, &NFT_REG_1.to_be_bytes())
            .str(NFTA_LOOKUP_SET, set);
        if let Some(id) = id {
            d.bytes(NFTA_LOOKUP_SET_ID, &id.to_be_bytes());
        }
        if negate {
            d.bytes(NFTA_LOOKUP_FLAGS, &NFT_LOOKUP_F_INV.to_be_bytes());
        }
    });
}
