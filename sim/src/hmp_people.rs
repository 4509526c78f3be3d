//! Simulated people at a human monitor (HMP): what they mean to type (commands the machine
//! and the core have, their mistakes, unknown commands, bad arguments, blank lines), and how
//! they type it: straight, or with typos fixed by backspace, the cursor wandering (ctrl-a/e,
//! arrows, `ESC [ 1~/4~`, `ESC O H/F`), words deleted and typed again (ctrl-w), keys 7.2
//! ignores (ctrl-k, ctrl-u), tab completion, history recall (up/down), and CR, LF or CRLF.
//!
//! A plan is a list of [`Key`]s worked out on a copy of the people's model ([`Editor`]), so
//! every key is one the model can predict (tab only where [`Editor::can_tab`]). How a key is
//! spelled in bytes is chosen separately ([`spell`]); the model does not see the spelling.
//!
//! Bounds: a plan has at most [`MAX_PLAN_KEYS`] keys.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::hmp_model::{Editor, Key, MAX_LINE};

/// Most keys in one plan (a line with its edits).
pub const MAX_PLAN_KEYS: usize = 4 * MAX_LINE;

/// What people mean to type (`#` is replaced by a tag).
const LINES: &[&str] = &[
    "stop",
    "s",
    "cont",
    "c",
    "system_powerdown",
    "info status",
    "info version",
    "info name",
    "info history",
    "info",
    "help",
    "help stop",
    "help info",
    "help info status",
    "? cont",
    "help foo",
    "foo",
    "info foo",
    "cont 1",
    "stop now",
    "closefd fd1",
    "closefd",
    "getfd fd2",
    "sim_echo",
    "sim_echo abc",
    "sim_echo 1 2",
    "",
    "  stop",
    "info  version",
    "help sim_echo",
    "history",
    "sim_echo #",
    "sim_echo #",
    "sim_echo #",
    "info status",
    "stop",
    "cont",
];

/// How one world's people type (drawn per world).
#[derive(Clone, Debug)]
pub struct Habits {
    /// Chance per typed byte of a typo fixed with backspace.
    pub p_typo: f64,
    /// Chance per line of moving the cursor around (and back to the end).
    pub p_wander: f64,
    /// Chance per line of deleting the last word with ctrl-w and typing it again.
    pub p_word: f64,
    /// Chance per line of completing its first word with tab.
    pub p_tab: f64,
    /// Chance per line of recalling a history line instead.
    pub p_recall: f64,
    /// Chance an Enter is CRLF (a line and an empty one).
    pub p_crlf: f64,
    /// Chance per act of typing only part of the plan (the rest later).
    pub p_pieces: f64,
    /// Chance per act of typing ahead while earlier lines still run.
    pub p_ahead: f64,
    /// Chance per idle act of another subsystem suspending the monitor for a while.
    pub p_suspended: f64,
}

impl Habits {
    /// Draws a world's habits.
    pub fn draw(rng: &mut ChaCha8Rng) -> Habits {
        let mut p = |on: f64, hi: f64| {
            if rng.random_bool(on) {
                rng.random_range(0.0..hi)
            } else {
                0.0
            }
        };
        Habits {
            p_typo: p(0.5, 0.1),
            p_wander: p(0.5, 0.4),
            p_word: p(0.5, 0.3),
            p_tab: p(0.5, 0.4),
            p_recall: p(0.5, 0.3),
            p_crlf: p(0.4, 0.5),
            p_pieces: p(0.6, 0.7),
            p_ahead: p(0.6, 0.8),
            p_suspended: p(0.5, 0.3),
        }
    }
}

fn typ(e: &mut Editor, keys: &mut Vec<Key>, k: Key, preconfig: bool) {
    e.key(k, preconfig);
    keys.push(k);
}

/// Types `target`'s bytes after what the line holds, if the line is a prefix of it and the
/// cursor at its end.
fn finish(
    rng: &mut ChaCha8Rng,
    h: &Habits,
    e: &mut Editor,
    keys: &mut Vec<Key>,
    target: &[u8],
    preconfig: bool,
) {
    if e.cursor() != e.line().len() || !target.starts_with(e.line()) {
        return;
    }
    let rest = target[e.line().len()..].to_vec();
    for b in rest {
        if rng.random_bool(h.p_typo) {
            typ(e, keys, Key::Char(rng.random_range(b'a'..=b'z')), preconfig);
            typ(e, keys, Key::Backspace, preconfig);
        }
        typ(e, keys, Key::Char(b), preconfig);
    }
}

