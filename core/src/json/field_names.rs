//! Struct field names the serialiser has already written, remembered per thread: the text
//! `"name": ` and the name's bucket, found again by the name's address.
//!
//! Why: a typed result's field names are the same `&'static str`s on every call (serde's
//! `SerializeStruct` hands them over as such), and quoting, checking for escapes and hashing
//! them is a large share of serialising a small struct such as qmpd's `StatusInfo`. A hit is a
//! lookup and one fixed-size copy.
//!
//! Why it cannot change a byte of output: the bytes of a `&'static str` never change (no safe
//! code can free or write them; unloading a shared library whose strings are still referenced
//! is already undefined behaviour), so its address and length name one text for the rest of
//! the program, and a slot only ever holds what computing afresh gave for that text. The memo is a
//! cache of a pure function: the core's output stays a function of its inputs. It is per thread
//! so that it needs no lock; each thread that serialises fills its own.
//!
//! Bounds: [`SLOTS`] slots of [`TEXT_MAX`] bytes, direct-mapped (a name evicts whichever name
//! shared its slot), 4.5 KiB per thread; a name whose text is longer than [`TEXT_MAX`] is written
//! afresh every time.

use std::cell::RefCell;

/// Slots per thread (a power of two). qmpd's handlers name a few dozen fields in all.
const SLOTS: usize = 64;

/// The longest `"name": ` text kept: names of up to 44 plain characters.
const TEXT_MAX: usize = 48;

#[derive(Clone, Copy)]
struct Slot {
    /// The name's address; 0 for an empty slot (no `&'static str` of non-zero length starts
    /// at address 0).
    addr: usize,
    len: usize,
    bucket: u16,
    text_len: u8,
    text: [u8; TEXT_MAX],
}

// The module docs' 4.5 KiB per thread: 64 slots of 72 bytes.
const _: () = assert!(std::mem::size_of::<Slot>() * SLOTS == 4608);

const EMPTY: Slot = Slot {
    addr: 0,
    len: 0,
    bucket: 0,
    text_len: 0,
    text: [0; TEXT_MAX],
};

thread_local! {
    static MEMO: RefCell<[Slot; SLOTS]> = const { RefCell::new([EMPTY; SLOTS]) };
}

/// Fibonacci hashing of the address: the field names of one struct usually lie next to each
/// other in read-only data, a few bytes apart, so the low bits alone would collide.
#[inline(always)]
fn slot_of(addr: usize) -> usize {
    const BITS: u32 = SLOTS.trailing_zeros();
    ((addr as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - BITS)) as usize
}

/// Append `"name": ` to `out` and return `name`'s bucket: from the memo when `name` was
/// written before on this thread, else with `write` (which appends the text and returns the
/// bucket), remembering the result.
#[inline]
pub(super) fn write_field_name(
    name: &'static str,
    out: &mut Vec<u8>,
    write: impl FnOnce(&[u8], &mut Vec<u8>) -> usize,
) -> usize {
    let addr = name.as_ptr() as usize;
    let len = name.len();
    if len == 0 {
        return write(name.as_bytes(), out);
    }
    let i = slot_of(addr);
    MEMO.with(|memo| {
        let mut memo = memo.borrow_mut();
        let slot = &mut memo[i];
        if slot.addr == addr && slot.len == len {
            // A fixed-size copy, then the excess cut off: cheaper than a copy of `text_len`.
            let start = out.len();
            out.extend_from_slice(&slot.text);
            out.truncate(start + usize::from(slot.text_len));
            return usize::from(slot.bucket);
        }
        let start = out.len();
        let bucket = write(name.as_bytes(), out);
        let text = &out[start..];
        if text.len() <= TEXT_MAX {
            slot.addr = addr;
            slot.len = len;
            slot.bucket = bucket as u16;
            slot.text_len = text.len() as u8;
            slot.text[..text.len()].copy_from_slice(text);
        }
        bucket
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(name: &[u8], out: &mut Vec<u8>) -> usize {
        out.extend_from_slice(b"\"");
        out.extend_from_slice(name);
        out.extend_from_slice(b"\": ");
        name.len()
    }

    #[test]
    fn a_name_is_written_afresh_once_then_from_the_memo() {
        let mut calls = 0;
        let mut out = Vec::new();
        for _ in 0..3 {
            let b = write_field_name("singlestep", &mut out, |n, o| {
                calls += 1;
                fresh(n, o)
            });
            assert_eq!(b, 10);
        }
        assert_eq!(calls, 1);
        assert_eq!(out, b"\"singlestep\": \"singlestep\": \"singlestep\": ");
    }

    #[test]
    fn a_prefix_at_the_same_address_is_another_name() {
        // Literals may share bytes (one a prefix of another): the length tells them apart.
        let whole: &'static str = "singlestepping";
        let prefix: &'static str = &whole[..6];
        let mut out = Vec::new();
        for name in [whole, prefix, whole, prefix] {
            write_field_name(name, &mut out, fresh);
        }
        assert_eq!(
            out,
            b"\"singlestepping\": \"single\": \"singlestepping\": \"single\": "
        );
    }

    #[test]
    fn names_at_other_addresses_or_too_long_are_written_afresh() {
        // Two names with the same text at different addresses: each is its own entry.
        let a: &'static str = Box::leak(String::from("status").into_boxed_str());
        let b: &'static str = Box::leak(String::from("status").into_boxed_str());
        let long: &'static str = Box::leak("x".repeat(TEXT_MAX).into_boxed_str());
        let mut calls = 0;
        let mut out = Vec::new();
        for name in [a, b, a, b, long, long, ""] {
            write_field_name(name, &mut out, |n, o| {
                calls += 1;
                fresh(n, o)
            });
        }
        // a, b once each (unless they share a slot, then each eviction costs a write); the long
        // name and the empty name every time.
        assert!((5..=7).contains(&calls), "{calls} writes");
        let mut expected = Vec::new();
        for name in [a, b, a, b, long, long, ""] {
            fresh(name.as_bytes(), &mut expected);
        }
        assert_eq!(out, expected);
    }
}
