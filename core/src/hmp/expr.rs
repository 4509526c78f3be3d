//! The number readers of QEMU's HMP argument parser: `get_expr` (C-like integer expressions
//! with `strtoull` literals), `qemu_strtosz_MiB` (sizes) and `strtod` (seconds).
//!
//! Hand-written to keep QEMU's exact acceptance rules and messages (a general-purpose parser
//! would accept and reject different inputs). Recursion depth is bounded by the line length
//! (4095 bytes, one level per parenthesis or unary operator at most).

use super::args::{is_space, Cur};

type R = Result<i64, Vec<u8>>;

fn fail(msg: &[u8]) -> R {
    Err(msg.to_vec())
}

/// `next()`: step over the current byte and the spaces after it.
fn next(c: &mut Cur<'_>) {
    if c.c() != 0 {
        c.p += 1;
        c.skip_space();
    }
}

/// QEMU's `get_expr`: the value, or the message (without its newline).
pub(crate) fn get_expr(c: &mut Cur<'_>) -> R {
    c.skip_space();
    sum(c)
}

fn sum(c: &mut Cur<'_>) -> R {
    let mut v = logic(c)?;
    loop {
        let op = c.c();
        if op != b'+' && op != b'-' {
            return Ok(v);
        }
        next(c);
        let v2 = logic(c)?;
        v = if op == b'+' {
            v.wrapping_add(v2)
        } else {
            v.wrapping_sub(v2)
        };
    }
}

fn logic(c: &mut Cur<'_>) -> R {
    let mut v = prod(c)?;
    loop {
        let op = c.c();
        if !matches!(op, b'&' | b'|' | b'^') {
            return Ok(v);
        }
        next(c);
        let v2 = prod(c)?;
        v = match op {
            b'&' => v & v2,
            b'|' => v | v2,
            _ => v ^ v2,
        };
    }
}

fn prod(c: &mut Cur<'_>) -> R {
    let mut v = unary(c)?;
    loop {
        let op = c.c();
        if !matches!(op, b'*' | b'/' | b'%') {
            return Ok(v);
        }
        next(c);
        let v2 = unary(c)?;
        v = match op {
            b'*' => v.wrapping_mul(v2),
            _ if v2 == 0 => return fail(b"division by zero"),
            b'/' => v.wrapping_div(v2),
            _ => v.wrapping_rem(v2),
        };
    }
}

fn unary(c: &mut Cur<'_>) -> R {
    match c.c() {
        b'+' => {
            next(c);
            unary(c)
        }
        b'-' => {
            next(c);
            Ok(unary(c)?.wrapping_neg())
        }
        b'~' => {
            next(c);
            Ok(!unary(c)?)
        }
        b'(' => {
            next(c);
            let n = sum(c)?;
            if c.c() != b')' {
                return fail(b"')' expected");
            }
            next(c);
            Ok(n)
        }
        b'\'' => {
            c.p += 1;
            if c.c() == 0 {
                return fail(b"character constant expected");
            }
            // C's `char` is signed on x86.
            let n = i64::from(c.c() as i8);
            c.p += 1;
            if c.c() != b'\'' {
                return fail(b"missing terminating ' character");
            }
            next(c);
            Ok(n)
        }
        b'$' => {
            c.p += 1;
            while c.c().is_ascii_alphanumeric() || c.c() == b'_' || c.c() == b'.' {
                c.p += 1;
            }
            c.skip_space();
            // No CPU registers are known to the core.
            fail(b"unknown register")
        }
        0 => fail(b"unexpected end of expression"),
        ch => match strtoull(c) {
            Err(()) => fail(b"number too large"),
            Ok(None) => {
                let mut m = b"invalid char '".to_vec();
                m.push(ch);
                m.push(b'\'');
                m.extend_from_slice(b" in expression");
                Err(m)
            }
            Ok(Some(n)) => {
                c.skip_space();
                Ok(n as i64)
            }
        },
    }
}

/// `strtoull(p, &end, 0)` at a byte that is not a sign or a space: `Ok(None)` when no digit
/// was read, `Err` on overflow (ERANGE); the cursor moves past what was read.
fn strtoull(c: &mut Cur<'_>) -> Result<Option<u64>, ()> {
    let (base, mut k) =
        if c.c() == b'0' && matches!(c.at(1), b'x' | b'X') && c.at(2).is_ascii_hexdigit() {
            (16, 2)
        } else if c.c() == b'0' {
            (8, 0)
        } else {
            (10, 0)
        };
    let mut v: u64 = 0;
    let mut any = false;
    let mut over = false;
    while let Some(d) = char::from(c.at(k)).to_digit(base) {
        any = true;
        match v
            .checked_mul(u64::from(base))
            .and_then(|x| x.checked_add(u64::from(d)))
        {
            Some(x) => v = x,
            None => over = true,
        }
        k += 1;
    }
    if !any {
        return Ok(None);
    }
    c.p += k;
    if over {
        return Err(());
    }
    Ok(Some(v))
}

