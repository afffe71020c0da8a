//! Everything that talks to the kernel. The [`Kernel`] trait is the one door
//! the engine goes through; [`crate::kernel::system::System`] implements it over
//! netlink, /proc/sys and nftables, and tests fake it.

pub mod netns;
pub mod nft;
pub mod nl;
pub mod podns;
pub mod probe;
pub mod rtnl;
pub mod sysctl;
pub mod system;
pub mod watch;

pub use probe::{require_vrf, vrf_supported};

use crate::error::Result;
use crate::model::{Object, Presence, RouteSpec, RuleSpec, SavedUplink};

/// The kernel, as gwsteer sees it. One implementation speaks netlink
/// ([`crate::kernel::rtnl::NetlinkKernel`]); tests may fake it.
///
/// `ensure` is idempotent (an existing identical object is success), `remove`
/// treats an absent object as success, and `observe` never changes anything.
pub trait Kernel {
    fn ensure(&mut self, obj: &Object) -> Result<()>;
    fn remove(&mut self, obj: &Object) -> Result<()>;
    fn observe(&mut self, obj: &Object) -> Result<Presence>;
    /// [`Kernel::observe`] of each object, in order; a backend may read
    /// what several objects share (a routing table) once.
    fn observe_all(&mut self, objs: &[&Object]) -> Result<Vec<Presence>> {
        objs.iter().map(|o| self.observe(o)).collect()
    }
    /// Every route in `table` (node namespace), whoever made it, with the
    /// protocol number it carries.
    fn table_routes(&mut self, table: u32) -> Result<Vec<(RouteSpec, u8)>>;
    /// `obj` completed with what ADD must read before changing anything
    /// (the previous MTU, route or sysctl value that DEL puts back; a keep
    /// route's nexthop); `None` when there is nothing to do for it.
    fn capture(&mut self, obj: &Object) -> Result<Option<Object>> {
        Ok(Some(obj.clone()))
    }
    /// An uplink's addresses and main-table routes before enslaving, which
    /// its group keeps in `restore`; `None` if there is no such device.
    fn capture_uplink(&mut self, dev: &str) -> Result<Option<SavedUplink>> {
        let _ = dev;
        Ok(None)
    }

    /// Make an uplink as `obj` says, with what `saved` (from
    /// [`Kernel::capture_uplink`]) says it had.
    fn ensure_uplink(&mut self, obj: &Object, saved: Option<&SavedUplink>) -> Result<()> {
        let _ = saved;
        self.ensure(obj)
    }

    /// Return an uplink to the default VRF with what it had before.
    fn release_uplink(&mut self, obj: &Object, saved: Option<&SavedUplink>) -> Result<()> {
        let _ = saved;
        self.remove(obj)
    }

    /// The current value of a node sysctl (to restore it later).
    fn read_sysctl(&mut self, key: &str) -> Result<String> {
        Err(crate::error::Error::kernel(format!(
            "this backend cannot read sysctl {key}"
        )))
    }
    /// Every rule in the node namespace carrying
    /// [`crate::model::RTPROT_GWSTEER`], or pointing at one of `tables`
    /// (imposters in owned tables' rules), with the protocol each carries,
    /// so that gwsteer's own rules can be told from imposters.
    fn rules_with_protocol(&mut self, tables: &[u32]) -> Result<Vec<(RuleSpec, u8)>>;
    /// gwsteer's node rules (carrying [`crate::model::RTPROT_GWSTEER`])
    /// that point at one of `tables` or sit at one of `priorities`: what a
    /// policy's first ADD must not find before it claims them.
    fn gwsteer_rules_at(&mut self, tables: &[u32], priorities: &[u32]) -> Result<Vec<RuleSpec>> {
        Ok(self
            .rules_with_protocol(tables)?
            .into_iter()
            .filter(|(r, proto)| {
                *proto == crate::model::RTPROT_GWSTEER
                    && (tables.contains(&r.table) || priorities.contains(&r.priority))
            })
            .map(|(r, _)| r)
            .collect())
    }
    /// Remove a node rule or route that carries routing protocol `protocol`
    /// (0: any), whoever made it: imposters in owned tables. `remove` only
    /// ever touches objects carrying [`crate::model::RTPROT_GWSTEER`].
    fn remove_foreign(&mut self, obj: &Object, protocol: u8) -> Result<()> {
        let _ = protocol;
        Err(crate::error::Error::kernel(format!(
            "this backend cannot remove {obj} made by someone else"
        )))
    }
}
