//! STATUS: can this plugin do its work right now? State directory writable,
//! netlink usable. Any failure is CNI code 50, "not available".

use std::fs;

use super::open_store;
use crate::config::Config;
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
    let probe = store.dir().join(format!(".status.{}", std::process::id()));
    fs::write(&probe, b"ok")
        .and_then(|()| fs::remove_file(&probe))
        .map_err(|e| {
            unavailable(format!(
                "state directory {} is not writable: {e}",
                store.dir().display()
            ))
        })?;
    crate::netlink::NetlinkKernel::probe()
        .map_err(|e| unavailable(format!("netlink is not usable: {}", e.msg)))?;
    if config.needs_firewall() {
        let backend = crate::firewall::resolve(config.firewall_backend).map_err(|e| {
            unavailable(format!(
                "firewallBackend {:?} is not usable: {}",
                config.firewall_backend, e.msg
            ))
        })?;
        log::debug!("firewall backend: {:?}", backend.map(|b| b.backend));
    }
    crate::vrf::status(config)?;
    log::debug!("ready");
    Ok(())
}
