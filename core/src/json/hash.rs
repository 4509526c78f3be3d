//! QEMU's dictionary iteration order: `qdict.c` keeps members in 512 hash buckets chosen by the
//! tdb hash, walks buckets in ascending order, and inserts at the head of a bucket, so within a
//! bucket the newest member comes first. The writer and the server's request validation both
//! follow this order.

use super::value::{JsonString, Object, INLINE_CAPACITY};

/// Number of buckets of a QEMU `QDict` (`QDICT_BUCKET_MAX`).
pub const BUCKETS: usize = 512;

/// QEMU's `tdb_hash` of a key. Keys are C strings there: bytes after a NUL do not count.
#[inline]
pub fn tdb_hash(key: &[u8]) -> u32 {
    // The C code starts from 0x238F13AF * strlen; addition commutes, so the length term is
    // added after one pass that also finds the end of the C string.
    let mut value: u32 = 0;
    let mut shift: u32 = 0;
    let mut len: u32 = 0;
    for &b in key {
        if b == 0 {
            break;
        }
        value = value.wrapping_add(u32::from(b) << shift);
        // (i * 5) % 24 for the next i
        shift += 5;
        if shift >= 24 {
            shift -= 24;
        }
        len = len.wrapping_add(1);
    }
    value = value.wrapping_add(0x238F_13AFu32.wrapping_mul(len));
    1_103_515_243u32.wrapping_mul(value).wrapping_add(12345)
}

/// The bucket (0..512) of a key: `tdb_hash(key) % 512`, computed with a ninth of the work.
///
/// Only the hash's low 9 bits matter, and every step of `tdb_hash` (sums, the final multiply
/// and add, all modulo 2^32) keeps the low 9 bits depending on low 9 bits only. A byte shifted
/// left by 9 or more adds nothing to them, so only the bytes whose shift `(i * 5) % 24` is
/// below 9 are summed: 9 positions in every 24 (`LOW_SHIFTS`). The writer calls this for
/// every member of every object it writes.
#[inline]
pub fn bucket(key: &[u8]) -> usize {
    // A C string: the key ends at its first NUL.
    let len = key.iter().position(|&b| b == 0).unwrap_or(key.len());
    let mut value = 0x238F_13AFu32.wrapping_mul(len as u32);
    for chunk in key[..len].chunks(24) {
        for &(pos, shift) in &LOW_SHIFTS {
            if let Some(&b) = chunk.get(pos) {
                value = value.wrapping_add(u32::from(b) << shift);
            }
        }
    }
    1_103_515_243u32.wrapping_mul(value).wrapping_add(12345) as usize % BUCKETS
}

/// The positions `i` within each 24 bytes whose shift `(i * 5) % 24` is below 9, with that
/// shift; the other 15 positions do not reach a bucket's 9 bits.
const LOW_SHIFTS: [(usize, u32); 9] = [
    (0, 0),
    (1, 5),
    (5, 1),
    (6, 6),
    (10, 2),
    (11, 7),
    (15, 3),
    (16, 8),
    (20, 4),
];

/// Objects up to this many members are ordered on the stack without allocating.
/// [`bucket`] of a key. An inline key is zero past its length, so its nine contributing bytes
/// are fixed-position loads (zeros add nothing); only a NUL inside it (the C string ends there)
/// needs the general function.
#[inline]
pub(crate) fn bucket_of(key: &JsonString) -> usize {
    let len = key.len();
    match key.inline_bytes() {
        Some(b) if first_nul(b) >= len => {
            // LOW_SHIFTS spelled out: constant indices into a fixed array, no loop.
            let at = |pos: usize, shift: u32| u32::from(b[pos]) << shift;
            let value = 0x238F_13AFu32
                .wrapping_mul(len as u32)
                .wrapping_add(at(0, 0) + at(1, 5) + at(5, 1) + at(6, 6) + at(10, 2))
                .wrapping_add(at(11, 7) + at(15, 3) + at(16, 8) + at(20, 4));
            1_103_515_243u32.wrapping_mul(value).wrapping_add(12345) as usize % BUCKETS
        }
        _ => bucket(key.as_bytes()),
    }
}

/// Index of the first zero byte of `b` (`b.len()` if none), a word at a time (the lowest flag
/// of the has-zero test is exact).
#[inline(always)]
fn first_nul(b: &[u8; INLINE_CAPACITY]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word = |at: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&b[at..at + 8]);
        let w = u64::from_le_bytes(w);
        w.wrapping_sub(ONES) & !w & HIGH
    };
    // The last word overlaps the second (22 = 8 + 8 + 6): its top six bytes are new. When the
    // first two words hold no zero, no borrow reaches them, so their lowest flag is exact.
    let (z0, z1, z2) = (word(0), word(8), word(INLINE_CAPACITY - 8) >> 16);
    if z0 != 0 {
        (z0.trailing_zeros() / 8) as usize
    } else if z1 != 0 {
        8 + (z1.trailing_zeros() / 8) as usize
    } else if z2 != 0 {
        16 + (z2.trailing_zeros() / 8) as usize
    } else {
        INLINE_CAPACITY
    }
}

const SMALL_OBJECT: usize = 16;

