//! The CNI verbs, one file each, each reading in a screen: ADD =
//! ensure(plan) after recording it; DEL = remove(recorded) minus what others
//! still hold; CHECK = observe(recorded); GC = DEL of stale records; STATUS =
//! can we work. What they share lives in `crate::engine`; what only ADD and
//! CHECK share, the reading a plan starts from, is [`planning_input`] here.

pub mod add;
pub mod check;
pub mod del;
pub mod gc;
pub mod status;

use serde_json::Value;

use crate::cni::{Env, result};
use crate::config::Config;
use crate::error::Result;
use crate::kernel::nft::Opened;
use crate::kernel::rtnl::NetlinkKernel;
use crate::plan::{Facts, Pod};

/// What ADD and CHECK plan from: the pod (its addresses on `CNI_IFNAME` in
/// `prev`), the firewall backend the config needs (opened once, to be
/// handed on to the kernel), and the facts the plan reads; the netlink
/// socket facts opened, if any, is left in `netlink` for the kernel too.
fn planning_input(
    config: &Config,
    env: &Env,
    prev: &Value,
    netlink: &mut Option<NetlinkKernel>,
) -> Result<(Pod, Option<Opened>, Facts)> {
    let pod = Pod {
        namespace: env.pod_namespace.clone(),
        name: env.pod_name.clone(),
        addresses: result::pod_addresses(prev, &env.ifname)?,
    };
    let firewall = crate::engine::firewall_backend(config)?;
    let facts = crate::facts::collect(config, env, firewall.as_ref().map(|f| f.backend), netlink)?;
    Ok((pod, firewall, facts))
}
