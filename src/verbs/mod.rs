//! The CNI verbs, one file each, each reading in a screen: ADD =
//! ensure(plan) after recording it; DEL = remove(recorded) minus what others
//! still hold; CHECK = observe(recorded); GC = DEL of stale records; STATUS =
//! can we work. What they share lives in `crate::engine`.

pub mod add;
pub mod check;
pub mod del;
pub mod gc;
pub mod status;
