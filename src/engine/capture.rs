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
