//! A front-to-back reader of fuzzer bytes that never fails.
//!
//! Target input formats are read with this rather than with `arbitrary`'s length-from-the-end
//! encoding so that a seed can be written by hand (or by `tools/seed_corpus.py`) as a header
//! followed by the bytes a client would send, and still decode the same way.

/// Reads bytes from the front; past the end every read yields zeros / empty slices.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// A cursor over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Cursor { rest: data }
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next byte, or 0 past the end.
    pub fn u8(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((b, rest)) => {
                self.rest = rest;
                *b
            }
            None => 0,
        }
    }

    /// A little-endian u16 from the next two bytes.
    pub fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | (u16::from(self.u8()) << 8)
    }

    /// Up to `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.rest.len());
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        head
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn reads_front_to_back_then_zeros() {
        let mut c = Cursor::new(&[1, 2, 3, 4]);
        assert_eq!(c.u8(), 1);
        assert_eq!(c.u16(), 0x0302);
        assert_eq!(c.bytes(5), &[4]);
        assert!(c.is_empty());
        assert_eq!(c.u8(), 0);
        assert_eq!(c.rest(), &[] as &[u8]);
    }
}