/// `suffix_mul` with a unit of 1024.
fn suffix_mul(b: u8) -> Option<u64> {
    let shift = match b.to_ascii_uppercase() {
        b'B' => 0,
        b'K' => 10,
        b'M' => 20,
        b'G' => 30,
        b'T' => 40,
        b'P' => 50,
        b'E' => 60,
        _ => return None,
    };
    Some(1u64 << shift)
}

/// `qemu_strtosz_MiB`: a size with an optional `B K M G T P E` suffix (MiB without one) and an
/// optional decimal fraction; hex (`0x...`) without either. The value and the bytes read.
pub(crate) fn strtosz_mib(s: &[u8]) -> Option<(u64, usize)> {
    let mut i = 0;
    while s.get(i).copied().is_some_and(is_space) {
        i += 1;
    }
    if s.get(i) == Some(&b'+') {
        i += 1;
    }
    let digits_at = i;
    while s.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    if i == digits_at {
        return None;
    }
    let text = std::str::from_utf8(&s[digits_at..i]).ok()?;
    let val: u64 = text.parse().ok()?;
    let mut valf: u64 = 0;
    let at = |k: usize| s.get(k).copied().unwrap_or(0);
    if val == 0 && matches!(at(i), b'x' | b'X') {
        let h = i + 1;
        let mut j = h;
        while at(j).is_ascii_hexdigit() {
            j += 1;
        }
        if j == h {
            // `0x` without digits: the 0 is read, the `x` is left for the caller.
            return Some((0, i));
        }
        let v = u64::from_str_radix(std::str::from_utf8(&s[h..j]).ok()?, 16).ok()?;
        if at(j) == b'.' || suffix_mul(at(j)).is_some() {
            return None;
        }
        return v.checked_mul(1 << 20).map(|v| (v, j));
    }
    if at(i) == b'.' {
        match strtod(&s[i..]) {
            // QEMU steps over a lone dot and goes on.
            None => i += 1,
            Some((frac, n)) => {
                if s[i..i + n].iter().any(|&b| b == b'e' || b == b'E') {
                    return None;
                }
                i += n;
                if frac != 0.0 {
                    valf = (frac * 18_446_744_073_709_551_616.0) as u64;
                }
            }
        }
    }
    let mul = match suffix_mul(at(i)) {
        Some(m) => {
            i += 1;
            m
        }
        None => 1 << 20,
    };
    if mul == 1 {
        return if valf != 0 { None } else { Some((val, i)) };
    }
    let whole = u128::from(val) * u128::from(mul);
    let f = u128::from(valf) * u128::from(mul);
    let total = whole + (f >> 64) + ((f as u64) >> 63) as u128;
    u64::try_from(total).ok().map(|v| (v, i))
}

/// `strtod` for decimal numbers, `inf`/`infinity` and `nan`: the value and the bytes read, or
/// `None` when nothing was read.
pub(crate) fn strtod(s: &[u8]) -> Option<(f64, usize)> {
    let at = |k: usize| s.get(k).copied().unwrap_or(0);
    let mut i = 0;
    while is_space(at(i)) {
        i += 1;
    }
    let start = i;
    if matches!(at(i), b'+' | b'-') {
        i += 1;
    }
    let word =
        |w: &[u8], k: usize| s.len() >= k + w.len() && s[k..k + w.len()].eq_ignore_ascii_case(w);
    let neg = at(start) == b'-';
    if word(b"infinity", i) || word(b"inf", i) {
        let n = if word(b"infinity", i) { 8 } else { 3 };
        return Some((
            if neg {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            },
            i + n,
        ));
    }
    if word(b"nan", i) {
        return Some((f64::NAN, i + 3));
    }
    let mant = i;
    while at(i).is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - mant;
    if at(i) == b'.' {
        let d = i + 1;
        let mut j = d;
        while at(j).is_ascii_digit() {
            j += 1;
        }
        digits += j - d;
        if digits > 0 {
            i = j;
        }
    }
    if digits == 0 {
        return None;
    }
    if matches!(at(i), b'e' | b'E') {
        let mut j = i + 1;
        if matches!(at(j), b'+' | b'-') {
            j += 1;
        }
        let e = j;
        while at(j).is_ascii_digit() {
            j += 1;
        }
        if j > e {
            i = j;
        }
    }
    let text = std::str::from_utf8(&s[start..i]).ok()?;
    let text = text.strip_suffix('.').unwrap_or(text);
    text.parse::<f64>().ok().map(|v| (v, i))
}
