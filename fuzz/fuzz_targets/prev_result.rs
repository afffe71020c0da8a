//! The previous plugin's result (`prevResult`): reading the pod's addresses
//! for an interface, and converting it to every supported `cniVersion`, must
//! not panic on any JSON.
#![no_main]

use gwsteer::cni::result::{convert, pod_addresses};
use gwsteer::cni::version::SUPPORTED;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(prev) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for ifname in ["eth0", "net1"] {
        if let Ok(addrs) = pod_addresses(&prev, ifname) {
            for a in addrs {
                assert!(a.interface.as_deref().is_none_or(|i| i == ifname));
            }
        }
    }
    for version in SUPPORTED {
        let out = convert(&prev, version);
        assert_eq!(out["cniVersion"], version.as_str());
    }
});
