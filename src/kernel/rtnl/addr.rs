//! Addresses on links gwsteer made (the VRF's legs) and the IPv6 addresses
//! of an underlay (the VXLAN's source).

use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};

use super::*;

pub(super) fn address_of(msg: &AddressMessage) -> Option<IpNet> {
    // IPv4 carries the interface's own address in IFA_LOCAL (IFA_ADDRESS is
    // the peer's on point-to-point links); IPv6 only in IFA_ADDRESS.
    let mut local = None;
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    IpNet::new(local.or(address)?, msg.header.prefix_len).ok()
}

/// An IPv6 address of a device as `ip -6 addr` shows it: its scope and
/// the flags that make it unusable as a source (`tentative`, `dadfailed`,
/// `deprecated`) or short-lived (`temporary`, privacy extensions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V6Address {
    pub addr: std::net::Ipv6Addr,
    pub prefix_len: u8,
    /// Scope global (not link, host or site).
    pub global: bool,
    pub tentative: bool,
    pub dadfailed: bool,
    pub deprecated: bool,
    pub temporary: bool,
}

impl fmt::Display for V6Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)?;
        if !self.global {
            f.write_str(" (not global)")?;
        }
        for (set, name) in [
            (self.tentative, "tentative"),
            (self.dadfailed, "dadfailed"),
            (self.deprecated, "deprecated"),
            (self.temporary, "temporary"),
        ] {
            if set {
                write!(f, " {name}")?;
            }
        }
        Ok(())
    }
}

pub(super) fn v6_address(msg: &AddressMessage) -> Option<V6Address> {
    use netlink_packet_route::address::{AddressHeaderFlags, AddressScope};
    let addr = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(IpAddr::V6(v6)) => Some(*v6),
        _ => None,
    })?;
    // IFA_FLAGS (32 bits) when the kernel sends it, else the header's 8.
    let flags = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Flags(f) => Some(*f),
        _ => None,
    });
    let has = |full: AddressFlags, short: AddressHeaderFlags| match flags {
        Some(f) => f.contains(full),
        None => msg.header.flags.contains(short),
    };
    Some(V6Address {
        addr,
        prefix_len: msg.header.prefix_len,
        global: msg.header.scope == AddressScope::Universe,
        tentative: has(AddressFlags::Tentative, AddressHeaderFlags::Tentative),
        dadfailed: has(AddressFlags::Dadfailed, AddressHeaderFlags::Dadfailed),
        deprecated: has(AddressFlags::Deprecated, AddressHeaderFlags::Deprecated),
        temporary: has(AddressFlags::Secondary, AddressHeaderFlags::Secondary),
    })
}

impl NetlinkKernel {
    pub(super) fn address_message(index: u32, addr: &IpNet) -> AddressMessage {
        let mut msg = AddressMessage::default();
        msg.header.family = address_family(Family::of_net(addr));
        msg.header.prefix_len = addr.prefix_len();
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Address(addr.addr()));
        match addr {
            IpNet::V4(_) => msg.attributes.push(AddressAttribute::Local(addr.addr())),
            // A leg's IPv6 address is usable at once: no duplicate address
            // detection on a veth pair that only gwsteer uses.
            IpNet::V6(_) => msg
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad)),
        }
        msg
    }

    /// The addresses of device `dev` in the node (with their prefix
    /// lengths); `None` if there is no such device.
    pub(crate) fn addresses_of(&mut self, dev: &str) -> Result<Option<Vec<IpNet>>> {
        Ok(self
            .address_messages(dev, AddressFamily::Unspec)?
            .map(|list| list.iter().filter_map(address_of).collect()))
    }

    /// The IPv6 addresses of device `dev` in the node, with what decides
    /// whether one can be a VXLAN's source; `None` if there is no such device.
    pub(crate) fn ipv6_addresses(&mut self, dev: &str) -> Result<Option<Vec<V6Address>>> {
        Ok(self
            .address_messages(dev, AddressFamily::Inet6)?
            .map(|list| list.iter().filter_map(v6_address).collect()))
    }

    /// The node's address messages of device `dev` (of `family`, or all);
    /// `None` if there is no such device. The socket checks dump requests
    /// strictly, so the kernel sends only that device's addresses.
    pub(super) fn address_messages(
        &mut self,
        dev: &str,
        family: AddressFamily,
    ) -> Result<Option<Vec<AddressMessage>>> {
        let Some(index) = self.link_index(Side::Node, dev)? else {
            return Ok(None);
        };
        let mut req = AddressMessage::default();
        req.header.family = family;
        req.header.index = index;
        let answer = self
            .request(Side::Node, RouteNetlinkMessage::GetAddress(req), Req::Dump)
            .map_err(nl(format_args!("listing the addresses of {dev}")))?;
        Ok(Some(
            answer
                .into_iter()
                .filter_map(|m| match m {
                    // Checked here too, for kernels that ignore the filter.
                    RouteNetlinkMessage::NewAddress(a)
                        if a.header.index == index
                            && (family == AddressFamily::Unspec || a.header.family == family) =>
                    {
                        Some(a)
                    }
                    _ => None,
                })
                .collect(),
        ))
    }

    /// `ip addr add ADDR dev DEV` (IPv6: `nodad`); an address already there is fine.
    pub(crate) fn ensure_address(&mut self, dev: &str, addr: &IpNet) -> Result<()> {
        let obj = || Object::Address {
            dev: dev.to_string(),
            addr: *addr,
        };
        let index = self
            .require_index(Side::Node, dev)
            .map_err(|e| failure(Op::Add, &obj(), e))?;
        match self.request(
            Side::Node,
            RouteNetlinkMessage::NewAddress(Self::address_message(index, addr)),
            Req::Change(NLM_F_CREATE | NLM_F_EXCL),
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.errno() == Some(Errno::EEXIST as i32) => Ok(()),
            Err(e) => Err(failure(Op::Add, &obj(), e)),
        }
    }

    /// `ip addr del ADDR dev DEV`; a missing device or address is fine.
    pub(crate) fn remove_address(&mut self, dev: &str, addr: &IpNet) -> Result<()> {
        let Some(index) = self.link_index(Side::Node, dev)? else {
            return Ok(());
        };
        match self.request(
            Side::Node,
            RouteNetlinkMessage::DelAddress(Self::address_message(index, addr)),
            Req::Change(0),
        ) {
            Ok(_) => Ok(()),
            Err(e)
                if e.errno() == Some(Errno::EADDRNOTAVAIL as i32)
                    || e.errno() == Some(Errno::ENODEV as i32) =>
            {
                Ok(())
            }
            Err(e) => Err(e.into_error(format_args!("deleting {addr} from {dev}"))),
        }
    }

    pub(crate) fn observe_address(&mut self, dev: &str, addr: &IpNet) -> Result<Presence> {
        Ok(match self.addresses_of(dev)? {
            Some(list) if list.contains(addr) => Presence::Present,
            Some(list) => match list.iter().find(|a| a.addr() == addr.addr()) {
                Some(other) => Presence::Drifted(format!("is {other}")),
                None => Presence::Missing,
            },
            None => Presence::Missing,
        })
    }
}
