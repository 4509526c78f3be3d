//! QEMU's modified-UTF-8 codec (`util/unicode.c`): one decoder shared by the parser (which
//! rejects what it cannot decode) and the writer (which turns it into U+FFFD).
//!
//! Modified UTF-8 is standard UTF-8 plus the overlong pair `C0 80` for NUL; noncharacters,
//! surrogates, overlong forms and code points above U+10FFFF are invalid.

/// True for code points QEMU accepts (`is_valid_codepoint`).
#[inline]
pub(crate) fn is_valid_codepoint(cp: i64) -> bool {
    if !(0..=0x10FFFF).contains(&cp) {
        return false;
    }
    if (0xFDD0..=0xFDEF).contains(&cp) || (cp & 0xFFFE) == 0xFFFE {
        return false;
    }
    !(0xD800..=0xDFFF).contains(&cp)
}

/// Decode one code point at the start of `s` like `mod_utf8_codepoint(s, 6, &end)` on a
/// NUL-terminated C string: returns the code point (or -1 when invalid) and the number of bytes
/// the C code advances. The end of `s` behaves like QEMU's terminating NUL.
///
/// A NUL byte at the start is "empty" in C (-1, nothing consumed); callers stop there first.
#[inline]
pub(crate) fn decode(s: &[u8]) -> (i64, usize) {
    let Some(&first) = s.first() else {
        return (-1, 0);
    };
    if first == 0 {
        return (-1, 0);
    }
    if first < 0x80 {
        return (i64::from(first), 1);
    }
    if first >= 0xFE || first & 0x40 == 0 {
        return (-1, 1);
    }
    let len = first.leading_ones() as usize; // 2..=6 here
    let mask: u8 = 0x80 >> len;
    let mut cp = i64::from(first & (mask.wrapping_sub(1)));
    let mut p = 1;
    while p < len {
        let byte = s.get(p).copied().unwrap_or(0);
        if byte & 0xC0 != 0x80 {
            return (-1, p);
        }
        cp = (cp << 6) | i64::from(byte & 0x3F);
        p += 1;
    }
    const MIN_CP: [i64; 5] = [0x80, 0x800, 0x10000, 0x200000, 0x4000000];
    if !is_valid_codepoint(cp) || (cp < MIN_CP[len - 2] && !(cp == 0 && len == 2)) {
        return (-1, p);
    }
    (cp, p)
}

/// Append the modified-UTF-8 encoding of a valid code point (`mod_utf8_encode`).
/// Returns false (and appends nothing) for an invalid one.
#[inline]
pub(crate) fn encode(cp: i64, out: &mut Vec<u8>) -> bool {
    if !is_valid_codepoint(cp) {
        return false;
    }
    let c = cp as u32;
    if c > 0 && c <= 0x7F {
        out.push(c as u8);
    } else if c <= 0x7FF {
        out.extend_from_slice(&[0xC0 | (c >> 6) as u8, 0x80 | (c & 0x3F) as u8]);
    } else if c <= 0xFFFF {
        out.extend_from_slice(&[
            0xE0 | (c >> 12) as u8,
            0x80 | ((c >> 6) & 0x3F) as u8,
            0x80 | (c & 0x3F) as u8,
        ]);
    } else {
        out.extend_from_slice(&[
            0xF0 | (c >> 18) as u8,
            0x80 | ((c >> 12) & 0x3F) as u8,
            0x80 | ((c >> 6) & 0x3F) as u8,
            0x80 | (c & 0x3F) as u8,
        ]);
    }
    true
}

/// Length of the leading run of ASCII bytes in `s`, a block at a time (the fixed-size block
/// lets the compiler use vector compares).
#[inline]
pub(crate) fn ascii_prefix_len(s: &[u8]) -> usize {
    const BLOCK: usize = 32;
    let mut i = 0;
    for block in s.chunks_exact(BLOCK) {
        if !block.iter().fold(true, |acc, &b| acc & (b < 0x80)) {
            break;
        }
        i += BLOCK;
    }
    while i < s.len() && s[i] < 0x80 {
        i += 1;
    }
    i
}

/// True when every sequence in `s` decodes to a valid code point and `s` has no NUL byte,
/// i.e. the writer reproduces it exactly (no `\uFFFD`, no truncation).
pub(crate) fn is_exact_modified_utf8(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        i += ascii_prefix_len(&s[i..]);
        if i >= s.len() {
            break;
        }
        if s[i] == 0 {
            return false;
        }
        let (cp, n) = decode(&s[i..]);
        if cp < 0 {
            return false;
        }
        i += n;
    }
    !s.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_follows_qemu() {
        assert_eq!(decode(b"\xC0\x80x"), (0, 2));
        assert_eq!(decode(b"\xC1\xBF"), (-1, 2)); // overlong U+007F
        assert_eq!(decode(b"\xE0\x80\x80"), (-1, 3)); // overlong NUL, 3 bytes
        assert_eq!(decode(b"\xC3("), (-1, 1)); // continuation missing: lead byte only
        assert_eq!(decode(b"\xE2\x82"), (-1, 2)); // truncated at end
        assert_eq!(decode(b"\x80"), (-1, 1));
        assert_eq!(decode(b"\xFE"), (-1, 1));
        assert_eq!(decode(b"\xEF\xBF\xBF"), (-1, 3)); // U+FFFF noncharacter
        assert_eq!(decode(b"\xED\xA0\x80"), (-1, 3)); // surrogate
        assert_eq!(decode(b"\xF4\x90\x80\x80"), (-1, 4)); // U+110000
        assert_eq!(decode(b"\xF8\x88\x80\x80\x80"), (-1, 5)); // 5-byte form
        assert_eq!(decode("é".as_bytes()), (0xE9, 2));
        assert_eq!(decode("𝄞".as_bytes()), (0x1D11E, 4));
    }

    #[test]
    fn encode_nul_is_c0_80() {
        let mut v = Vec::new();
        assert!(encode(0, &mut v));
        assert_eq!(v, b"\xC0\x80");
        assert!(!encode(0xFDD0, &mut v));
        assert!(!encode(0x1FFFE, &mut v));
        assert!(!encode(0xD800, &mut v));
    }
}
