//! Upkeep of the in-memory tables the node shares between tasks (`DashMap`s).
//!
//! A `DashMap` keeps the capacity of its largest moment: a flood or a backlog that grew one
//! would hold that memory for ever after it ended. Owners call [`shrink_if_sparse`] where a
//! table loses entries in bulk (a sweep, a block).

use dashmap::DashMap;
use std::hash::Hash;

/// Gives back the table's memory once three quarters of its capacity stand empty, unless its
/// capacity is at most `floor` (so a table that steady load keeps near that size never
/// rehashes).
pub fn shrink_if_sparse<K: Eq + Hash, V>(map: &DashMap<K, V>, floor: usize) {
    let capacity = map.capacity();
    if capacity > floor && map.len() < capacity / 4 {
        map.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::shrink_if_sparse;
    use dashmap::DashMap;

    #[test]
    fn a_table_a_backlog_grew_is_given_back_and_a_small_one_is_left_alone() {
        const FLOOR: usize = 1 << 14;
        let map: DashMap<u32, u32> = (0..100_000).map(|i| (i, i)).collect();
        let grown = map.capacity();
        // A third of the capacity: more than the quarter that would shrink it.
        let third = u32::try_from(grown / 3).unwrap();
        map.retain(|k, _| *k < third);
        // (Removals may leave tombstones, which `capacity` does not count.)
        let after_removals = map.capacity();
        shrink_if_sparse(&map, FLOOR);
        assert_eq!(
            map.capacity(),
            after_removals,
            "a quarter or more still used: kept"
        );
        map.retain(|k, _| *k < 1_000);
        shrink_if_sparse(&map, FLOOR);
        assert!(map.capacity() < grown / 8, "{} of {grown}", map.capacity());
        assert_eq!(map.len(), 1_000);
        let small: DashMap<u32, u32> = (0..5_000).map(|i| (i, i)).collect();
        small.retain(|k, _| *k < 10);
        let before = small.capacity();
        assert!(before > 10 * 4, "sparse enough to shrink but for the floor");
        shrink_if_sparse(&small, FLOOR);
        assert_eq!(small.capacity(), before, "under the floor: left alone");
    }
}
