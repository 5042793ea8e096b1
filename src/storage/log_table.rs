//! The layer-1 log's records in memory, one table per logged tree.
//!
//! The layer-1 trees proper (`utxo_states`, `final_txs`, `pending_txs`) are only ever read by
//! key, and each lock and finalization writes a few of their records: kept in key order (a
//! `BTreeMap` of byte strings) every write cost a walk down the tree with a byte comparison at
//! each level, 4 % of a busy localnet's CPU. They are hash maps (std's keyed SipHash: the keys
//! are txids and outpoints a peer chooses). The index tails (`tx_index`, `address_txs`) are
//! scanned by key range and stay ordered. The few whole-table reads of a hash table (loading
//! at start, backups, a change of layer-1 engine) sort a copy, so every read that promises key
//! order keeps it.

use super::schema::TreeId;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

pub(super) enum Table {
    /// Read by key only.
    Keyed(HashMap<Box<[u8]>, Vec<u8>>),
    /// Read by key range too.
    Ordered(BTreeMap<Vec<u8>, Vec<u8>>),
}

/// A copied record.
pub(super) type Record = (Vec<u8>, Vec<u8>);

impl Table {
    /// The table for `tree`: ordered for the index tails.
    pub(super) fn for_tree(tree: TreeId) -> Table {
        match tree {
            TreeId::TxIndex | TreeId::AddressTxs => Table::Ordered(BTreeMap::new()),
            _ => Table::Keyed(HashMap::new()),
        }
    }

    pub(super) fn get(&self, key: &[u8]) -> Option<&Vec<u8>> {
        match self {
            Table::Keyed(m) => m.get(key),
            Table::Ordered(m) => m.get(key),
        }
    }

    /// Sets `key` to `value`; returns the value it replaced. The key is copied only when new.
    pub(super) fn insert(&mut self, key: &[u8], value: Vec<u8>) -> Option<Vec<u8>> {
        match self {
            Table::Keyed(m) => match m.get_mut(key) {
                Some(old) => Some(std::mem::replace(old, value)),
                None => m.insert(key.into(), value),
            },
            Table::Ordered(m) => match m.get_mut(key) {
                Some(old) => Some(std::mem::replace(old, value)),
                None => m.insert(key.to_vec(), value),
            },
        }
    }

    pub(super) fn remove(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        match self {
            Table::Keyed(m) => m.remove(key),
            Table::Ordered(m) => m.remove(key),
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Table::Keyed(m) => m.len(),
            Table::Ordered(m) => m.len(),
        }
    }

    /// Every record, in no particular order (what a compaction writes).
    pub(super) fn iter(&self) -> Box<dyn Iterator<Item = (&[u8], &[u8])> + '_> {
        match self {
            Table::Keyed(m) => Box::new(m.iter().map(|(k, v)| (&k[..], &v[..]))),
            Table::Ordered(m) => Box::new(m.iter().map(|(k, v)| (&k[..], &v[..]))),
        }
    }

    /// The records with keys past `after` (all, if `None`), in key order.
    pub(super) fn after<'a>(
        &'a self,
        after: Option<&[u8]>,
    ) -> Box<dyn Iterator<Item = (&'a [u8], &'a [u8])> + 'a> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.between(lower, Bound::Unbounded)
    }

    /// A copy of the records with keys in `from..=to`, in key order.
    pub(super) fn range(&self, from: &[u8], to: &[u8]) -> Vec<Record> {
        if from > to {
            return Vec::new();
        }
        self.between(Bound::Included(from), Bound::Included(to))
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }

    /// A copy of every record, in key order.
    pub(super) fn sorted(&self) -> Vec<Record> {
        self.between(Bound::Unbounded, Bound::Unbounded)
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }

    fn between<'a>(
        &'a self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
    ) -> Box<dyn Iterator<Item = (&'a [u8], &'a [u8])> + 'a> {
        match self {
            Table::Ordered(m) => Box::new(
                m.range::<[u8], _>((lower, upper))
                    .map(|(k, v)| (&k[..], &v[..])),
            ),
            Table::Keyed(m) => {
                let mut hits: Vec<(&[u8], &[u8])> = m
                    .iter()
                    .map(|(k, v)| (&k[..], &v[..]))
                    .filter(|(k, _)| within(k, lower, upper))
                    .collect();
                hits.sort_unstable_by(|a, b| a.0.cmp(b.0));
                Box::new(hits.into_iter())
            }
        }
    }
}

fn within(key: &[u8], lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> bool {
    let above = match lower {
        Bound::Included(l) => key >= l,
        Bound::Excluded(l) => key > l,
        Bound::Unbounded => true,
    };
    let below = match upper {
        Bound::Included(u) => key <= u,
        Bound::Excluded(u) => key < u,
        Bound::Unbounded => true,
    };
    above && below
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both kinds answer alike: by key, by range and in whole, in key order.
    #[test]
    fn a_keyed_table_reads_in_key_order_like_an_ordered_one() {
        let mut keyed = Table::for_tree(TreeId::FinalTxs);
        let mut ordered = Table::for_tree(TreeId::TxIndex);
        assert!(matches!(keyed, Table::Keyed(_)) && matches!(ordered, Table::Ordered(_)));
        for t in [&mut keyed, &mut ordered] {
            for k in [b"d", b"a", b"c", b"b", b"e"] {
                assert_eq!(t.insert(k, k.to_vec()), None);
            }
            assert_eq!(t.insert(b"c", b"C".to_vec()), Some(b"c".to_vec()));
            assert_eq!(t.remove(b"e"), Some(b"e".to_vec()));
            assert_eq!(t.remove(b"e"), None);
        }
        for t in [&keyed, &ordered] {
            assert_eq!(t.len(), 4);
            assert_eq!(t.get(b"c"), Some(&b"C".to_vec()));
            let keys = |v: Vec<Record>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
            assert_eq!(keys(t.sorted()), [b"a", b"b", b"c", b"d"]);
            assert_eq!(keys(t.range(b"b", b"c")), [b"b", b"c"]);
            assert!(t.range(b"c", b"b").is_empty());
            let after: Vec<&[u8]> = t.after(Some(b"b")).map(|(k, _)| k).collect();
            assert_eq!(after, [&b"c"[..], &b"d"[..]]);
            assert_eq!(t.after(None).count(), 4);
            assert_eq!(t.iter().count(), 4);
        }
    }
}
