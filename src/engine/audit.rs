//! What CHECK and reconcile both judge: the tables gwsteer owns, and the
//! imposters in them (rules pointing at them that are not gwsteer's, routes
//! where no record has one).

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use ipnet::IpNet;

use crate::error::Result;
use crate::kernel::Kernel;
use crate::model::{LinkKind, NodeGroup, Object, RTPROT_GWSTEER, Side};

/// A rule or route that is in the way of gwsteer's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imposter {
    pub object: Object,
    /// The routing protocol it carries (211: gwsteer's, from lost state).
    pub protocol: u8,
}

impl Imposter {
    pub fn table(&self) -> u32 {
        match &self.object {
            Object::Rule { spec, .. } => spec.table,
            Object::Route { spec, .. } => spec.table,
            _ => 0,
        }
    }
}

/// `ip` names of the protocols one meets in routing tables.
fn protocol_name(p: u8) -> String {
    match p {
        0 => "unspec".into(),
        2 => "kernel".into(),
        3 => "boot".into(),
        4 => "static".into(),
        RTPROT_GWSTEER => "gwsteer".into(),
        other => other.to_string(),
    }
}

impl fmt::Display for Imposter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = protocol_name(self.protocol);
        match (&self.object, self.protocol) {
            (Object::Rule { .. }, RTPROT_GWSTEER) => {
                write!(f, "orphan {} proto gwsteer (no record has it)", self.object)
            }
            (Object::Rule { .. }, _) => write!(
                f,
                "foreign {} proto {proto} (points at owned table {})",
                self.object,
                self.table()
            ),
            (_, RTPROT_GWSTEER) => write!(
                f,
                "orphan {} proto gwsteer (no node group has it)",
                self.object
            ),
            _ => write!(
                f,
                "imposter {} proto {proto} (in owned table {})",
                self.object,
                self.table()
            ),
        }
    }
}

/// Tables of the routes of `groups`: the tables gwsteer owns. A VRF's
/// table is not one of them: the kernel puts the local and connected
/// routes of the VRF's devices there, and uplinks bring their own.
pub fn owned_tables<'a>(groups: impl IntoIterator<Item = &'a NodeGroup>) -> BTreeSet<u32> {
    let groups: Vec<&NodeGroup> = groups.into_iter().collect();
    let vrf_tables: BTreeSet<u32> = groups
        .iter()
        .flat_map(|g| &g.objects)
        .filter_map(|o| match o {
            Object::Link { link } => match link.kind {
                LinkKind::Vrf { table } => Some(table),
                _ => None,
            },
            _ => None,
        })
        .collect();
    groups
        .iter()
        .flat_map(|g| &g.objects)
        .filter_map(|o| match o {
            Object::Route {
                spec,
                side: Side::Node,
            } => Some(spec.table),
            _ => None,
        })
        .filter(|t| !vrf_tables.contains(t))
        .collect()
}

/// Slots (table, destination, metric) of the node routes among `objects`.
pub fn route_slots<'a>(
    objects: impl IntoIterator<Item = &'a Object>,
) -> HashSet<(u32, IpNet, u32)> {
    objects
        .into_iter()
        .filter_map(|o| match o {
            Object::Route {
                spec,
                side: Side::Node,
            } => Some(spec.slot()),
            _ => None,
        })
        .collect()
}

/// Imposters in `tables` for CHECK: rules pointing at them that are not
/// gwsteer's, and routes in them where none of `recorded` lives.
pub fn foreign_in_tables(
    kernel: &mut dyn Kernel,
    tables: &BTreeSet<u32>,
    recorded: &[Object],
) -> Result<Vec<Imposter>> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<u32> = tables.iter().copied().collect();
    let mut found: Vec<Imposter> = kernel
        .rules_with_protocol(&list)?
        .into_iter()
        .filter(|(spec, proto)| *proto != RTPROT_GWSTEER && tables.contains(&spec.table))
        .map(|(spec, protocol)| Imposter {
            object: Object::node_rule(spec),
            protocol,
        })
        .collect();
    let slots = route_slots(recorded);
    for table in tables {
        for (spec, protocol) in kernel.table_routes(*table)? {
            if !slots.contains(&spec.slot()) {
                found.push(Imposter {
                    object: Object::node_route(spec),
                    protocol,
                });
            }
        }
    }
    Ok(found)
}
