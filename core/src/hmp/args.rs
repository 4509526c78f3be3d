//! QEMU 7.2's HMP argument parser (`monitor_parse_arguments` and its helpers in
//! `monitor/hmp.c`): a command's `args_type` string drives the parsing of the rest of the
//! line into named arguments, with QEMU's error texts.
//!
//! Hand-written because the grammar is QEMU's own (typed keys like `val:l,size:i?`, C-style
//! expressions with `strtoull`, quoted strings with QEMU's escapes, `-f` options, `/fmt`), and
//! its error messages are part of what a person sees.
//!
//! Supported types: `s` `F` `B` (a word or a quoted string), `S` (the rest of the line), `i`
//! `l` `M` (expressions; `$register` is not known here and gives `unknown register`), `o`
//! (sizes, MiB by default), `T` (seconds, with `ms`/`us`/`ns`), `b` (`on`/`off`), `-x` options
//! (also with a string value, `-xs`), `/` (a `/fmt` count, format and size, as `count`, `format`
//! and `size`), each with `?` (optional) and, for numbers, `.` (after a dot). `O` (a QemuOpts
//! list) is not supported: it answers like an unknown type. Lines and words are bounded by the
//! line editor (4095 bytes); a word is cut at 1023 bytes as QEMU cuts it.

use crate::json::{Object, Value};

/// QEMU's `buf[1024]` for one word: longer words are cut.
const WORD_MAX: usize = 1023;

/// QEMU's global defaults of the `/fmt` argument (`default_fmt_format`, `default_fmt_size`):
/// a `/fmt` with a format or size changes them for later commands.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct FmtDefaults {
    format: u8,
    size: i64,
}

impl Default for FmtDefaults {
    fn default() -> Self {
        FmtDefaults {
            format: b'x',
            size: 4,
        }
    }
}

pub(crate) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// A cursor over the line, reading NUL past its end as QEMU's C strings do.
#[derive(Clone, Copy)]
pub(crate) struct Cur<'a> {
    s: &'a [u8],
    pub(crate) p: usize,
}

impl<'a> Cur<'a> {
    pub(crate) fn new(s: &'a [u8], p: usize) -> Cur<'a> {
        Cur { s, p }
    }
    pub(crate) fn at(&self, k: usize) -> u8 {
        self.s.get(self.p + k).copied().unwrap_or(0)
    }
    pub(crate) fn c(&self) -> u8 {
        self.at(0)
    }
    pub(crate) fn skip_space(&mut self) {
        while is_space(self.c()) {
            self.p += 1;
        }
    }
    fn rest(&self) -> &'a [u8] {
        &self.s[self.p.min(self.s.len())..]
    }
}

/// QEMU's `get_str`: a word, or a `"quoted string"` with `\n \r \\ \' \"` escapes. `None` at
/// the end of the line or on a bad quoted string.
pub(crate) fn get_str(cur: &mut Cur<'_>) -> Option<Vec<u8>> {
    let mut q = Vec::new();
    cur.skip_space();
    if cur.c() == 0 {
        return None;
    }
    let push = |q: &mut Vec<u8>, b: u8| {
        if q.len() < WORD_MAX {
            q.push(b);
        }
    };
    if cur.c() == b'"' {
        cur.p += 1;
        while cur.c() != 0 && cur.c() != b'"' {
            if cur.c() == b'\\' {
                cur.p += 1;
                let c = cur.c();
                cur.p += 1;
                let c = match c {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b'\\' | b'\'' | b'"' => c,
                    // QEMU prints "unsupported escape code" on its stdout, not the monitor.
                    _ => return None,
                };
                push(&mut q, c);
            } else {
                push(&mut q, cur.c());
                cur.p += 1;
            }
        }
        if cur.c() != b'"' {
            return None;
        }
        cur.p += 1;
    } else {
        while cur.c() != 0 && !is_space(cur.c()) {
            push(&mut q, cur.c());
            cur.p += 1;
        }
    }
    Some(q)
}

/// QEMU's `parse_cmdline`: up to 16 words (`None` past that or on a bad quoted string).
pub(crate) fn parse_cmdline(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut cur = Cur::new(line, 0);
    let mut args = Vec::new();
    loop {
        cur.skip_space();
        if cur.c() == 0 {
            return Some(args);
        }
        if args.len() >= 16 {
            return None;
        }
        args.push(get_str(&mut cur)?);
    }
}

