//! Scans over string bytes, shared by the parser's fast path, the writer and (the block scan)
//! the token path: eight bytes per step with plain integer arithmetic (no `unsafe`, no
//! intrinsics), so a QMP key or command name costs one or two steps instead of a table lookup
//! per byte, then 32-byte blocks the compiler vectorises for long strings.

use super::value::INLINE_CAPACITY;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// First index at or after `i` of a byte that a string cannot take as it is: a quote, a
/// backslash, a control byte (`< 0x20`), a byte `>= 0x80`, and with `STOP_AT_DEL` also `0x7F`
/// (which the writer escapes); `s.len()` when there is none.
#[inline(always)]
pub(crate) fn string_run_end<const STOP_AT_DEL: bool>(s: &[u8], i: usize) -> usize {
    // Keys and names end within two words; long strings go a block at a time.
    match word_run_end::<STOP_AT_DEL>(s, i, 2) {
        Ok(end) => end,
        Err(i) => {
            let i = block_run_end(s, i, is_special::<STOP_AT_DEL>);
            word_run_end::<STOP_AT_DEL>(s, i, usize::MAX).unwrap_or_else(|end| end)
        }
    }
}

/// Bytes per step of the block scan: a fixed size lets the compiler turn the per-byte test
/// into vector compares.
const BLOCK: usize = 32;

/// Skip whole blocks from `i` in which no byte is `special`; stops at the first block holding
/// one (or too short to be a block). Shared with the token path's string scan (`stream`),
/// which stops at another set of bytes.
#[inline(never)]
pub(crate) fn block_run_end(s: &[u8], mut i: usize, special: impl Fn(u8) -> bool) -> usize {
    while let Some(block) = s.get(i..i + BLOCK) {
        let mut hit = false;
        for &b in block {
            hit |= special(b);
        }
        if hit {
            break;
        }
        i += BLOCK;
    }
    i
}

#[inline(always)]
fn is_special<const STOP_AT_DEL: bool>(b: u8) -> bool {
    !(0x20..0x80).contains(&b) | (b == b'"') | (b == b'\\') | (STOP_AT_DEL & (b == 0x7F))
}

/// The word-at-a-time scan, then byte by byte once fewer than eight bytes are left: `Ok` with
/// the end of the run, or `Err` with the position reached after `max_words` plain words.
#[inline(always)]
fn word_run_end<const STOP_AT_DEL: bool>(
    s: &[u8],
    mut i: usize,
    max_words: usize,
) -> Result<usize, usize> {
    let mut words = 0;
    while let Some(word) = s.get(i..i + 8) {
        if words == max_words {
            return Err(i);
        }
        words += 1;
        let hits =
            special_bits::<STOP_AT_DEL>(u64::from_le_bytes(word.try_into().unwrap_or([0; 8])));
        if hits != 0 {
            return Ok(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    while let Some(&b) = s.get(i) {
        if is_special::<STOP_AT_DEL>(b) {
            break;
        }
        i += 1;
    }
    Ok(i)
}

/// The high bit of each byte of the little-endian word `x` that [`string_run_end`] stops at.
/// Only the lowest flag is exact: a flag can be wrong only in a byte above a true hit (the
/// classic has-zero/has-less-than tests, whose borrows run upwards), so `trailing_zeros() / 8`
/// of a non-zero result is the index of the first special byte.
#[inline(always)]
pub(crate) fn special_bits<const STOP_AT_DEL: bool>(x: u64) -> u64 {
    let quote = x ^ (ONES * u64::from(b'"'));
    let backslash = x ^ (ONES * u64::from(b'\\'));
    let mut hits = (x.wrapping_sub(ONES * 0x20) & !x)
        | (quote.wrapping_sub(ONES) & !quote)
        | (backslash.wrapping_sub(ONES) & !backslash)
        | x;
    if STOP_AT_DEL {
        let del = x ^ (ONES * 0x7F);
        hits |= del.wrapping_sub(ONES) & !del;
    }
    hits & HIGH
}

/// [`string_run_end::<true>`] over the 22 bytes of an inline string (zero past its length, and
/// a zero byte counts as special): the string can be written as it is when the result is at
/// least its length. Three overlapping words, no loop.
#[inline(always)]
pub(crate) fn inline_run_end(bytes: &[u8; INLINE_CAPACITY]) -> usize {
    let at = |i: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&bytes[i..i + 8]);
        first_special_in_word(u64::from_le_bytes(w)).map_or(INLINE_CAPACITY, |k| i + k)
    };
    // The last word overlaps the second (22 = 8 + 8 + 6).
    at(0).min(at(8)).min(at(INLINE_CAPACITY - 8))
}

/// Index (0..8) of the first byte of `x` that [`string_run_end::<true>`] stops at.
#[inline(always)]
fn first_special_in_word(x: u64) -> Option<usize> {
    let hits = special_bits::<true>(x);
    (hits != 0).then(|| (hits.trailing_zeros() / 8) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(s: &[u8], i: usize) -> (usize, usize) {
        (string_run_end::<false>(s, i), string_run_end::<true>(s, i))
    }

    #[test]
    fn stops_at_the_first_special_byte() {
        for special in [b'"', b'\\', 0x00, 0x1F, 0x7F, 0x80, 0xC3, 0xFE, 0xFF] {
            for len in 0..100 {
                for at in 0..=len {
                    let mut s = vec![b'x'; len];
                    if at < len {
                        s[at] = special;
                        // A later special byte must not hide the first.
                        if at + 1 < len {
                            s[at + 1] = b'"';
                        }
                    }
                    let (lexer, writer) = both(&s, 0);
                    assert_eq!(writer, at, "{special:#x} at {at} of {len}");
                    if special == 0x7F {
                        let next = if at + 1 < len { at + 1 } else { len };
                        assert_eq!(lexer, next.min(len), "DEL at {at} of {len}");
                    } else {
                        assert_eq!(lexer, at, "{special:#x} at {at} of {len}");
                    }
                }
            }
        }
        let all: Vec<u8> = (0x20..0x7F).filter(|&b| b != b'"' && b != b'\\').collect();
        assert_eq!(both(&all, 0), (all.len(), all.len()));
        assert_eq!(both(&all, 5), (all.len(), all.len()));
    }

    #[test]
    fn inline_run_end_agrees_with_the_writer_scan() {
        for special in [b'"', b'\\', 0x01, 0x1F, 0x7F, 0x80, 0xFF] {
            for len in 0..=INLINE_CAPACITY {
                for at in 0..=len {
                    let mut bytes = [0u8; INLINE_CAPACITY];
                    bytes[..len].fill(b'x');
                    if at < len {
                        bytes[at] = special;
                    }
                    let expect = string_run_end::<true>(&bytes[..len], 0);
                    assert_eq!(
                        inline_run_end(&bytes).min(len),
                        expect,
                        "{special:#x} {at} {len}"
                    );
                }
            }
        }
    }
}
