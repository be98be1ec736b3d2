//! The model's maps: std's maps with the Fx hash (`rustc-hash`).
//!
//! The keys are kernel addresses, ids and tids; std's SipHash cost a quarter
//! of the checker's time. Fx (v2) ends with a rotation, so aligned addresses,
//! whose low bits are zero, still spread over the table's buckets (the test
//! below checks it). Deterministic, so iteration order (and so output) is the
//! same every run.

pub type FastMap<K, V> = rustc_hash::FxHashMap<K, V>;
pub type FastSet<K> = rustc_hash::FxHashSet<K>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn aligned_keys_spread_over_low_bits() {
        let b = rustc_hash::FxBuildHasher;
        let mut low: FastSet<u64> = FastSet::default();
        for i in 0..256u64 {
            low.insert(b.hash_one(0xffff_c900_0000_0000u64 + i * 0x40) & 0xff);
        }
        // Far from all in one bucket.
        assert!(low.len() > 128, "{}", low.len());
    }
}
