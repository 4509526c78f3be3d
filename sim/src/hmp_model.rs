//! The simulated people's model of a human monitor (HMP): what the keys they type make of
//! the line, and what each finished line must print. Written from QEMU 7.2's behaviour
//! (`util/readline.c`, `monitor/hmp.c`, checked against the live monitor), independently of
//! the core's `hmp` module: a line buffer with a cursor, a history with QEMU's rules, tab
//! completion of a command name, and the outcome of a line over the commands the sim knows
//! (the core's built-ins and [`crate::hmp_registry`]).
//!
//! The model covers the subset the people type ([`Key`]): printable bytes from a small
//! alphabet, editing keys and Enter. Tab is typed only where [`Editor::can_tab`] says the
//! model knows the candidates (the line is one word and the cursor at its end).
//!
//! Invariants: the line is at most [`MAX_LINE`] bytes (people type short lines); the history
//! holds at most [`MAX_HISTORY`] lines, without duplicates.

use crate::hmp_registry::{hmp_commands, hmp_handler, printed, SIM_ECHO};

/// QEMU's `READLINE_MAX_CMDS`.
pub const MAX_HISTORY: usize = 64;
/// Longest line the people type (far below QEMU's 4095).
pub const MAX_LINE: usize = 200;
/// The prompt.
pub const PROMPT: &[u8] = b"(qemu) ";
/// The banner of a connection (the sim's version is 7.2.22).
pub const BANNER: &[u8] = b"QEMU 7.2.22 monitor - type 'help' for more information\r\n";

/// What a person does with one keystroke (the people choose how to spell it).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// A printable byte, inserted at the cursor.
    Char(u8),
    /// Delete the byte before the cursor (8 or 127).
    Backspace,
    /// Delete the byte under the cursor (ctrl-d, `ESC [ 3 ~`).
    Delete,
    /// Cursor to the start (ctrl-a, `ESC [ 1 ~`, `ESC O H`).
    Home,
    /// Cursor to the end (ctrl-e, `ESC [ 4 ~`, `ESC O F`).
    End,
    /// `ESC [ D`.
    Left,
    /// `ESC [ C`.
    Right,
    /// Previous history line (`ESC [ A`).
    Up,
    /// Next history line (`ESC [ B`).
    Down,
    /// ctrl-w: the word before the cursor and the spaces after it.
    DeleteWord,
    /// ctrl-k or ctrl-u: QEMU 7.2's readline ignores them.
    Ignored(u8),
    /// Tab: complete the command name.
    Tab,
    /// CR or LF (CRLF is two of them).
    Enter,
}

/// What a key made the monitor show besides the redrawn line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shown {
    /// Enter: this line runs.
    Line(Vec<u8>),
    /// Tab with several candidates: a line end after `before` (the line as it was drawn
    /// before the tab), the candidates (`text`: sorted, in columns), then the prompt again.
    Listing {
        /// The line before the tab.
        before: Vec<u8>,
        /// The listing's bytes after the line end (`\r\n` line ends).
        text: Vec<u8>,
    },
}

fn space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// One monitor's line editor as the people's model sees it. The history belongs to the
/// monitor (it outlives connections); the line and cursor to the connection.
#[derive(Clone, Debug, Default)]
pub struct Editor {
    line: Vec<u8>,
    cur: usize,
    history: Vec<Vec<u8>>,
    /// The history line on display (QEMU's `hist_entry`), `None` for none.
    shown: Option<usize>,
    /// The history and the shown entry are unknown: a connection ended with keys the
    /// monitor may not have read (they change the history, or not).
    pub lost: bool,
}

impl Editor {
    /// The line being typed.
    pub fn line(&self) -> &[u8] {
        &self.line
    }

    /// The history, oldest first (meaningless when [`Editor::lost`]).
    pub fn history(&self) -> &[Vec<u8>] {
        &self.history
    }

