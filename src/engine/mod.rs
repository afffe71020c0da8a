//! The engine: what the verbs and the operator commands share. It opens the
//! store and the kernel for a call, makes node groups and attachments real
//! and takes them away ([`apply`]), reads what ADD must keep for DEL
//! ([`capture`]), and judges the tables gwsteer owns ([`audit`]).

pub mod apply;
pub mod audit;
pub mod capture;
pub mod claims;
#[cfg(test)]
mod claims_tests;
#[cfg(test)]
mod fake;
pub mod owner;
#[cfg(test)]
mod owner_tests;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Config, FirewallBackend};
use crate::error::Result;
use crate::kernel::Kernel;
use crate::model::Backend;
use crate::store::Store;

pub use apply::{combine, ensure_group, remove_group, teardown};
pub use capture::capture;

/// How long a call waits for another gwsteer holding the network's lock
/// when the config does not say (`lockTimeoutMs`), and for the CLI.
pub const LOCK_WAIT: Duration =
    Duration::from_millis(crate::config::DEFAULT_LOCK_TIMEOUT_MS as u64);

pub fn open_store(config: &Config) -> Result<Store> {
    log_lock_wait(Store::open(
        &config.state_dir,
        &config.network,
        config.lock_timeout,
    )?)
}

/// [`open_store`] when a missing store means nothing to do (DEL): `None`
/// when the state directory or the network's directory does not exist,
/// and nothing is made.
pub fn open_existing_store(config: &Config) -> Result<Option<Store>> {
    Store::open_existing(&config.state_dir, &config.network, config.lock_timeout)?
        .map(log_lock_wait)
        .transpose()
}

/// [`open_store`] for an ADD, which goes before waiting DELs, CHECKs, GCs.
pub fn open_store_for_add(config: &Config) -> Result<Store> {
    log_lock_wait(Store::open_for_add(
        &config.state_dir,
        &config.network,
        config.lock_timeout,
    )?)
}

fn log_lock_wait(store: Store) -> Result<Store> {
    if store.waited > Duration::from_secs(1) {
        log::warn!(
            "waited {} ms for the state store lock",
            store.waited.as_millis()
        );
    } else {
        log::debug!("state store lock taken in {} µs", store.waited.as_micros());
    }
    Ok(store)
}

/// The firewall backend this config's objects are made with, when it needs
/// one, opened: hand it to [`new_kernel_with`].
pub fn firewall_backend(config: &Config) -> Result<Option<crate::kernel::nft::Opened>> {
    if !config.needs_firewall() {
        return Ok(None);
    }
    open_firewall(config.firewall_backend)
}

/// The backend a `firewallBackend` choice gets, opened: `None` for `none`;
/// `auto` and `nftables` are nftables. Errors say why it is unusable (code
/// 50: no `nft`, or the kernel does not answer nf_tables requests).
pub fn open_firewall(choice: FirewallBackend) -> Result<Option<crate::kernel::nft::Opened>> {
    match choice {
        FirewallBackend::None => Ok(None),
        FirewallBackend::Auto | FirewallBackend::Nftables => {
            let backend = Backend::Nftables;
            Ok(Some(crate::kernel::nft::Opened {
                backend,
                firewall: crate::kernel::nft::open(backend)?,
            }))
        }
    }
}

pub fn new_kernel(netns: Option<PathBuf>) -> Result<Box<dyn Kernel>> {
    new_kernel_with(netns, None)
}

/// [`teardown`] of a record found in the store, with no `CNI_NETNS` (GC,
/// cleanup): through `node` (opened on first use), or, when the record has
/// pod-side objects, through a kernel for the pod's namespace the record
/// names (one that is gone took those objects with it).
pub fn teardown_stored(
    store: &Store,
    node: &mut Option<Box<dyn Kernel>>,
    record: &crate::store::Record,
) -> Result<()> {
    if record
        .objects
        .iter()
        .any(|o| o.side() == crate::model::Side::Pod)
    {
        let netns = record.netns.as_ref().map(PathBuf::from);
        let mut pod = new_kernel(netns)?;
        return teardown(store, pod.as_mut(), record);
    }
    let kernel = match node {
        Some(k) => k,
        None => node.insert(new_kernel(None)?),
    };
    teardown(store, kernel.as_mut(), record)
}

/// A kernel backend that reuses a firewall [`firewall_backend`] opened.
pub fn new_kernel_with(
    netns: Option<PathBuf>,
    firewall: Option<crate::kernel::nft::Opened>,
) -> Result<Box<dyn Kernel>> {
    new_kernel_reusing(netns, firewall, None)
}

/// Like [`new_kernel_with`], also reusing the netlink connection
/// `facts::collect` opened for the same `netns`, if it opened one.
pub fn new_kernel_reusing(
    netns: Option<PathBuf>,
    firewall: Option<crate::kernel::nft::Opened>,
    netlink: Option<crate::kernel::rtnl::NetlinkKernel>,
) -> Result<Box<dyn Kernel>> {
    let mut system = match netlink {
        Some(net) => crate::kernel::system::System::with_netlink(net, netns),
        None => crate::kernel::system::System::new(netns)?,
    };
    system.adopt(firewall);
    Ok(Box::new(system))
}
