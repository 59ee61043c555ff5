//! Keys to hash slots.

/// The number of hash slots. Fixed for the life of a cluster.
pub const SLOTS: u16 = 4096;

/// The part of `key` that decides its slot: the bytes between the first `{` and the next `}`
/// when that is not empty (Redis Cluster's rule), else the whole key. Keys sharing a tag share
/// a slot, and so a shard: `{user42}:name` and `{user42}:cart` can be written in one atomic
/// batch.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// The hash slot of `key`: crc32c of its hash tag, modulo [`SLOTS`].
pub fn slot_of(key: &[u8]) -> u16 {
    (crc32c::crc32c(hash_tag(key)) % u32::from(SLOTS)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_is_between_the_first_braces() {
        assert_eq!(hash_tag(b"{user42}:name"), b"user42");
        assert_eq!(hash_tag(b"cart:{user42}"), b"user42");
        assert_eq!(hash_tag(b"a{b}{c}"), b"b");
        assert_eq!(hash_tag(b"{}x"), b"{}x", "an empty tag means the whole key");
        assert_eq!(hash_tag(b"{x"), b"{x", "an unclosed brace is no tag");
        assert_eq!(hash_tag(b"x}{y}"), b"y");
        assert_eq!(hash_tag(b"plain"), b"plain");
        assert_eq!(hash_tag(b""), b"");
    }

    #[test]
    fn tagged_keys_share_a_slot() {
        assert_eq!(slot_of(b"{user42}:name"), slot_of(b"{user42}:cart"));
        assert_eq!(slot_of(b"{user42}:name"), slot_of(b"user42"));
        assert!(slot_of(b"anything at all") < SLOTS);
    }

    #[test]
    fn the_slot_is_crc32c_mod_4096() {
        // crc32c("123456789") = 0xE3069283, the standard check value.
        assert_eq!(slot_of(b"123456789"), (0xE306_9283u32 % 4096) as u16);
    }
}