/// Call `f` with the index (into `o.entries()`) of each member in QEMU's iteration order.
#[inline]
pub(crate) fn for_each_in_bucket_order(o: &Object, mut f: impl FnMut(usize)) {
    let entries = o.entries();
    let n = entries.len();
    if n <= 1 {
        if n == 1 {
            f(0);
        }
        return;
    }
    if n <= SMALL_OBJECT {
        // Sort key: bucket ascending, then insertion index descending (newest first).
        let mut keys = [0u32; SMALL_OBJECT];
        for (i, (k, _)) in entries.iter().enumerate() {
            keys[i] = ((bucket_of(k) as u32) << 16) | (0xFFFF - i as u32);
        }
        let keys = &mut keys[..n];
        keys.sort_unstable();
        for &k in keys.iter() {
            f((0xFFFF - (k & 0xFFFF)) as usize);
        }
        return;
    }
    for i in bucket_order(o) {
        f(i);
    }
}

/// The indices into `o.entries()` in QEMU's iteration order (ascending bucket, newest first
/// within a bucket). The server's request validation walks members in this order.
pub fn bucket_order(o: &Object) -> Vec<usize> {
    let mut keyed: Vec<(usize, std::cmp::Reverse<usize>)> = o
        .entries()
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (bucket_of(k), std::cmp::Reverse(i)))
        .collect();
    keyed.sort_unstable();
    keyed
        .into_iter()
        .map(|(_, std::cmp::Reverse(i))| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::Value;

    #[test]
    fn appendix_b_buckets() {
        // Spec Appendix B (hash values computed from QEMU's formula, confirmed by live output).
        let table: &[(&str, u32, usize)] = &[
            ("seconds", 0x091D1205, 5),
            ("timestamp", 0x6446CA1A, 26),
            ("QMP", 0x1DEB2A63, 99),
            ("exec-oob", 0xBE8AECA2, 162),
            ("status", 0xD02062CA, 202),
            ("singlestep", 0x7C2DCCCA, 202),
            ("class", 0xC38690D3, 211),
            ("minor", 0x6F4FF4E1, 225),
            ("micro", 0x1B6610E1, 225),
            ("execute", 0x54B7B52B, 299),
            ("desc", 0x0C47CD79, 377),
            ("return", 0xFB353F91, 401),
            ("arguments", 0x512F3BBF, 447),
            ("id", 0x6377ABE6, 486),
            ("error", 0xC51C69E9, 489),
            ("data", 0xF3EF43F9, 505),
        ];
        for &(k, h, b) in table {
            assert_eq!(tdb_hash(k.as_bytes()), h, "{k}");
            assert_eq!(bucket(k.as_bytes()), b, "{k}");
        }
    }

    #[test]
    fn nul_ends_the_key() {
        assert_eq!(tdb_hash(b"id\0zz"), tdb_hash(b"id"));
        // A long key exercises the shift wrap-around ((i * 5) % 24).
        let long = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut v: u32 = 0x238F_13AFu32.wrapping_mul(long.len() as u32);
        for (i, &b) in long.iter().enumerate() {
            v = v.wrapping_add(u32::from(b) << ((i * 5) % 24));
        }
        assert_eq!(
            tdb_hash(long),
            1_103_515_243u32.wrapping_mul(v).wrapping_add(12345)
        );
    }

    #[test]
    fn bucket_is_hash_mod_512() {
        // Keys of every length up to three 24-byte rounds, with every byte value somewhere,
        // and NULs inside (the C string ends there).
        for len in 0..75usize {
            for seed in 0..8u32 {
                let key: Vec<u8> = (0..len)
                    .map(|i| ((i as u32 * 37 + seed * 101 + len as u32) % 256) as u8)
                    .collect();
                assert_eq!(bucket(&key), tdb_hash(&key) as usize % BUCKETS, "{key:?}");
            }
        }
        for (i, &(pos, shift)) in LOW_SHIFTS.iter().enumerate() {
            assert_eq!((pos as u32 * 5) % 24, shift, "entry {i}");
        }
        assert_eq!(bucket(b"singlestep\0x"), bucket(b"singlestep"));
        let low = (0..24u32).filter(|i| (i * 5) % 24 < 9).count();
        assert_eq!(low, LOW_SHIFTS.len());
    }

    #[test]
    fn order_of_p1() {
        let mut o = Object::new();
        for (i, k) in ["b", "a", "c", "zz", "id", "return", "error"]
            .iter()
            .enumerate()
        {
            o.insert(*k, Value::Int(i as i64));
        }
        let order: Vec<&str> = bucket_order(&o)
            .into_iter()
            .map(|i| o.entries()[i].0.as_str().unwrap())
            .collect();
        assert_eq!(order, ["a", "zz", "b", "return", "c", "id", "error"]);
        let mut small = Vec::new();
        for_each_in_bucket_order(&o, |i| small.push(i));
        assert_eq!(small, bucket_order(&o));
    }

    #[test]
    fn bucket_of_inline_keys_matches_bucket() {
        let mut keys: Vec<Vec<u8>> = vec![b"".to_vec(), b"id".to_vec(), b"a\0b".to_vec()];
        for len in 0..=30usize {
            keys.push((0..len).map(|i| (i * 29 + len) as u8 | 0x20).collect());
            let mut with_nul: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            if len > 0 {
                with_nul[len / 2] = 0;
            }
            keys.push(with_nul);
        }
        for k in keys {
            let js = JsonString::from(k.clone());
            assert_eq!(bucket_of(&js), bucket(&k), "{k:?}");
        }
    }

    #[test]
    fn first_nul_of_inline_bytes() {
        for len in 0..=INLINE_CAPACITY {
            let mut b = [0u8; INLINE_CAPACITY];
            b[..len].fill(b'k');
            assert_eq!(first_nul(&b), len);
            if len > 1 {
                b[len / 2] = 0;
                assert_eq!(first_nul(&b), len / 2);
            }
        }
    }
}
