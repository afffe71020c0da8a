//! The whole kernel as the verbs see it: rules and routes over netlink,
//! sysctls through /proc/sys, firewall objects through the configured
//! backend. The firewall is opened only when an object needs it, so a
//! `source`-only ADD never pays for it.

use std::path::PathBuf;

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::kernel::nft::{self, Firewall};
use crate::kernel::rtnl::NetlinkKernel;
use crate::kernel::sysctl;
use crate::model::Backend;
use crate::model::{Object, Presence, RouteSpec, RuleSpec, SavedUplink, Side};

mod gateway;

pub struct System {
    net: NetlinkKernel,
    firewalls: BTreeMap<Backend, Box<dyn Firewall>>,
    /// The pod's network namespace, for pod-side sysctls and nftables.
    pod_netns: Option<PathBuf>,
}

impl System {
    pub fn new(pod_netns: Option<PathBuf>) -> Result<System> {
        Ok(System::with_netlink(
            NetlinkKernel::new(pod_netns.clone())?,
            pod_netns,
        ))
    }

    /// Over a netlink connection already open for `pod_netns` (the one the
    /// facts were read through).
    pub fn with_netlink(net: NetlinkKernel, pod_netns: Option<PathBuf>) -> System {
        System {
            net,
            firewalls: BTreeMap::new(),
            pod_netns,
        }
    }

    /// Use a backend the engine already opened (one set of
    /// sockets per process, not two).
    pub fn adopt(&mut self, opened: Option<nft::Opened>) {
        if let Some(o) = opened {
            self.firewalls.entry(o.backend).or_insert(o.firewall);
        }
    }

    fn firewall(&mut self, backend: Backend) -> Result<&mut dyn Firewall> {
        let fw = match self.firewalls.entry(backend) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(nft::open(backend)?),
        };
        Ok(fw.as_mut())
    }
}

fn node_only(obj: &Object) -> Result<()> {
    if obj.side() == Side::Pod {
        return Err(crate::error::Error::kernel(format!(
            "{obj}: pod-side sysctls are not supported"
        )));
    }
    Ok(())
}

impl System {
    fn ensure_here(&mut self, obj: &Object) -> Result<()> {
        match obj {
            Object::Rule { .. } | Object::Route { .. } => self.net.ensure(obj),
            Object::Sysctl { key, value, .. } => {
                node_only(obj)?;
                sysctl::write(key, value).map(|_| ())
            }
            Object::Firewall { backend, firewall } => self.firewall(*backend)?.ensure(firewall),
            gateway => self.ensure_gateway(gateway),
        }
    }

    fn remove_here(&mut self, obj: &Object) -> Result<()> {
        match obj {
            Object::Rule { .. } | Object::Route { .. } => self.net.remove(obj),
            // A sysctl is "removed" by restoring its earlier value, which the
            // node group remembers (see verbs::remove_group).
            Object::Sysctl { .. } => Ok(()),
            Object::Firewall { backend, firewall } => self.firewall(*backend)?.remove(firewall),
            gateway => self.remove_gateway(gateway),
        }
    }
}

/// Every change goes through here, which makes this the one place that
/// counts them for the test-only fault hook ([`crate::fault`]).
impl Kernel for System {
    fn ensure(&mut self, obj: &Object) -> Result<()> {
        let done = self.ensure_here(obj);
        crate::fault::state_changed(&format_args!("ensure {obj}"));
        done
    }

    fn remove(&mut self, obj: &Object) -> Result<()> {
        let done = self.remove_here(obj);
        crate::fault::state_changed(&format_args!("remove {obj}"));
        done
    }

    fn remove_foreign(&mut self, obj: &Object, protocol: u8) -> Result<()> {
        let done = self.net.remove_foreign(obj, protocol);
        crate::fault::state_changed(&format_args!("remove foreign {obj}"));
        done
    }

    fn rules_with_protocol(&mut self, tables: &[u32]) -> Result<Vec<(RuleSpec, u8)>> {
        self.net.rules_with_protocol(tables)
    }

    fn gwsteer_rules_at(&mut self, tables: &[u32], priorities: &[u32]) -> Result<Vec<RuleSpec>> {
        self.net.gwsteer_rules_at(tables, priorities)
    }

    fn observe(&mut self, obj: &Object) -> Result<Presence> {
        match obj {
            Object::Rule { .. } | Object::Route { .. } => self.net.observe(obj),
            Object::Sysctl { key, value, .. } => {
                node_only(obj)?;
                let now = sysctl::read(key)?;
                Ok(if now == *value {
                    Presence::Present
                } else {
                    Presence::Drifted(format!("is {now}"))
                })
            }
            Object::Firewall { backend, firewall } => self.firewall(*backend)?.observe(firewall),
            gateway => self.observe_gateway(gateway),
        }
    }

    /// Rules and routes go to netlink together (it reads each routing
    /// table once); every other object is read on its own.
    fn observe_all(&mut self, objs: &[&Object]) -> Result<Vec<Presence>> {
        let is_net = |o: &&Object| matches!(o, Object::Rule { .. } | Object::Route { .. });
        let net: Vec<&Object> = objs.iter().copied().filter(is_net).collect();
        let mut net_seen = self.net.observe_all(&net)?.into_iter();
        objs.iter()
            .map(|o| match is_net(o) {
                true => net_seen
                    .next()
                    .ok_or_else(|| Error::kernel(format!("no answer for {o}"))),
                false => self.observe(o),
            })
            .collect()
    }

    fn table_routes(&mut self, table: u32) -> Result<Vec<(RouteSpec, u8)>> {
        self.net.table_routes(table)
    }

    fn capture(&mut self, obj: &Object) -> Result<Option<Object>> {
        self.capture_gateway(obj)
    }

    fn read_sysctl(&mut self, key: &str) -> Result<String> {
        sysctl::read(key)
    }

    fn capture_uplink(&mut self, dev: &str) -> Result<Option<SavedUplink>> {
        self.net.capture_uplink(dev)
    }

    fn ensure_uplink(&mut self, obj: &Object, saved: Option<&SavedUplink>) -> Result<()> {
        let Object::Uplink { dev, vrf, table } = obj else {
            return self.ensure(obj);
        };
        let done =
            self.net
                .ensure_uplink(dev, vrf, *table, saved.unwrap_or(&SavedUplink::default()));
        crate::fault::state_changed(&format_args!("ensure {obj}"));
        done
    }

    fn release_uplink(&mut self, obj: &Object, saved: Option<&SavedUplink>) -> Result<()> {
        let Object::Uplink { dev, .. } = obj else {
            return self.remove(obj);
        };
        let done = self
            .net
            .release_uplink(dev, saved.unwrap_or(&SavedUplink::default()));
        crate::fault::state_changed(&format_args!("remove {obj}"));
        done
    }
}
