//! An in-memory [`Kernel`] for the engine's tests: it holds objects in a
//! set, node sysctls and uplinks' default-VRF state, writes down every call
//! in order (`ensure inet route default table 100 via 10.0.0.1`, as `ip`
//! would read), and fails the calls it is told to.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result, code};
use crate::kernel::Kernel;
use crate::model::{Object, Presence, RTPROT_GWSTEER, RouteSpec, RuleSpec, SavedUplink};

#[derive(Default)]
pub struct FakeKernel {
    /// Rules, routes, links, addresses, uplinks (enslaved), firewall
    /// objects… that are there now. Sysctls live in `sysctls`.
    pub objects: HashSet<Object>,
    /// Node sysctls: key → value.
    pub sysctls: BTreeMap<String, String>,
    /// Uplinks in the default VRF: device → its addresses and main routes.
    /// Enslaving one takes them away; releasing puts back what it is given.
    pub uplinks: BTreeMap<String, SavedUplink>,
    /// Current MTU of interfaces, read by `capture` of an `Mtu`.
    pub mtus: BTreeMap<String, u32>,
    /// Rules and routes someone else made, with their protocol.
    pub foreign_rules: Vec<(RuleSpec, u8)>,
    pub foreign_routes: Vec<(RouteSpec, u8)>,
    /// Every call, in order, as text.
    pub calls: Vec<String>,
    /// Calls (as in `calls`) that fail, changing nothing, with the error
    /// code they fail with.
    pub failing: HashMap<String, u32>,
}

impl FakeKernel {
    pub fn new() -> FakeKernel {
        FakeKernel::default()
    }

    /// Make the call written as `call` (as it appears in `calls`) fail.
    pub fn fail(&mut self, call: impl Into<String>) {
        self.fail_with(call, code::KERNEL);
    }

    /// Make the call written as `call` fail with error code `code`.
    pub fn fail_with(&mut self, call: impl Into<String>, code: u32) {
        self.failing.insert(call.into(), code);
    }

    /// What is there now, one object a line, sorted.
    pub fn present(&self) -> Vec<String> {
        let mut out: Vec<String> = self.objects.iter().map(ToString::to_string).collect();
        out.sort();
        out
    }

    /// The calls whose text starts with `verb ` (e.g. "remove").
    pub fn calls_to(&self, verb: &str) -> Vec<String> {
        let prefix = format!("{verb} ");
        self.calls
            .iter()
            .filter(|c| c.starts_with(&prefix))
            .cloned()
            .collect()
    }

    /// Where `call` was made first.
    pub fn position(&self, call: &str) -> Option<usize> {
        self.calls.iter().position(|c| c == call)
    }

    fn call(&mut self, text: String) -> Result<()> {
        let fails = self.failing.get(&text).copied();
        self.calls.push(text.clone());
        match fails {
            Some(code) => Err(Error::new(code, format!("{text}: injected failure"))),
            None => Ok(()),
        }
    }

    /// Put `obj` in place of anything that takes the same kernel slot (a
    /// route with the same destination, a link with the same name), as
    /// `ip route replace` / `ip link set` would.
    fn replace(&mut self, obj: &Object) {
        self.objects
            .retain(|o| !(o.same_place(obj) || same_route_slot(o, obj)));
        self.objects.insert(obj.clone());
    }
}

fn same_route_slot(a: &Object, b: &Object) -> bool {
    match (a, b) {
        (Object::Route { spec: x, side: sx }, Object::Route { spec: y, side: sy }) => {
            sx == sy && x.slot() == y.slot()
        }
        _ => false,
    }
}

/// How an uplink's saved state reads in a call.
pub fn saved_text(saved: Option<&SavedUplink>) -> String {
    match saved {
        None => "nothing saved".into(),
        Some(s) => {
            let mut parts: Vec<String> = s.addresses.iter().map(ToString::to_string).collect();
            parts.extend(s.routes.iter().map(ToString::to_string));
            format!("saved [{}]", parts.join(", "))
        }
    }
}

impl Kernel for FakeKernel {
    fn ensure(&mut self, obj: &Object) -> Result<()> {
        self.call(format!("ensure {obj}"))?;
        match obj {
            Object::Sysctl { key, value, .. } => {
                self.sysctls.insert(key.clone(), value.clone());
            }
            _ => self.replace(obj),
        }
        Ok(())
    }

    fn remove(&mut self, obj: &Object) -> Result<()> {
        self.call(format!("remove {obj}"))?;
        self.objects.remove(obj);
        Ok(())
    }

