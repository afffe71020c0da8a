//! What ADD must read before it changes anything, so that DEL can put it
//! back: previous MTUs, routes and sysctls of the pod's objects.

use crate::error::Result;
use crate::kernel::Kernel;
use crate::model::{Object, Record};

/// The planned pod objects completed with what DEL must put back: from the
/// attachment's earlier record where it has the same object (a re-ADD must
/// not take gwsteer's own MTU or route for the pod's), else read now.
/// Objects with nothing to do (a keep route already in place) are dropped.
pub fn capture(
    kernel: &mut dyn Kernel,
    planned: &[Object],
    old: Option<&Record>,
) -> Result<Vec<Object>> {
    let mut out = Vec::with_capacity(planned.len());
    for obj in planned {
        if let Some(earlier) = old
            .into_iter()
            .flat_map(|r| &r.objects)
            .find(|o| o.planned() == *obj)
        {
            out.push(earlier.clone());
            continue;
        }
        if let Some(done) = kernel.capture(obj)? {
            out.push(done);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AttachmentId, Presence, RouteSpec, RuleSpec, SCHEMA, Side};

    #[test]
    fn capture_reuses_an_earlier_records_values() {
        struct Reader;
        impl Kernel for Reader {
            fn ensure(&mut self, _: &Object) -> Result<()> {
                unreachable!()
            }
            fn remove(&mut self, _: &Object) -> Result<()> {
                unreachable!()
            }
            fn observe(&mut self, _: &Object) -> Result<Presence> {
                unreachable!()
            }
            fn owned_rules(&mut self, _: &[u32]) -> Result<Vec<RuleSpec>> {
                unreachable!()
            }
            fn table_routes(&mut self, _: u32) -> Result<Vec<(RouteSpec, u8)>> {
                unreachable!()
            }
            fn capture(&mut self, obj: &Object) -> Result<Option<Object>> {
                Ok(Some(match obj {
                    Object::Mtu {
                        side, ifname, mtu, ..
                    } => Object::Mtu {
                        side: *side,
                        ifname: ifname.clone(),
                        mtu: *mtu,
                        previous: Some(1450),
                    },
                    other => other.clone(),
                }))
            }
        }
        let planned = vec![Object::Mtu {
            side: Side::Pod,
            ifname: "net1".into(),
            mtu: 1450,
            previous: None,
        }];
        // First ADD: read from the kernel.
        let first = capture(&mut Reader, &planned, None).unwrap();
        assert_eq!(first[0].to_string(), "pod link net1 mtu 1450 (was 1450)");
        // A re-ADD keeps what the first ADD found (1500), not gwsteer's own 1450.
        let old = Record {
            schema: SCHEMA,
            network: "gw".into(),
            id: AttachmentId {
                container_id: "c".into(),
                ifname: "net1".into(),
            },
            netns: None,
            pod_namespace: None,
            pod_name: None,
            objects: vec![Object::Mtu {
                side: Side::Pod,
                ifname: "net1".into(),
                mtu: 1450,
                previous: Some(1500),
            }],
            holds: vec![],
            created: 0,
        };
        let again = capture(&mut Reader, &planned, Some(&old)).unwrap();
        assert_eq!(again, old.objects);
    }
}
