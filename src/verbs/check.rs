//! CHECK: compare what the record says this attachment owns with the kernel,
//! and name every object that is missing or has drifted.

use super::{new_kernel, open_store};
use crate::cni::{Env, result};
use crate::config::Config;
use crate::error::{Error, Result, code};
use crate::objects::{Kernel, Object, Presence};
use crate::plan::{self, Pod};
use crate::store::Store;

pub fn run(config: &Config, env: &Env) -> Result<()> {
    let id = env.attachment();
    crate::logging::set_context(format!("CHECK {id} net={}", config.network));
    let store = open_store(config)?;
    let record = store.get(&id)?.ok_or_else(|| {
        Error::new(
            code::CHECK_FAILED,
            format!(
                "no gwsteer record for attachment {id} in network \"{}\" (was ADD run with this state directory?)",
                config.network
            ),
        )
    })?;
    let mut problems = Vec::new();
    if let Some(prev) = &config.prev_result {
        let pod = Pod {
            namespace: env.pod_namespace.clone(),
            name: env.pod_name.clone(),
            addresses: result::pod_addresses(prev, &env.ifname)?,
        };
        let want = plan::plan(config, &pod, super::firewall_backend(config)?);
        for obj in want
            .pod_objects
            .iter()
            .filter(|o| !record.objects.contains(o))
        {
            problems.push(format!(
                "not recorded (config or addresses changed since ADD): {obj}"
            ));
        }
    }
    if record.objects.is_empty() && record.holds.is_empty() {
        return report(problems);
    }
    let mut kernel = new_kernel(env.netns.clone())?;
    observe_all(kernel.as_mut(), &record.objects, &mut problems)?;
    for key in &record.holds {
        match store_group(&store, key)? {
            Some(objects) => observe_all(kernel.as_mut(), &objects, &mut problems)?,
            None => problems.push(format!("node group {key} has no record")),
        }
    }
    report(problems)
}

fn store_group(store: &Store, key: &str) -> Result<Option<Vec<Object>>> {
    Ok(store.group(key)?.map(|g| g.objects))
}

pub fn observe_all(
    kernel: &mut dyn Kernel,
    objects: &[Object],
    problems: &mut Vec<String>,
) -> Result<()> {
    for obj in objects {
        match kernel.observe(obj)? {
            Presence::Present => {}
            Presence::Missing => problems.push(format!("missing {obj}")),
            Presence::Drifted(how) => problems.push(format!("drifted {obj}: {how}")),
        }
    }
    Ok(())
}

fn report(problems: Vec<String>) -> Result<()> {
    if problems.is_empty() {
        log::info!("all recorded objects present");
        return Ok(());
    }
    Err(Error::new(
        code::CHECK_FAILED,
        format!("{} problem(s): {}", problems.len(), problems.join("; ")),
    ))
}