    /// The cursor.
    pub fn cursor(&self) -> usize {
        self.cur
    }

    /// A new connection: an empty line (QEMU's `readline_restart`); the history stays.
    pub fn restart(&mut self) {
        self.line.clear();
        self.cur = 0;
    }

    /// The model knows what tab does here: the line is one word (or empty) and the cursor is
    /// at its end.
    pub fn can_tab(&self) -> bool {
        self.cur == self.line.len() && !self.line.iter().any(|&b| space(b))
    }

    /// Up/Down are predictable (the history is known).
    pub fn can_recall(&self) -> bool {
        !self.lost
    }

    /// Applies one key; returns what it showed besides the redraw.
    pub fn key(&mut self, k: Key, preconfig: bool) -> Option<Shown> {
        match k {
            Key::Char(b) => {
                if self.line.len() < MAX_LINE {
                    self.line.insert(self.cur, b);
                    self.cur += 1;
                }
            }
            Key::Backspace => {
                if self.cur > 0 {
                    self.cur -= 1;
                    self.line.remove(self.cur);
                }
            }
            Key::Delete => {
                if self.cur < self.line.len() {
                    self.line.remove(self.cur);
                }
            }
            Key::Home => self.cur = 0,
            Key::End => self.cur = self.line.len(),
            Key::Left => self.cur = self.cur.saturating_sub(1),
            Key::Right => self.cur = (self.cur + 1).min(self.line.len()),
            Key::Up => self.older(),
            Key::Down => self.newer(),
            Key::DeleteWord => self.delete_word(),
            Key::Ignored(_) => {}
            Key::Tab => return self.tab(preconfig),
            Key::Enter => {
                let line = std::mem::take(&mut self.line);
                self.cur = 0;
                self.remember(&line);
                return Some(Shown::Line(line));
            }
        }
        None
    }

    fn older(&mut self) {
        let at = match self.shown {
            Some(0) => return,
            Some(k) => k,
            None => self.history.len(),
        };
        if at == 0 {
            self.shown = None;
            return;
        }
        self.shown = Some(at - 1);
        self.line = self.history[at - 1].clone();
        self.cur = self.line.len();
    }

    fn newer(&mut self) {
        let Some(k) = self.shown else {
            return;
        };
        if k + 1 < MAX_HISTORY && k + 1 < self.history.len() {
            self.shown = Some(k + 1);
            self.line = self.history[k + 1].clone();
        } else {
            self.line.clear();
            self.shown = None;
        }
        self.cur = self.line.len();
    }

    /// ctrl-w as QEMU's `readline_backword`: from the byte before the cursor, back over
    /// spaces, then back to the byte after the previous space; at the very start of the line
    /// everything before the cursor goes (a leading space too).
    fn delete_word(&mut self) {
        if self.cur == 0 {
            return;
        }
        let mut k = self.cur - 1;
        while k > 0 && space(self.line[k]) {
            k -= 1;
        }
        loop {
            if k == 0 {
                break;
            }
            if space(self.line[k]) {
                k += 1;
                break;
            }
            k -= 1;
        }
        self.line.drain(k..self.cur);
        self.cur = k;
    }

    /// QEMU's `readline_hist_add`: an empty line is not kept; a line already there moves to
    /// the end, except that one equal to the newest line of a full history leaves everything
    /// as it is, the shown entry included (checked against QEMU 7.2: Up, Enter on the newest
    /// line of a full history, then Up shows the second newest); otherwise the oldest line
    /// goes when full.
    fn remember(&mut self, line: &[u8]) {
        if line.is_empty() {
            return;
        }
        let found = self
            .shown
            .filter(|&k| self.history.get(k).is_some_and(|h| h == line))
            .or_else(|| self.history.iter().position(|h| h == line));
        match found {
            Some(k) if k == MAX_HISTORY - 1 => return,
            Some(k) => {
                let h = self.history.remove(k);
                self.history.push(h);
            }
            None => {
                if self.history.len() == MAX_HISTORY {
                    self.history.remove(0);
                }
                self.history.push(line.to_vec());
            }
        }
        self.shown = None;
    }