    fn observe(&mut self, obj: &Object) -> Result<Presence> {
        self.call(format!("observe {obj}"))?;
        if let Object::Sysctl { key, value, .. } = obj {
            return Ok(match self.sysctls.get(key) {
                Some(v) if v == value => Presence::Present,
                Some(v) => Presence::Drifted(format!("{key} = {v}")),
                None => Presence::Missing,
            });
        }
        if self.objects.contains(obj) {
            return Ok(Presence::Present);
        }
        Ok(
            match self
                .objects
                .iter()
                .find(|o| o.same_place(obj) || same_route_slot(o, obj))
            {
                Some(other) => Presence::Drifted(format!("found {other}")),
                None => Presence::Missing,
            },
        )
    }

    fn observe_all(&mut self, objs: &[&Object]) -> Result<Vec<Presence>> {
        self.call(format!("observe_all of {} object(s)", objs.len()))?;
        objs.iter().map(|o| self.observe(o)).collect()
    }

    fn table_routes(&mut self, table: u32) -> Result<Vec<(RouteSpec, u8)>> {
        self.call(format!("table_routes {table}"))?;
        let mut out: Vec<(RouteSpec, u8)> = self
            .objects
            .iter()
            .filter_map(|o| match o {
                Object::Route { spec, .. } if spec.table == table => {
                    Some((spec.clone(), RTPROT_GWSTEER))
                }
                _ => None,
            })
            .collect();
        out.extend(
            self.foreign_routes
                .iter()
                .filter(|(spec, _)| spec.table == table)
                .cloned(),
        );
        Ok(out)
    }

    fn capture(&mut self, obj: &Object) -> Result<Option<Object>> {
        self.call(format!("capture {obj}"))?;
        Ok(Some(match obj {
            Object::Mtu {
                side, ifname, mtu, ..
            } => Object::Mtu {
                side: *side,
                ifname: ifname.clone(),
                mtu: *mtu,
                previous: self.mtus.get(ifname).copied(),
            },
            other => other.clone(),
        }))
    }

    fn capture_uplink(&mut self, dev: &str) -> Result<Option<SavedUplink>> {
        self.call(format!("capture_uplink {dev}"))?;
        Ok(self.uplinks.get(dev).cloned())
    }

    fn ensure_uplink(&mut self, obj: &Object, saved: Option<&SavedUplink>) -> Result<()> {
        self.call(format!("ensure_uplink {obj} with {}", saved_text(saved)))?;
        if let Object::Uplink { dev, .. } = obj {
            // Enslaved: its addresses and main routes are gone from the
            // default VRF.
            if let Some(state) = self.uplinks.get_mut(dev) {
                *state = SavedUplink::default();
            }
        }
        self.objects.insert(obj.clone());
        Ok(())
    }

    fn release_uplink(&mut self, obj: &Object, saved: Option<&SavedUplink>) -> Result<()> {
        self.call(format!("release_uplink {obj} with {}", saved_text(saved)))?;
        if let Object::Uplink { dev, .. } = obj {
            self.uplinks
                .insert(dev.clone(), saved.cloned().unwrap_or_default());
        }
        self.objects.remove(obj);
        Ok(())
    }

    fn read_sysctl(&mut self, key: &str) -> Result<String> {
        self.call(format!("read_sysctl {key}"))?;
        self.sysctls
            .get(key)
            .cloned()
            .ok_or_else(|| Error::kernel(format!("no sysctl {key}")))
    }

    fn rules_with_protocol(&mut self, tables: &[u32]) -> Result<Vec<(RuleSpec, u8)>> {
        self.call(format!("rules_with_protocol {tables:?}"))?;
        let mut out: Vec<(RuleSpec, u8)> = self
            .objects
            .iter()
            .filter_map(|o| match o {
                Object::Rule { spec, .. } => Some((spec.clone(), RTPROT_GWSTEER)),
                _ => None,
            })
            .collect();
        out.extend(
            self.foreign_rules
                .iter()
                .filter(|(spec, _)| tables.contains(&spec.table))
                .cloned(),
        );
        Ok(out)
    }

    fn remove_foreign(&mut self, obj: &Object, protocol: u8) -> Result<()> {
        self.call(format!("remove_foreign {obj} proto {protocol}"))?;
        match obj {
            Object::Rule { spec, .. } => self.foreign_rules.retain(|(s, _)| s != spec),
            Object::Route { spec, .. } => self.foreign_routes.retain(|(s, _)| s != spec),
            _ => {}
        }
        Ok(())
    }
}

/// A state directory of its own, removed when the test ends (also when it
/// fails).
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn new() -> TempDir {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "gwsteer-engine-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
