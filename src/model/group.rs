//! What the state store keeps: one record per attachment (its own objects
//! and the node groups it holds) and the node groups themselves. Plain
//! values; the store reads and writes them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Object;

/// Version of the record and group file format.
pub const SCHEMA: u32 = 1;

/// The identity of an attachment within a network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentId {
    pub container_id: String,
    pub ifname: String,
}

impl AttachmentId {
    /// File name stem. Container ids are `[A-Za-z0-9][A-Za-z0-9_.-]*` and
    /// interface names hold no '/', so `@` keeps the two apart.
    pub fn stem(&self) -> String {
        format!("{}@{}", self.container_id, self.ifname)
    }
}

impl std::fmt::Display for AttachmentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.container_id, self.ifname)
    }
}

/// What one attachment owns. Written before the kernel is touched (intent),
/// so a crash mid-ADD leaves a record that DEL or GC can undo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub schema: u32,
    pub network: String,
    #[serde(flatten)]
    pub id: AttachmentId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Per-pod objects, removed on DEL.
    #[serde(default)]
    pub objects: Vec<Object>,
    /// Keys of node-level groups this attachment needs.
    #[serde(default)]
    pub holds: Vec<String>,
    pub created: u64,
}

/// Node-level objects shared by attachments, removed with their last holder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeGroup {
    pub schema: u32,
    pub key: String,
    pub objects: Vec<Object>,
    /// Sysctl values found before the group first set them (key → value),
    /// written back when the last holder goes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub restore: BTreeMap<String, String>,
}

impl NodeGroup {
    /// A group of the current schema with nothing to restore yet.
    pub fn new(key: String, objects: Vec<Object>) -> NodeGroup {
        NodeGroup {
            schema: SCHEMA,
            key,
            objects,
            restore: BTreeMap::new(),
        }
    }
}