    fn tab(&mut self, preconfig: bool) -> Option<Shown> {
        debug_assert!(self.can_tab(), "the people only tab where the model knows");
        let typed = self.line.clone();
        let mut items: Vec<Vec<u8>> = Vec::new();
        for e in table().iter().filter(|e| !e.info && e.available(preconfig)) {
            for alias in e.name.split('|') {
                if alias.as_bytes().starts_with(&typed) {
                    items.push(alias.as_bytes().to_vec());
                }
            }
        }
        match items.len() {
            0 => None,
            1 => {
                self.insert(&items[0][typed.len()..]);
                self.insert(b" ");
                None
            }
            _ => {
                items.sort();
                let mut common = items[0].len();
                for it in &items {
                    common =
                        common.min(it.iter().zip(&items[0]).take_while(|(a, b)| a == b).count());
                }
                let widest = items.iter().map(Vec::len).max().unwrap_or(0);
                let width = (widest + 2).clamp(10, 80);
                let per_row = 80 / width;
                let mut text = Vec::new();
                for (n, it) in items.iter().enumerate() {
                    text.extend_from_slice(it);
                    text.resize(text.len() + width - it.len(), b' ');
                    if (n + 1) % per_row == 0 || n + 1 == items.len() {
                        text.extend_from_slice(b"\r\n");
                    }
                }
                let prefix = items[0][typed.len()..common].to_vec();
                self.insert(&prefix);
                Some(Shown::Listing {
                    before: typed,
                    text,
                })
            }
        }
    }

    fn insert(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.line.len() < MAX_LINE {
                self.line.insert(self.cur, b);
                self.cur += 1;
            }
        }
    }
}

/// What the people's model knows of a command.
#[derive(Clone, Debug)]
pub struct Known {
    /// `|`-separated names.
    pub name: String,
    /// The parameter synopsis of `help`.
    pub params: String,
    /// The help text.
    pub help: String,
    /// May run in preconfig.
    pub p: bool,
    /// A subcommand of `info`.
    pub info: bool,
    /// What it does.
    pub kind: Kind,
}

/// How a known command runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `help|? [cmd]`.
    Help,
    /// `info` (bare: the `info` help).
    Info,
    /// `info history`.
    History,
    /// `getfd`/`closefd NAME` (the people never pass descriptors to HMP).
    FdName,
    /// The machine's command without arguments.
    Plain,
    /// `sim_echo TAG`.
    Echo,
}

impl Known {
    fn available(&self, preconfig: bool) -> bool {
        self.p || !preconfig
    }

    fn call(&self) -> String {
        let first = self.name.split('|').next().unwrap_or_default();
        if self.info {
            format!("hmp info {first}")
        } else {
            format!("hmp {first}")
        }
    }
}

/// The commands the people know: QEMU 7.2's texts of the core's built-ins, then the
/// machine's (from the registry the sim hands the core), sorted by name as QEMU sorts them.
pub fn table() -> &'static [Known] {
    static TABLE: std::sync::OnceLock<Vec<Known>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let k = |name: &str, params: &str, help: &str, info: bool, kind: Kind| Known {
            name: name.to_owned(),
            params: params.to_owned(),
            help: help.to_owned(),
            p: true,
            info,
            kind,
        };
        let mut t = vec![
            k("help|?", "[cmd]", "show the help", false, Kind::Help),
            k(
                "info",
                "[subcommand]",
                "show various information about the system state",
                false,
                Kind::Info,
            ),
            k(
                "history",
                "",
                "show the command line history",
                true,
                Kind::History,
            ),
            k(
                "getfd",
                "getfd name",
                "receive a file descriptor via SCM rights and assign it a name",
                false,
                Kind::FdName,
            ),
            k(
                "closefd",
                "closefd name",
                "close a file descriptor previously passed via SCM rights",
                false,
                Kind::FdName,
            ),
        ];
        for c in hmp_commands() {
            t.push(Known {
                kind: if c.name == SIM_ECHO {
                    Kind::Echo
                } else {
                    Kind::Plain
                },
                p: c.preconfig(),
                info: c.is_info,
                name: c.name,
                params: c.params,
                help: c.help,
            });
        }
        t.sort_by(|a, b| (a.info, a.name.as_bytes()).cmp(&(b.info, b.name.as_bytes())));
        t
    })
}