/// Plans the keys of one line from the model's state (which it does not change).
pub fn plan_line(rng: &mut ChaCha8Rng, h: &Habits, model: &Editor, preconfig: bool) -> Vec<Key> {
    let mut e = model.clone();
    let mut keys = Vec::new();
    if e.can_recall() && !e.history().is_empty() && rng.random_bool(h.p_recall) {
        for _ in 0..rng.random_range(1..=3) {
            typ(&mut e, &mut keys, Key::Up, preconfig);
        }
        if rng.random_bool(0.3) {
            typ(&mut e, &mut keys, Key::Down, preconfig);
        }
        if rng.random_bool(0.3) {
            typ(&mut e, &mut keys, Key::DeleteWord, preconfig);
        }
    } else {
        let pick = LINES[rng.random_range(0..LINES.len())];
        let target = pick
            .replace('#', &rng.random_range(0..1000u32).to_string())
            .into_bytes();
        if rng.random_bool(h.p_tab) {
            // A prefix of the first word, then tab, then the rest if it still fits.
            let first = target
                .iter()
                .position(|&b| b == b' ')
                .unwrap_or(target.len());
            let cut = rng.random_range(0..=first);
            finish(rng, h, &mut e, &mut keys, &target[..cut], preconfig);
            if e.can_tab() {
                typ(&mut e, &mut keys, Key::Tab, preconfig);
            }
        }
        finish(rng, h, &mut e, &mut keys, &target, preconfig);
        if rng.random_bool(h.p_word) && !e.line().is_empty() {
            let before = e.line().to_vec();
            typ(&mut e, &mut keys, Key::DeleteWord, preconfig);
            finish(rng, h, &mut e, &mut keys, &before, preconfig);
        }
    }
    if rng.random_bool(h.p_wander) {
        let moves = [
            Key::Home,
            Key::End,
            Key::Left,
            Key::Left,
            Key::Right,
            Key::Delete,
            Key::Ignored(0x0b),
            Key::Ignored(0x15),
        ];
        for _ in 0..rng.random_range(1..=6) {
            let k = moves[rng.random_range(0..moves.len())];
            typ(&mut e, &mut keys, k, preconfig);
        }
        typ(&mut e, &mut keys, Key::End, preconfig);
    }
    typ(&mut e, &mut keys, Key::Enter, preconfig);
    if rng.random_bool(h.p_crlf) {
        typ(&mut e, &mut keys, Key::Enter, preconfig);
    }
    keys.truncate(MAX_PLAN_KEYS);
    keys
}

/// The bytes of `keys`, each in one of its spellings (two Enters in a row may be CRLF).
pub fn spell(rng: &mut ChaCha8Rng, keys: &[Key], out: &mut Vec<u8>) {
    let mut prev_cr = false;
    for &k in keys {
        let pick = |rng: &mut ChaCha8Rng, options: &[&[u8]]| -> Vec<u8> {
            options[rng.random_range(0..options.len())].to_vec()
        };
        let bytes = match k {
            Key::Char(b) => vec![b],
            Key::Backspace => pick(rng, &[b"\x08", b"\x7f"]),
            Key::Delete => pick(rng, &[b"\x04", b"\x1b[3~"]),
            Key::Home => pick(rng, &[b"\x01", b"\x1b[1~", b"\x1bOH"]),
            Key::End => pick(rng, &[b"\x05", b"\x1b[4~", b"\x1bOF"]),
            Key::Left => b"\x1b[D".to_vec(),
            Key::Right => b"\x1b[C".to_vec(),
            Key::Up => pick(rng, &[b"\x1b[A", b"\x1b[F"]),
            Key::Down => pick(rng, &[b"\x1b[B", b"\x1b[E"]),
            Key::DeleteWord => b"\x17".to_vec(),
            Key::Ignored(b) => vec![b],
            Key::Tab => b"\t".to_vec(),
            Key::Enter if prev_cr => b"\n".to_vec(),
            Key::Enter => pick(rng, &[b"\r", b"\n"]),
        };
        prev_cr = bytes == b"\r";
        out.extend_from_slice(&bytes);
    }
}
