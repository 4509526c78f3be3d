//! QEMU's line editor (`util/readline.c` of 7.2) as a deterministic state machine: every byte
//! typed on an interactive human monitor goes through [`ReadLine::handle_byte`], which edits
//! the line, writes QEMU's exact echo and redraw sequences, and hands back a finished line.
//!
//! Hand-written because the echo bytes are part of the protocol a person's terminal (and a
//! differential test) sees: QEMU redraws the whole line after every edit (`ESC [ D` back to
//! the start, the line, `ESC [ K`), and no terminal library reproduces that byte for byte.
//!
//! What 7.2 does, and so what this does: ctrl-a/ctrl-e (start/end), ctrl-d (delete under the
//! cursor), ctrl-w (delete the word before the cursor), backspace (8 and 127), tab (completion),
//! CR or LF (run the line; CRLF is a line and then an empty one), `ESC [` cursor keys (A/F up,
//! B/E down, C right, D left, `1~` home, `3~` delete, `4~` end), `ESC O` H/F (home/end), the
//! single-byte CSI 155. Other control bytes (ctrl-k, ctrl-u, ...) are ignored, as in 7.2. Bytes
//! 32..=255 other than 127 and 155 are inserted as they are.
//!
//! Bounds: a line holds at most [`CMD_BUF_SIZE`] bytes (further typing is dropped), the
//! history [`MAX_HISTORY`] lines, a completion list [`MAX_COMPLETIONS`] entries. Differences
//! from QEMU: a byte typed in the middle of a full line is dropped (QEMU writes one byte past
//! its buffer); `ESC [` parameters wrap instead of overflowing.

/// QEMU's `READLINE_CMD_BUF_SIZE`: the longest line.
pub const CMD_BUF_SIZE: usize = 4095;
/// QEMU's `READLINE_MAX_CMDS`: lines kept in the history.
pub const MAX_HISTORY: usize = 64;
/// QEMU's `READLINE_MAX_COMPLETIONS`: candidates one tab collects.
pub const MAX_COMPLETIONS: usize = 256;

/// The prompt of the command line.
pub const PROMPT: &[u8] = b"(qemu) ";

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Esc {
    Norm,
    Escape,
    Csi,
    Ss3,
}

/// What a completion finder found for the text before the cursor.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Completions {
    /// Candidates in the order they were found (at most [`MAX_COMPLETIONS`]).
    pub items: Vec<Vec<u8>>,
    /// How many bytes of each candidate the user has typed already.
    pub index: usize,
}

impl Completions {
    /// QEMU's `readline_add_completion`: candidates past [`MAX_COMPLETIONS`] are dropped.
    pub fn add(&mut self, s: &[u8]) {
        if self.items.len() < MAX_COMPLETIONS {
            self.items.push(s.to_vec());
        }
    }
}

/// One terminal's line editor: the line, the cursor, what the terminal shows, the history.
#[derive(Debug, Clone)]
pub struct ReadLine {
    buf: Vec<u8>,
    index: usize,
    /// The line as last drawn, and the cursor position on screen.
    last: Vec<u8>,
    last_index: usize,
    esc: Esc,
    esc_param: i32,
    /// Oldest first; QEMU's array without its trailing NULLs.
    history: Vec<Vec<u8>>,
    /// The history line being shown (`hist_entry`), `None` for the line being typed.
    hist_entry: Option<usize>,
}