/// One `key:type` item of an `args_type` string.
struct Item<'t> {
    key: &'t str,
    ty: u8,
    /// The modifiers after the type letter up to the next `,` (`?`, `.`, an option letter...).
    rest: &'t [u8],
    /// Offset in the `args_type` string just after the type letter.
    after: usize,
}

/// Split an `args_type` string the way `key_get_info` walks it.
fn items(args_type: &str) -> Vec<Item<'_>> {
    let mut v = Vec::new();
    let mut off = 0;
    for part in args_type.split(',') {
        let here = off;
        off += part.len() + 1;
        if part.is_empty() {
            continue;
        }
        let Some((key, ty)) = part.split_once(':') else {
            break;
        };
        let ty = ty.as_bytes();
        v.push(Item {
            key,
            ty: ty.first().copied().unwrap_or(0),
            rest: ty.get(1..).unwrap_or(&[]),
            after: here + key.len() + 2,
        });
    }
    v
}

/// Refuse an `args_type` the parser cannot run (checked when a command is registered).
pub(crate) fn check_args_type(args_type: &str) -> Result<(), String> {
    for part in args_type.split(',').filter(|p| !p.is_empty()) {
        let Some((key, ty)) = part.split_once(':') else {
            return Err(format!("'{part}' has no ':type'"));
        };
        if key.is_empty() {
            return Err(format!("'{part}' has no key"));
        }
        match ty.as_bytes() {
            [b's' | b'F' | b'B' | b'S' | b'o' | b'T']
            | [b's' | b'F' | b'B' | b'S' | b'o' | b'T', b'?'] => {}
            [b'i' | b'l' | b'M'] | [b'i' | b'l' | b'M', b'?' | b'.'] => {}
            [b'b'] | [b'/'] => {}
            [b'-', opt, rest @ ..] if opt.is_ascii_graphic() && matches!(rest, [] | [b's']) => {}
            _ => return Err(format!("type '{ty}' of '{key}' is not supported")),
        }
    }
    Ok(())
}

/// Why parsing stopped: the text printed (each line ending in `\n`).
pub(crate) type ParseError = Vec<u8>;

fn err(parts: &[&[u8]]) -> ParseError {
    let mut v = parts.concat();
    v.push(b'\n');
    v
}

