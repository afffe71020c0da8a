//! A route in a routing table.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{Family, write_net};

/// One nexthop of a route. `weight` is 1…256 as `ip route` prints it.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "camelCase")]
pub struct NextHop {
    pub via: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    #[serde(default = "default_weight")]
    pub weight: u16,
}

fn default_weight() -> u16 {
    1
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    Unicast,
    Unreachable,
}

/// A route in a table: `ip route replace DST table T [via … dev …|nexthop …]
/// proto gwsteer`. One nexthop is a plain route; several a multipath route.
/// A route with no nexthops and a `dev` is a device route (`dev X scope link`).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Hash, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    pub dst: IpNet,
    pub table: u32,
    pub kind: RouteKind,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nexthops: Vec<NextHop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
}

impl RouteSpec {
    pub fn family(&self) -> Family {
        Family::of_net(&self.dst)
    }

    /// Where the kernel keys the route: table, destination network and the
    /// metric it stores (IPv6 stores 1024 for "none"). Two routes in one
    /// slot cannot coexist; `ensure` replaces whatever holds the slot.
    pub fn slot(&self) -> (u32, IpNet, u32) {
        let metric = match (self.family(), self.metric.unwrap_or(0)) {
            (Family::V6, 0) => 1024,
            (_, m) => m,
        };
        (self.table, self.dst.trunc(), metric)
    }
}

impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} route ", self.family())?;
        if self.kind == RouteKind::Unreachable {
            f.write_str("unreachable ")?;
        }
        if self.dst.prefix_len() == 0 {
            f.write_str("default")?;
        } else {
            write_net(f, &self.dst)?;
        }
        write!(f, " table {}", self.table)?;
        match self.nexthops.as_slice() {
            [] => {}
            [one] => {
                write!(f, " via {}", one.via)?;
                if let Some(dev) = &one.dev {
                    write!(f, " dev {dev}")?;
                }
            }
            many => {
                for nh in many {
                    write!(f, " nexthop via {}", nh.via)?;
                    if let Some(dev) = &nh.dev {
                        write!(f, " dev {dev}")?;
                    }
                    write!(f, " weight {}", nh.weight)?;
                }
            }
        }
        if let Some(dev) = &self.dev {
            write!(f, " dev {dev}")?;
        }
        if let Some(metric) = self.metric {
            write!(f, " metric {metric}")?;
        }
        Ok(())
    }
}
