//! How much memory sled may use for its page cache: the one place this is decided.
//!
//! An eighth of the machine's memory, never below 64 MiB (the node would thrash) nor above
//! 2 GiB (past that the OS page cache serves better). A small VPS with 2 GiB gets 256 MiB.

const MIN_CACHE_BYTES: u64 = 64 * 1024 * 1024;
const MAX_CACHE_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// The cache size for a machine with `total_memory` bytes.
pub fn cache_bytes_for(total_memory: u64) -> u64 {
    (total_memory / 8).clamp(MIN_CACHE_BYTES, MAX_CACHE_BYTES)
}

/// The cache size for this machine.
pub fn default_cache_bytes() -> u64 {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    cache_bytes_for(sys.total_memory())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_is_a_bounded_fraction_of_memory() {
        assert_eq!(cache_bytes_for(0), MIN_CACHE_BYTES);
        assert_eq!(cache_bytes_for(2 << 30), 256 << 20);
        assert_eq!(cache_bytes_for(1 << 40), MAX_CACHE_BYTES);
        assert!(default_cache_bytes() >= MIN_CACHE_BYTES);
    }
}