/// `monitor_parse_arguments`: the arguments of `cmd_name` (its `|` list, used in messages)
/// parsed from `line[start..]`.
pub(crate) fn parse_arguments(
    cmd_name: &str,
    args_type: &str,
    line: &[u8],
    start: usize,
    fmt: &mut FmtDefaults,
) -> Result<Object, ParseError> {
    let name = cmd_name.as_bytes();
    let mut cur = Cur::new(line, start);
    let mut out = Object::new();
    let all = items(args_type);
    let mut idx = 0;
    while idx < all.len() {
        let it = &all[idx];
        idx += 1;
        let optional = it.rest.first() == Some(&b'?');
        match it.ty {
            b'F' | b'B' | b's' => {
                cur.skip_space();
                if optional && cur.c() == 0 {
                    continue;
                }
                match get_str(&mut cur) {
                    Some(s) => {
                        out.insert(it.key, Value::string(s));
                    }
                    None => {
                        let what: &[u8] = match it.ty {
                            b'F' => b": filename expected",
                            b'B' => b": block device name expected",
                            _ => b": string expected",
                        };
                        return Err(err(&[name, what]));
                    }
                }
            }
            b'/' => {
                cur.skip_space();
                let (count, format, size);
                if cur.c() == b'/' {
                    cur.p += 1;
                    let mut n: i64 = 1;
                    if cur.c().is_ascii_digit() {
                        n = 0;
                        while cur.c().is_ascii_digit() {
                            n = (n as i32)
                                .wrapping_mul(10)
                                .wrapping_add(i32::from(cur.c() - b'0'))
                                .into();
                            cur.p += 1;
                        }
                    }
                    let mut sz: i64 = -1;
                    let mut f: i32 = -1;
                    loop {
                        match cur.c() {
                            c @ (b'o' | b'd' | b'u' | b'x' | b'i' | b'c') => {
                                f = i32::from(c);
                                cur.p += 1;
                            }
                            b'b' => {
                                sz = 1;
                                cur.p += 1;
                            }
                            b'h' => {
                                sz = 2;
                                cur.p += 1;
                            }
                            b'w' => {
                                sz = 4;
                                cur.p += 1;
                            }
                            b'g' | b'L' => {
                                sz = 8;
                                cur.p += 1;
                            }
                            _ => break,
                        }
                    }
                    if cur.c() != 0 && !is_space(cur.c()) {
                        return Err(err(&[b"invalid char in format: '", &[cur.c()], b"'"]));
                    }
                    let f = if f < 0 { fmt.format } else { f as u8 };
                    if f != b'i' {
                        if sz < 0 {
                            sz = fmt.size;
                        }
                        fmt.size = sz;
                    }
                    fmt.format = f;
                    count = n;
                    format = f;
                    size = sz;
                } else {
                    count = 1;
                    format = fmt.format;
                    size = if format != b'i' { fmt.size } else { -1 };
                }
                out.insert("count", Value::Int(count));
                out.insert("format", Value::Int(i64::from(format)));
                out.insert("size", Value::Int(size));
            }
            b'i' | b'l' | b'M' => {
                cur.skip_space();
                match it.rest.first() {
                    Some(b'?') if cur.c() == 0 => continue,
                    Some(b'.') => {
                        if cur.c() == b'.' {
                            cur.p += 1;
                            cur.skip_space();
                        } else {
                            continue;
                        }
                    }
                    _ => {}
                }
                let mut val = super::expr::get_expr(&mut cur).map_err(|e| err(&[&e]))?;
                if it.ty == b'i' && ((val >> 32) & 0xffff_ffff) != 0 {
                    return Err(err(&[
                        b"'",
                        name,
                        b"' has failed: integer is for 32-bit values",
                    ]));
                } else if it.ty == b'M' {
                    if val < 0 {
                        return Err(err(&[b"enter a positive value"]));
                    }
                    val = val.wrapping_mul(1 << 20);
                }
                out.insert(it.key, Value::Int(val));
            }
            b'o' => {
                cur.skip_space();
                if optional && cur.c() == 0 {
                    continue;
                }
                match super::expr::strtosz_mib(cur.rest()) {
                    Some((v, n)) if v <= i64::MAX as u64 => {
                        out.insert(it.key, Value::Int(v as i64));
                        cur.p += n;
                    }
                    _ => return Err(err(&[b"invalid size"])),
                }
            }
            b'T' => {
                cur.skip_space();
                if optional && cur.c() == 0 {
                    continue;
                }
                let Some((mut v, n)) = super::expr::strtod(cur.rest()) else {
                    return Err(err(&[b"Number expected"]));
                };
                if !v.is_finite() {
                    return Err(err(&[b"Bad number"]));
                }
                cur.p += n;
                if cur.c() != 0 && cur.at(1) == b's' {
                    let div = match cur.c() {
                        b'm' => Some(1e3),
                        b'u' => Some(1e6),
                        b'n' => Some(1e9),
                        _ => None,
                    };
                    if let Some(d) = div {
                        v /= d;
                        cur.p += 2;
                    }
                }
                if cur.c() != 0 && !is_space(cur.c()) {
                    return Err(err(&[b"Unknown unit suffix"]));
                }
                out.insert(it.key, Value::Double(v));
            }
            b'b' => {
                cur.skip_space();
                let beg = cur.p;
                while cur.c().is_ascii_graphic() {
                    cur.p += 1;
                }
                let word = &line[beg.min(line.len())..cur.p.min(line.len())];
                let v = match word {
                    b"on" => true,
                    b"off" => false,
                    _ => return Err(err(&[b"Expected 'on' or 'off'"])),
                };
                out.insert(it.key, Value::Bool(v));
            }
            b'-' => {
                let opt = it.rest.first().copied().unwrap_or(0);
                let has_value = it.rest.get(1) == Some(&b's');
                let tmp = cur.p;
                cur.skip_space();
                if cur.c() == b'-' {
                    cur.p += 1;
                    if opt != cur.c() {
                        // `is_valid_option`: "-<c>" appears in the rest of the args_type.
                        let from = (it.after + 1).min(args_type.len());
                        let rest_types = &args_type.as_bytes()[from..];
                        // QEMU's `strstr(typestr, "-c")`; at the end of the line the probe
                        // is just "-".
                        let found = if cur.c() == 0 {
                            rest_types.contains(&b'-')
                        } else {
                            rest_types.windows(2).any(|w| w == [b'-', cur.c()])
                        };
                        if !found {
                            return Err(err(&[
                                name,
                                b": unsupported option -",
                                &[cur.c()][..usize::from(cur.c() != 0)],
                            ]));
                        }
                        cur.p = tmp;
                    } else if has_value {
                        let letter = cur.c();
                        cur.p += 1;
                        cur.skip_space();
                        match get_str(&mut cur) {
                            Some(s) => {
                                out.insert(it.key, Value::string(s));
                            }
                            None => {
                                return Err(err(&[name, b": value expected for -", &[letter]]));
                            }
                        }
                    } else {
                        cur.p += 1;
                        out.insert(it.key, Value::Bool(true));
                    }
                }
            }
            b'S' => {
                cur.skip_space();
                if optional && cur.c() == 0 {
                    continue;
                }
                let rest = cur.rest();
                if rest.is_empty() {
                    return Err(err(&[name, b": string expected"]));
                }
                out.insert(it.key, Value::string(rest));
                cur.p += rest.len();
            }
            c => return Err(err(&[name, b": unknown type '", &[c], b"'"])),
        }
    }
    cur.skip_space();
    if cur.c() != 0 {
        return Err(err(&[name, b": extraneous characters at the end of line"]));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args_type: &str, line: &str) -> Result<Object, String> {
        let mut fmt = FmtDefaults::default();
        parse_arguments("cmd", args_type, line.as_bytes(), 0, &mut fmt)
            .map_err(|e| String::from_utf8(e).unwrap())
    }

    fn get(o: &Object, k: &str) -> Value {
        o.get(k).cloned().unwrap_or(Value::Null)
    }

    #[test]
    fn strings_words_quotes_and_the_rest_of_the_line() {
        let o = parse("a:s,b:s,c:S?", "word \"two \\\"words\\\"\\n\" the  rest ").unwrap();
        assert_eq!(get(&o, "a"), Value::string("word"));
        assert_eq!(get(&o, "b"), Value::string("two \"words\"\n"));
        assert_eq!(get(&o, "c"), Value::string("the  rest "));
        assert_eq!(parse("a:s", "").unwrap_err(), "cmd: string expected\n");
        assert_eq!(parse("a:F", "\"x").unwrap_err(), "cmd: filename expected\n");
        assert_eq!(
            parse("a:B", "\"\\q\"").unwrap_err(),
            "cmd: block device name expected\n"
        );
        assert!(parse("a:s?", "").unwrap().is_empty());
        let long = "y".repeat(2000);
        let o = parse("a:s", &long).unwrap();
        assert_eq!(get(&o, "a"), Value::string("y".repeat(WORD_MAX)));
    }

    #[test]
    fn numbers_expressions_and_their_errors() {
        let o = parse("a:i,b:l,c:M", "0x10 -(1<<0)+010 2").unwrap_err();
        assert_eq!(o, "')' expected\n");
        let o = parse("a:i,b:l,c:M", "0x10 ~0 2").unwrap();
        assert_eq!(get(&o, "a"), Value::Int(16));
        assert_eq!(get(&o, "b"), Value::Int(-1));
        assert_eq!(get(&o, "c"), Value::Int(2 << 20));
        assert_eq!(
            get(&parse("a:l", "010+'A'").unwrap(), "a"),
            Value::Int(8 + 65)
        );
        assert_eq!(
            parse("a:i", "-1").unwrap_err(),
            "'cmd' has failed: integer is for 32-bit values\n"
        );
        assert_eq!(parse("a:M", "-1").unwrap_err(), "enter a positive value\n");
        assert_eq!(parse("a:l", "$pc").unwrap_err(), "unknown register\n");
        assert_eq!(parse("a:l", "7%0").unwrap_err(), "division by zero\n");
        // `.` marks an argument given after a dot; `?` an optional one.
        assert!(parse("a:l.,b:i?", "").unwrap().is_empty());
        let o = parse("a:l.,b:i?", ". 5 6").unwrap();
        assert_eq!((get(&o, "a"), get(&o, "b")), (Value::Int(5), Value::Int(6)));
        assert_eq!(
            parse("a:l", "1 2").unwrap_err(),
            "cmd: extraneous characters at the end of line\n"
        );
    }

    #[test]
    fn sizes_seconds_and_switches() {
        let sizes = [
            ("1", 1 << 20),
            ("1.5k", 1536),
            ("2G", 2 << 30),
            ("0x10", 16 << 20),
            ("7b", 7),
        ];
        for (text, v) in sizes {
            assert_eq!(
                get(&parse("a:o", text).unwrap(), "a"),
                Value::Int(v),
                "{text}"
            );
        }
        assert_eq!(parse("a:o", "1.5b").unwrap_err(), "invalid size\n");
        assert_eq!(parse("a:o", "x").unwrap_err(), "invalid size\n");
        assert_eq!(
            get(&parse("a:T", "10ms").unwrap(), "a"),
            Value::Double(0.01)
        );
        assert_eq!(parse("a:T", "1h").unwrap_err(), "Unknown unit suffix\n");
        assert_eq!(parse("a:T", "inf").unwrap_err(), "Bad number\n");
        assert_eq!(parse("a:T", "z").unwrap_err(), "Number expected\n");
        assert_eq!(get(&parse("a:b", "on").unwrap(), "a"), Value::Bool(true));
        assert_eq!(parse("a:b", "yes").unwrap_err(), "Expected 'on' or 'off'\n");
    }

    #[test]
    fn options_and_formats() {
        let o = parse("f:-f,n:-ns,d:s?", "-f -n name dev").unwrap();
        assert_eq!(get(&o, "f"), Value::Bool(true));
        assert_eq!(get(&o, "n"), Value::string("name"));
        assert_eq!(get(&o, "d"), Value::string("dev"));
        // An option given later in the list is not an error for an earlier one.
        let o = parse("f:-f,n:-ns", "-n x").unwrap();
        assert_eq!(get(&o, "f"), Value::Null);
        assert_eq!(
            parse("f:-f", "-z").unwrap_err(),
            "cmd: unsupported option -z\n"
        );
        assert_eq!(
            parse("n:-ns", "-n").unwrap_err(),
            "cmd: value expected for -n\n"
        );
        let mut fmt = FmtDefaults::default();
        let o = parse_arguments("x", "fmt:/", b"/10ib", 0, &mut fmt).unwrap();
        assert_eq!(get(&o, "count"), Value::Int(10));
        assert_eq!(get(&o, "format"), Value::Int(i64::from(b'i')));
        assert_eq!(get(&o, "size"), Value::Int(1));
        // The defaults changed for later commands: format `i`, so no size.
        let o = parse_arguments("x", "fmt:/", b"", 0, &mut fmt).unwrap();
        assert_eq!(get(&o, "format"), Value::Int(i64::from(b'i')));
        assert_eq!(get(&o, "size"), Value::Int(-1));
    }

    #[test]
    fn args_types_are_checked_at_registration() {
        for ok in [
            "",
            "a:s",
            "a:s?,b:S?",
            "a:i.,b:l?,c:M",
            "f:-f,n:-ns",
            "fmt:/,addr:l",
            "x:b",
        ] {
            assert!(check_args_type(ok).is_ok(), "{ok}");
        }
        for bad in ["a", "a:", ":s", "a:O", "a:s!", "a:i?x", "f:-", "f:-fx"] {
            assert!(check_args_type(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cmdline_words_are_bounded() {
        let many = "w ".repeat(17);
        assert_eq!(parse_cmdline(many.as_bytes()), None);
        assert_eq!(parse_cmdline(b"a \"b").as_deref(), None);
        assert_eq!(
            parse_cmdline(b" a  \"b c\" ").unwrap(),
            vec![b"a".to_vec(), b"b c".to_vec()]
        );
    }
}