impl Default for ReadLine {
    fn default() -> Self {
        ReadLine::new()
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

impl ReadLine {
    /// An empty line editor with no history.
    pub fn new() -> ReadLine {
        ReadLine {
            buf: Vec::new(),
            index: 0,
            last: Vec::new(),
            last_index: 0,
            esc: Esc::Norm,
            esc_param: 0,
            history: Vec::new(),
            hist_entry: None,
        }
    }

    /// The history, oldest first (`info history`).
    pub fn history(&self) -> &[Vec<u8>] {
        &self.history
    }

    /// The line being edited.
    pub fn line(&self) -> &[u8] {
        &self.buf
    }

    /// Bytes of memory held (line, screen copy, history).
    pub fn memory_estimate(&self) -> usize {
        self.buf.capacity()
            + self.last.capacity()
            + self.history.iter().map(Vec::capacity).sum::<usize>()
            + self.history.capacity() * std::mem::size_of::<Vec<u8>>()
    }

    /// `readline_show_prompt`: print the prompt; the screen now shows an empty line.
    pub fn show_prompt(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(PROMPT);
        self.last.clear();
        self.last_index = 0;
        self.esc = Esc::Norm;
    }

    /// `readline_restart`: forget the line being typed (the history stays).
    pub fn restart(&mut self) {
        self.buf.clear();
        self.index = 0;
    }

    /// Handle one typed byte, writing the echo to `out` (lines end in `\r\n`). Returns the line
    /// when the byte was CR or LF. `complete` is asked for candidates on tab, with the text
    /// before the cursor.
    pub fn handle_byte(
        &mut self,
        ch: u8,
        out: &mut Vec<u8>,
        complete: &mut dyn FnMut(&[u8]) -> Completions,
    ) -> Option<Vec<u8>> {
        let mut line = None;
        match self.esc {
            Esc::Norm => match ch {
                1 => self.index = 0,
                4 => self.delete_char(),
                5 => self.index = self.buf.len(),
                9 => self.completion(out, complete),
                10 | 13 => {
                    self.hist_add();
                    out.extend_from_slice(b"\r\n");
                    line = Some(std::mem::take(&mut self.buf));
                    self.index = 0;
                    self.last.clear();
                    self.last_index = 0;
                }
                23 => self.backword(),
                27 => self.esc = Esc::Escape,
                127 | 8 if self.index > 0 => {
                    self.index -= 1;
                    self.delete_char();
                }
                // Backspace at the start of the line does nothing (127 is not inserted).
                127 | 8 => {}
                155 => self.esc = Esc::Csi,
                32.. => self.insert_char(ch),
                _ => {}
            },
            Esc::Escape => {
                self.esc = match ch {
                    b'[' => Esc::Csi,
                    b'O' => Esc::Ss3,
                    _ => Esc::Norm,
                };
                self.esc_param = 0;
            }
            Esc::Csi => {
                let mut done = true;
                match ch {
                    b'A' | b'F' => self.up(),
                    b'B' | b'E' => self.down(),
                    b'D' => self.index = self.index.saturating_sub(1),
                    b'C' => self.index = (self.index + 1).min(self.buf.len()),
                    b'0'..=b'9' => {
                        self.esc_param = self
                            .esc_param
                            .wrapping_mul(10)
                            .wrapping_add(i32::from(ch - b'0'));
                        done = false;
                    }
                    b'~' => match self.esc_param {
                        1 => self.index = 0,
                        3 => self.delete_char(),
                        4 => self.index = self.buf.len(),
                        _ => {}
                    },
                    _ => {}
                }
                if done {
                    self.esc = Esc::Norm;
                }
            }
            Esc::Ss3 => {
                match ch {
                    b'F' => self.index = self.buf.len(),
                    b'H' => self.index = 0,
                    _ => {}
                }
                self.esc = Esc::Norm;
            }
        }
        self.update(out);
        line
    }

    /// `readline_update`: redraw the line if it changed, then move the cursor.
    fn update(&mut self, out: &mut Vec<u8>) {
        if self.buf != self.last {
            for _ in 0..self.last_index {
                out.extend_from_slice(b"\x1b[D");
            }
            out.extend_from_slice(&self.buf);
            out.extend_from_slice(b"\x1b[K");
            self.last.clear();
            self.last.extend_from_slice(&self.buf);
            self.last_index = self.buf.len();
        }
        if self.index != self.last_index {
            let seq: &[u8] = if self.index > self.last_index {
                b"\x1b[C"
            } else {
                b"\x1b[D"
            };
            for _ in 0..self.index.abs_diff(self.last_index) {
                out.extend_from_slice(seq);
            }
            self.last_index = self.index;
        }
    }

    fn insert_char(&mut self, ch: u8) {
        if self.index < CMD_BUF_SIZE && self.buf.len() < CMD_BUF_SIZE {
            self.buf.insert(self.index, ch);
            self.index += 1;
        }
    }

    fn delete_char(&mut self) {
        if self.index < self.buf.len() {
            self.buf.remove(self.index);
        }
    }

    /// `readline_backword` (ctrl-w): spaces before the cursor, then the word before them.
    fn backword(&mut self) {
        if self.index == 0 || self.index > self.buf.len() {
            return;
        }
        let mut start = self.index - 1;
        while start > 0 && is_space(self.buf[start]) {
            start -= 1;
        }
        while start > 0 {
            if is_space(self.buf[start]) {
                start += 1;
                break;
            }
            start -= 1;
        }
        if start < self.index {
            self.buf.drain(start..self.index);
            self.index = start;
        }
    }

    fn set_line(&mut self, s: &[u8]) {
        self.buf.clear();
        self.buf.extend_from_slice(&s[..s.len().min(CMD_BUF_SIZE)]);
        self.index = self.buf.len();
    }

    fn up(&mut self) {
        let entry = match self.hist_entry {
            Some(0) => return,
            Some(e) => e,
            None => self.history.len(),
        };
        match entry.checked_sub(1) {
            Some(e) => {
                self.hist_entry = Some(e);
                let s = self.history[e].clone();
                self.set_line(&s);
            }
            // An empty history: QEMU's index goes to -1, which is "no entry".
            None => self.hist_entry = None,
        }
    }

    fn down(&mut self) {
        let Some(e) = self.hist_entry else {
            return;
        };
        if e < MAX_HISTORY - 1 && e + 1 < self.history.len() {
            self.hist_entry = Some(e + 1);
            let s = self.history[e + 1].clone();
            self.set_line(&s);
        } else {
            self.buf.clear();
            self.index = 0;
            self.hist_entry = None;
        }
    }

    /// `readline_hist_add`: a line already in the history moves to its end; the oldest line
    /// goes when the history is full. A line equal to the newest of a full history changes
    /// nothing, not even the history line on display (QEMU returns early there: after Up and
    /// Enter on the newest line of a full history, Up shows the second newest).
    fn hist_add(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let same = match self.hist_entry {
            Some(e) if self.history.get(e) == Some(&self.buf) => Some(e),
            _ => self.history.iter().position(|h| *h == self.buf),
        };
        match same {
            Some(i) if i == MAX_HISTORY - 1 => return,
            Some(i) => {
                let e = self.history.remove(i);
                self.history.push(e);
            }
            None => {
                if self.history.len() == MAX_HISTORY {
                    self.history.remove(0);
                }
                self.history.push(self.buf.clone());
            }
        }
        self.hist_entry = None;
    }

    /// `readline_completion`: one candidate is inserted (with a space unless it ends in `/`);
    /// several are listed, sorted, in columns of an 80-column screen after their common prefix
    /// is inserted, and the prompt is shown again.
    fn completion(&mut self, out: &mut Vec<u8>, complete: &mut dyn FnMut(&[u8]) -> Completions) {
        let c = complete(&self.buf[..self.index]);
        let mut items = c.items;
        match items.len() {
            0 => {}
            1 => {
                let s = &items[0];
                for &b in s.iter().skip(c.index) {
                    self.insert_char(b);
                }
                if s.last().is_some_and(|&b| b != b'/') {
                    self.insert_char(b' ');
                }
            }
            _ => {
                items.sort();
                out.extend_from_slice(b"\r\n");
                let first = &items[0];
                let mut max_prefix = first.len();
                let mut max_width = 0;
                for s in &items {
                    max_prefix = max_prefix.min(s.len());
                    max_prefix = first
                        .iter()
                        .zip(s.iter())
                        .take(max_prefix)
                        .take_while(|(a, b)| a == b)
                        .count();
                    max_width = max_width.max(s.len());
                }
                if max_prefix > 0 {
                    let prefix = first[..max_prefix].to_vec();
                    for &b in prefix.iter().skip(c.index) {
                        self.insert_char(b);
                    }
                }
                let width = (max_width + 2).clamp(10, 80);
                let cols = 80 / width;
                let mut j = 0;
                for (i, s) in items.iter().enumerate() {
                    out.extend_from_slice(s);
                    out.resize(out.len() + width.saturating_sub(s.len()), b' ');
                    j += 1;
                    if j == cols || i == items.len() - 1 {
                        out.extend_from_slice(b"\r\n");
                        j = 0;
                    }
                }
                self.show_prompt(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &[u8]) -> Completions {
        Completions::default()
    }

    fn typed(rl: &mut ReadLine, bytes: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut out = Vec::new();
        let mut lines = Vec::new();
        for &b in bytes {
            if let Some(l) = rl.handle_byte(b, &mut out, &mut none) {
                lines.push(l);
            }
        }
        (out, lines)
    }

    #[test]
    fn backspace_at_the_start_does_nothing_and_inserts_nothing() {
        let mut rl = ReadLine::new();
        let (out, _) = typed(&mut rl, b"\x7f\x08");
        assert!(out.is_empty());
        assert!(rl.line().is_empty());
        typed(&mut rl, b"ab\x01\x7f");
        assert_eq!(rl.line(), b"ab");
    }

    #[test]
    fn a_full_line_drops_further_bytes_even_in_the_middle() {
        let mut rl = ReadLine::new();
        typed(&mut rl, &[b'x'; CMD_BUF_SIZE + 10]);
        assert_eq!(rl.line().len(), CMD_BUF_SIZE);
        typed(&mut rl, b"\x01y");
        assert_eq!(rl.line().len(), CMD_BUF_SIZE);
        assert_eq!(rl.line()[0], b'x');
    }

    #[test]
    fn history_keeps_the_newest_lines_without_duplicates() {
        let mut rl = ReadLine::new();
        for i in 0..MAX_HISTORY + 5 {
            typed(&mut rl, format!("cmd{i}\n").as_bytes());
        }
        assert_eq!(rl.history().len(), MAX_HISTORY);
        assert_eq!(rl.history()[0], b"cmd5");
        // A line already in the history moves to its end instead of being added again.
        typed(&mut rl, b"cmd10\n");
        assert_eq!(rl.history().len(), MAX_HISTORY);
        assert_eq!(rl.history().last().unwrap(), b"cmd10");
        assert_eq!(rl.history().iter().filter(|h| *h == b"cmd10").count(), 1);
        // Empty lines are not kept.
        typed(&mut rl, b"\n\r");
        assert_eq!(rl.history().last().unwrap(), b"cmd10");
    }

    #[test]
    fn the_newest_line_of_a_full_history_run_again_keeps_the_entry_on_display() {
        // QEMU 7.2, live: 70 lines x0..x69, then Up, Enter, Up shows x68.
        let mut rl = ReadLine::new();
        for i in 0..70 {
            typed(&mut rl, format!("x{i}\n").as_bytes());
        }
        typed(&mut rl, b"\x1b[A\n\x1b[A");
        assert_eq!(rl.line(), b"x68");
        assert_eq!(rl.history().last().unwrap(), b"x69");
    }

    #[test]
    fn up_and_down_walk_the_history_and_come_back_empty() {
        let mut rl = ReadLine::new();
        typed(&mut rl, b"one\ntwo\n");
        typed(&mut rl, b"\x1b[A");
        assert_eq!(rl.line(), b"two");
        typed(&mut rl, b"\x1b[A\x1b[A\x1b[A");
        assert_eq!(rl.line(), b"one");
        typed(&mut rl, b"\x1b[B");
        assert_eq!(rl.line(), b"two");
        typed(&mut rl, b"\x1b[B");
        assert_eq!(rl.line(), b"");
        // An empty history: up does nothing.
        let mut fresh = ReadLine::new();
        let (out, _) = typed(&mut fresh, b"\x1b[A\x1b[B");
        assert!(out.is_empty());
    }

    #[test]
    fn ctrl_w_deletes_the_word_and_the_spaces_before_the_cursor() {
        let mut rl = ReadLine::new();
        typed(&mut rl, b"info  status  \x17");
        assert_eq!(rl.line(), b"info  ");
        typed(&mut rl, b"\x17");
        assert_eq!(rl.line(), b"");
        typed(&mut rl, b"a b\x1b[D\x17");
        assert_eq!(rl.line(), b"b");
    }

    #[test]
    fn completion_inserts_one_candidate_with_a_space_or_lists_many() {
        let mut rl = ReadLine::new();
        let mut one = |_: &[u8]| Completions {
            items: vec![b"status".to_vec()],
            index: 2,
        };
        let mut out = Vec::new();
        for &b in b"st\t" {
            rl.handle_byte(b, &mut out, &mut one);
        }
        assert_eq!(rl.line(), b"status ");
        let mut rl = ReadLine::new();
        let mut many = |_: &[u8]| Completions {
            items: vec![
                b"qom-set".to_vec(),
                b"qom-get".to_vec(),
                b"qom-list".to_vec(),
            ],
            index: 1,
        };
        let mut out = Vec::new();
        for &b in b"q\t" {
            rl.handle_byte(b, &mut out, &mut many);
        }
        assert_eq!(rl.line(), b"qom-");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "q\x1b[K\r\nqom-get   qom-list  qom-set   \r\n(qemu) qom-\x1b[K"
        );
    }
}
