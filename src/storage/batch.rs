//! A set of writes to several trees that lands all at once or not at all.

use super::schema::TreeId;
use crate::types::Canonical;

/// One write of a batch: tree, key, and the new value or `None` to remove it.
pub(super) type BatchOp = (TreeId, Vec<u8>, Option<Vec<u8>>);

#[derive(Default, Debug)]
pub struct WriteBatch {
    pub(super) ops: Vec<BatchOp>,
}

impl WriteBatch {
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    pub fn put_raw(&mut self, tree: TreeId, key: impl AsRef<[u8]>, value: Vec<u8>) {
        self.ops.push((tree, key.as_ref().to_vec(), Some(value)));
    }

    pub fn put<T: Canonical>(&mut self, tree: TreeId, key: impl AsRef<[u8]>, value: &T) {
        self.put_raw(tree, key, value.to_bytes());
    }

    pub fn remove(&mut self, tree: TreeId, key: impl AsRef<[u8]>) {
        self.ops.push((tree, key.as_ref().to_vec(), None));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Appends another batch's writes after this one's.
    pub fn extend(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
    }
}
