//! Numbers as QEMU reads and writes them: integer tokens become int64, else uint64 (no sign),
//! else double (`strtod`); doubles are written with C's `printf("%.17g")`.
//!
//! `%.17g` is rebuilt from Rust's exact `{:.16e}` formatting (17 significant digits, rounded
//! half-to-even on the exact binary value, as glibc does), then laid out with `%g`'s rules:
//! exponent form when the exponent is below -4 or at least 17, trailing zeros removed, at least
//! two exponent digits. Non-finite values are written as glibc does (`inf`, `-inf`, `nan`,
//! `-nan`), which is not valid JSON but is what QEMU sends.

use super::value::Value;
use std::io::Write as _;

/// The value of an integer token (`-?(0|[1-9][0-9]*)`), as `parse_literal` classifies it.
pub(crate) fn integer_value(text: &[u8]) -> Value {
    let (neg, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    // Accumulate in u64 with overflow detection; the lexer guarantees digits only.
    let mut acc: u64 = 0;
    let mut overflow = digits.is_empty();
    for &d in digits {
        match acc
            .checked_mul(10)
            .and_then(|a| a.checked_add(u64::from(d.wrapping_sub(b'0'))))
        {
            Some(a) => acc = a,
            None => {
                overflow = true;
                break;
            }
        }
    }
    if !overflow {
        if neg {
            if acc <= 1u64 << 63 {
                return Value::Int((acc as i64).wrapping_neg());
            }
        } else if acc <= i64::MAX as u64 {
            return Value::Int(acc as i64);
        } else {
            return Value::UInt(acc);
        }
    }
    Value::Double(float_value(text))
}

/// The value of a float token (or of an integer token out of 64-bit range): `strtod`.
/// Rust's parser is correctly rounded like glibc's, overflows to infinity and underflows to 0.
pub(crate) fn float_value(text: &[u8]) -> f64 {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(f64::NAN)
}

/// Append `v` in decimal.
#[inline]
pub(crate) fn write_u64(mut v: u64, out: &mut Vec<u8>) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Append `v` in decimal.
#[inline]
pub(crate) fn write_i64(v: i64, out: &mut Vec<u8>) {
    if v < 0 {
        out.push(b'-');
    }
    write_u64(v.unsigned_abs(), out);
}

/// Append `v` as C's `printf("%.17g", v)` with glibc.
pub(crate) fn write_g17(v: f64, out: &mut Vec<u8>) {
    if v.is_sign_negative() {
        out.push(b'-');
    }
    if v.is_nan() {
        out.extend_from_slice(b"nan");
        return;
    }
    if v.is_infinite() {
        out.extend_from_slice(b"inf");
        return;
    }
    // "d.dddddddddddddddde<exp>", 17 significant digits, at most 32 bytes.
    let mut buf = [0u8; 40];
    let len = {
        let mut cur = std::io::Cursor::new(&mut buf[..]);
        // Cannot fail: the buffer is larger than the longest output.
        let _ = write!(cur, "{:.16e}", v.abs());
        cur.position() as usize
    };
    let text = &buf[..len];
    let mut digits = [0u8; 17];
    let mut nd = 0;
    let mut pos = 0;
    while pos < text.len() && text[pos] != b'e' {
        if text[pos].is_ascii_digit() && nd < 17 {
            digits[nd] = text[pos];
            nd += 1;
        }
        pos += 1;
    }
    let exp_text = text.get(pos + 1..).unwrap_or(b"0");
    let (eneg, edigits) = match exp_text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, exp_text),
    };
    let mut exp: i32 = 0;
    for &d in edigits {
        exp = exp * 10 + i32::from(d - b'0');
    }
    if eneg {
        exp = -exp;
    }
    // Significant digits without trailing zeros (at least one).
    let mut sig = nd;
    while sig > 1 && digits[sig - 1] == b'0' {
        sig -= 1;
    }
    if !(-4..17).contains(&exp) {
        out.push(digits[0]);
        if sig > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..sig]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push(b'0');
        }
        write_u64(u64::from(e), out);
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        out.extend_from_slice(&digits[..int_len]);
        if sig > int_len {
            out.push(b'.');
            out.extend_from_slice(&digits[int_len..sig]);
        }
    } else {
        out.extend_from_slice(b"0.");
        for _ in 0..(-exp - 1) {
            out.push(b'0');
        }
        out.extend_from_slice(&digits[..sig]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(v: f64) -> String {
        let mut out = Vec::new();
        write_g17(v, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn g17_matches_glibc() {
        // Expected texts: glibc printf("%.17g") (checked with printf(1) and QEMU's replies).
        assert_eq!(g(0.1), "0.10000000000000001");
        assert_eq!(g(1.5e-7), "1.4999999999999999e-07");
        assert_eq!(g(100.0), "100");
        assert_eq!(g(1e20), "1e+20");
        assert_eq!(g(1e16), "10000000000000000");
        assert_eq!(g(1e17), "1e+17");
        assert_eq!(g(0.0001), "0.0001");
        assert_eq!(g(0.00001), "1.0000000000000001e-05");
        assert_eq!(g(-32.12313), "-32.123130000000003");
        assert_eq!(g(-32.20e-10), "-3.22e-09");
        assert_eq!(g(18446744073709551616.0), "1.8446744073709552e+19");
        assert_eq!(g(-9223372036854775809.0), "-9.2233720368547758e+18");
        assert_eq!(g(2f64.powi(-25)), "2.9802322387695312e-08");
        assert_eq!(g(0.0), "0");
        assert_eq!(g(-0.0), "-0");
        assert_eq!(g(f64::INFINITY), "inf");
        assert_eq!(g(f64::NEG_INFINITY), "-inf");
        assert_eq!(g(f64::NAN), "nan");
        assert_eq!(g(-f64::NAN), "-nan");
        assert_eq!(g(5e-324), "4.9406564584124654e-324");
        assert_eq!(g(f64::MAX), "1.7976931348623157e+308");
        assert_eq!(g(3.5), "3.5");
    }

    #[test]
    fn integer_kinds() {
        assert_eq!(integer_value(b"-0"), Value::Int(0));
        assert_eq!(integer_value(b"9223372036854775807"), Value::Int(i64::MAX));
        assert_eq!(integer_value(b"-9223372036854775808"), Value::Int(i64::MIN));
        assert_eq!(
            integer_value(b"9223372036854775808"),
            Value::UInt(9223372036854775808)
        );
        assert_eq!(
            integer_value(b"18446744073709551615"),
            Value::UInt(u64::MAX)
        );
        assert_eq!(
            integer_value(b"18446744073709551616"),
            Value::Double(18446744073709551616.0)
        );
        assert_eq!(
            integer_value(b"-9223372036854775809"),
            Value::Double(-9223372036854775809.0)
        );
    }
}
