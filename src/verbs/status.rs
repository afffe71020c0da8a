//! STATUS: can this plugin do its work right now? State directory writable,
//! netlink usable, the firewall backend and the `nft` command there when the
//! config needs them, VRF support for `vrf`. Any failure is CNI code 50,
//! "not available".

use crate::config::Config;
use crate::engine::open_store;
use crate::error::{Error, Result, code};

pub fn run(config: &Config) -> Result<()> {
    crate::logging::set_context(format!("STATUS net={}", config.network));
    let unavailable = |what: String| Error::new(code::NOT_AVAILABLE, what);
    let store = open_store(config).map_err(|e| {
        unavailable(format!(
            "state directory {} is not usable: {}",
            config.state_dir.display(),
            e.msg
        ))
    })?;
    store.probe_writable().map_err(|e| {
        unavailable(format!(
            "state directory {} is not writable: {e}",
            store.dir().display()
        ))
    })?;
    crate::kernel::rtnl::NetlinkKernel::probe()
        .map_err(|e| unavailable(format!("netlink is not usable: {}", e.msg)))?;
    if config.needs_firewall() {
        let backend = crate::engine::open_firewall(config.firewall_backend).map_err(|e| {
            unavailable(format!(
                "firewallBackend {:?} is not usable: {}",
                config.firewall_backend, e.msg
            ))
        })?;
        log::debug!("firewall backend: {:?}", backend.map(|b| b.backend));
    }
    if let Some(key) = config.needs_nft_command() {
        let nft = crate::kernel::podns::find_nft()
            .map_err(|e| unavailable(format!("{key}: {}", e.msg)))?;
        log::debug!("{key}: {}", nft.display());
    }
    crate::facts::status(config)?;
    log::debug!("ready");
    Ok(())
}