fn lookup(word: &[u8], info: bool, preconfig: bool) -> Result<&'static Known, bool> {
    match table()
        .iter()
        .find(|e| e.info == info && e.name.split('|').any(|n| n.as_bytes() == word))
    {
        None => Err(false),
        Some(e) if !e.available(preconfig) => Err(true),
        Some(e) => Ok(e),
    }
}

/// What a finished line must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The embedder's call it must cause first: its name and `sim_echo`'s tag.
    pub call: Option<(String, Option<i64>)>,
    /// What it prints (`\n` line ends, before the monitor turns them into `\r\n`); `None`:
    /// not predictable (`info history` after the history was lost).
    pub text: Option<Vec<u8>>,
    /// For the coverage marks.
    pub what: &'static str,
}

fn text(what: &'static str, t: Vec<u8>) -> Outcome {
    Outcome {
        call: None,
        text: Some(t),
        what,
    }
}

fn words(s: &[u8]) -> Vec<Vec<u8>> {
    s.split(|&b| space(b))
        .filter(|w| !w.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn help_line(e: &Known, out: &mut Vec<u8>) {
    if e.info {
        out.extend_from_slice(b"info ");
    }
    out.extend_from_slice(e.name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(e.params.as_bytes());
    out.extend_from_slice(b" -- ");
    out.extend_from_slice(e.help.as_bytes());
    out.push(b'\n');
}

/// `help ARGS` (and bare `info`, which is `help info`).
fn help(args: &[Vec<u8>], preconfig: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let all = |info: bool, out: &mut Vec<u8>| {
        for e in table()
            .iter()
            .filter(|e| e.info == info && e.available(preconfig))
        {
            help_line(e, out);
        }
    };
    let unknown = |n: usize, out: &mut Vec<u8>| {
        out.extend_from_slice(b"unknown command: '");
        out.extend_from_slice(&args[..n].join(&b' '));
        out.extend_from_slice(b"'\n");
    };
    let Some(first) = args.first() else {
        all(false, &mut out);
        return out;
    };
    match lookup(first, false, preconfig) {
        Ok(e) if e.kind == Kind::Info => match args.get(1) {
            None => all(true, &mut out),
            Some(sub) => match lookup(sub, true, preconfig) {
                Ok(s) => help_line(s, &mut out),
                Err(_) => unknown(2, &mut out),
            },
        },
        Ok(e) => help_line(e, &mut out),
        Err(_) => unknown(1, &mut out),
    }
    out
}

/// The outcome of a finished line, given the history after it was added (`None`: lost).
pub fn outcome(line: &[u8], preconfig: bool, history: Option<&[Vec<u8>]>) -> Outcome {
    let skip = |mut p: usize| {
        while p < line.len() && space(line[p]) {
            p += 1;
        }
        p
    };
    let word_end = |mut p: usize| {
        while p < line.len() && !space(line[p]) && line[p] != b'/' {
            p += 1;
        }
        p
    };
    let start = skip(0);
    if start == line.len() {
        return text("blank", Vec::new());
    }
    let mut end = word_end(start);
    let refused = |end: usize| {
        let mut t = b"Command '".to_vec();
        t.extend_from_slice(&line[..end]);
        t.extend_from_slice(b"' not available until machine initialization has completed.\n");
        text("preconfig-refused", t)
    };
    let unknown = |end: usize| {
        let mut t = b"unknown command: '".to_vec();
        t.extend_from_slice(&line[..end]);
        t.extend_from_slice(b"'\n");
        text("unknown", t)
    };
    let mut e = match lookup(&line[start..end], false, preconfig) {
        Ok(e) => e,
        Err(true) => return refused(end),
        Err(false) => return unknown(end),
    };
    let mut args = skip(end);
    if e.kind == Kind::Info && args < line.len() {
        let sub_end = word_end(args);
        e = match lookup(&line[args..sub_end], true, preconfig) {
            Ok(s) => s,
            Err(true) => return refused(sub_end),
            Err(false) => return unknown(sub_end),
        };
        end = sub_end;
        args = skip(end);
    }
    let rest = &line[args..];
    let bad = |msg: &[u8]| {
        let mut t = msg.to_vec();
        t.extend_from_slice(b"\nTry \"help ");
        t.extend_from_slice(&line[..end]);
        t.extend_from_slice(b"\" for more information\n");
        text("bad-arguments", t)
    };
    let extraneous = || {
        let mut m = e.name.as_bytes().to_vec();
        m.extend_from_slice(b": extraneous characters at the end of line");
        bad(&m)
    };
    match e.kind {
        Kind::Help => text("help", help(&words(rest), preconfig)),
        Kind::Info => text("help", help(&[b"info".to_vec()], preconfig)),
        Kind::History if !rest.is_empty() => extraneous(),
        Kind::History => match history {
            Some(h) => {
                let mut t = Vec::new();
                for (n, l) in h.iter().enumerate() {
                    t.extend_from_slice(format!("{n}: '").as_bytes());
                    t.extend_from_slice(l);
                    t.extend_from_slice(b"'\n");
                }
                text("history", t)
            }
            None => Outcome {
                call: None,
                text: None,
                what: "history",
            },
        },
        Kind::FdName => {
            let w = words(rest);
            match w.as_slice() {
                [] => {
                    let mut m = e.name.as_bytes().to_vec();
                    m.extend_from_slice(b": string expected");
                    bad(&m)
                }
                [_] if e.name == "getfd" => text(
                    "fd-error",
                    b"Error: No file descriptor supplied via SCM_RIGHTS\n".to_vec(),
                ),
                [name] => {
                    let mut t = b"Error: File descriptor named '".to_vec();
                    t.extend_from_slice(name);
                    t.extend_from_slice(b"' not found\n");
                    text("fd-error", t)
                }
                _ => extraneous(),
            }
        }
        Kind::Plain if !rest.is_empty() => extraneous(),
        Kind::Plain => run(e.call(), None),
        Kind::Echo => match number(rest) {
            _ if rest.is_empty() => bad(b"unexpected end of expression"),
            None => {
                let mut m = b"invalid char '".to_vec();
                m.push(rest[0]);
                m.extend_from_slice(b"' in expression");
                bad(&m)
            }
            Some((None, _)) => bad(b"number too large"),
            Some((Some(v), _)) if v >> 32 != 0 => {
                bad(b"'tag' has failed: integer is for 32-bit values")
            }
            Some((Some(_), used)) if rest[used..].iter().any(|&b| !space(b)) => extraneous(),
            Some((Some(v), _)) => run(e.call(), Some(v as i64)),
        },
    }
}

/// C's `strtoull(s, &end, 0)` at the start of `s`: `None` without a digit, else the value
/// (`None` on overflow) and the bytes used.
fn number(s: &[u8]) -> Option<(Option<u64>, usize)> {
    let hex = s.len() > 2 && s[0] == b'0' && (s[1] | 0x20) == b'x' && s[2].is_ascii_hexdigit();
    let (radix, skip) = match s.first() {
        _ if hex => (16, 2),
        Some(b'0') => (8, 0),
        _ => (10, 0),
    };
    let len = s[skip..]
        .iter()
        .take_while(|&&b| char::from(b).is_digit(radix))
        .count();
    if len == 0 {
        return None;
    }
    let mut v: Option<u64> = Some(0);
    for &b in &s[skip..skip + len] {
        let d = u64::from(char::from(b).to_digit(radix).unwrap_or(0));
        v = v.and_then(|v| v.checked_mul(u64::from(radix))?.checked_add(d));
    }
    Some((v, skip + len))
}

fn run(call: String, tag: Option<i64>) -> Outcome {
    let answer = hmp_handler(&call, tag);
    Outcome {
        text: Some(answer.map(|r| printed(&r).into_bytes()).unwrap_or_default()),
        call: Some((call, tag)),
        what: "call",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(e: &mut Editor, keys: &[Key]) -> Vec<Shown> {
        keys.iter().filter_map(|&k| e.key(k, false)).collect()
    }

    fn chars(s: &str) -> Vec<Key> {
        s.bytes().map(Key::Char).collect()
    }

    #[test]
    fn editing_keys_shape_the_line() {
        let mut e = Editor::default();
        let mut keys = chars("stpo");
        keys.extend([Key::Backspace, Key::Backspace]);
        keys.extend(chars("op"));
        keys.extend([Key::Home, Key::Char(b' '), Key::End, Key::Ignored(0x0b)]);
        typed(&mut e, &keys);
        assert_eq!(e.line(), b" stop");
        typed(&mut e, &[Key::DeleteWord]);
        assert_eq!(e.line(), b"", "ctrl-w at a leading space takes it too");
    }

    #[test]
    fn a_full_history_keeps_the_shown_entry_when_its_newest_line_runs_again() {
        let mut e = Editor::default();
        for n in 0..70 {
            let mut k = chars(&format!("x{n}"));
            k.push(Key::Enter);
            typed(&mut e, &k);
        }
        assert_eq!(e.history().len(), MAX_HISTORY);
        typed(&mut e, &[Key::Up, Key::Enter, Key::Up]);
        assert_eq!(e.line(), b"x68");
    }

    #[test]
    fn outcomes_carry_qemus_texts() {
        let o = outcome(b"  foo", false, None);
        assert_eq!(o.text.unwrap(), b"unknown command: '  foo'\n");
        let o = outcome(b"cont 1", false, None);
        assert_eq!(
            o.text.unwrap(),
            b"cont|c: extraneous characters at the end of line\nTry \"help cont\" for more information\n"
        );
        let o = outcome(b"info  status", true, None);
        assert_eq!(o.call, Some(("hmp info status".to_owned(), None)));
        let o = outcome(b"stop", true, None);
        assert_eq!(
            o.text.unwrap(),
            b"Command 'stop' not available until machine initialization has completed.\n"
        );
        let o = outcome(b"help stop", false, None);
        assert_eq!(o.text.unwrap(), b"stop|s  -- stop emulation\n");
        let o = outcome(b"sim_echo", false, None);
        assert_eq!(
            o.text.unwrap(),
            b"unexpected end of expression\nTry \"help sim_echo\" for more information\n"
        );
    }

    #[test]
    fn tab_completes_one_name_or_lists_several() {
        let mut e = Editor::default();
        typed(&mut e, &chars("sy"));
        assert!(typed(&mut e, &[Key::Tab]).is_empty());
        assert_eq!(e.line(), b"system_powerdown ");
        let mut e = Editor::default();
        typed(&mut e, &chars("c"));
        let shown = typed(&mut e, &[Key::Tab]);
        let Some(Shown::Listing { text, .. }) = shown.first() else {
            panic!("{shown:?}")
        };
        assert_eq!(text.as_slice(), &b"c         closefd   cont      \r\n"[..]);
        assert_eq!(e.line(), b"c");
    }
}
