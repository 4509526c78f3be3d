//! One monitor's state, as QEMU splits it: what belongs to the monitor (options, suspend
//! counter, named fds, the out-of-band call holding its input) and outlives its clients, and
//! what belongs to the session of the client connected now (negotiation, parser, unprocessed
//! input, the in-band queue, pending fds, pending output), reset by `reset_session`.
//!
//! Pure data with small helpers; the rules that move a monitor between states live in the
//! intake (`intake.rs`), the dispatcher (`dispatch.rs`) and the server (`mod.rs`).

use std::collections::VecDeque;

use super::types::{CallId, FdId, MonitorId, MonitorOptions};
use crate::json::{JsonStreamer, JsonString, Value};

/// Received bytes not yet handed to the lexer (kept while the monitor is suspended).
///
/// Bounded by `Config::input_buffer_limit` (checked by the server after each receive).
#[derive(Debug, Default)]
pub(crate) struct InputBuffer {
    chunks: VecDeque<Chunk>,
    held: usize,
}

#[derive(Debug)]
struct Chunk {
    bytes: Vec<u8>,
    pos: usize,
    /// Descriptors that came with this chunk; they become pending when its first byte is
    /// lexed (QEMU reads them with the first byte of the payload).
    fds: Vec<FdId>,
}

impl InputBuffer {
    pub(crate) fn push(&mut self, bytes: Vec<u8>, fds: Vec<FdId>) {
        self.held += bytes.len();
        self.chunks.push_back(Chunk { bytes, pos: 0, fds });
    }

    /// Bytes held, not yet lexed.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Descriptors of the front chunk, if they have not been delivered yet.
    pub(crate) fn take_front_fds(&mut self) -> Vec<FdId> {
        match self.chunks.front_mut() {
            Some(c) if c.pos == 0 => std::mem::take(&mut c.fds),
            _ => Vec::new(),
        }
    }

    /// The unlexed bytes of the front chunk.
    pub(crate) fn front(&self) -> &[u8] {
        match self.chunks.front() {
            Some(c) => &c.bytes[c.pos..],
            None => &[],
        }
    }

    /// Whether the front chunk has been partly lexed.
    pub(crate) fn front_started(&self) -> bool {
        self.chunks.front().is_some_and(|c| c.pos > 0)
    }

    /// Mark `n` bytes of the front chunk as lexed; drop the chunk when it is used up.
    pub(crate) fn consume(&mut self, n: usize) {
        if let Some(c) = self.chunks.front_mut() {
            let n = n.min(c.bytes.len() - c.pos);
            c.pos += n;
            self.held -= n;
            if c.pos == c.bytes.len() {
                self.chunks.pop_front();
            }
        }
    }

    /// Descriptors that came with held chunks and are not delivered yet.
    pub(crate) fn fds(&self) -> impl Iterator<Item = FdId> + '_ {
        self.chunks.iter().flat_map(|c| c.fds.iter().copied())
    }

    /// Drop everything, returning the descriptors never delivered.
    pub(crate) fn clear(&mut self) -> Vec<FdId> {
        self.held = 0;
        self.chunks.drain(..).flat_map(|c| c.fds).collect()
    }

    pub(crate) fn capacity_bytes(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| c.bytes.capacity())
            .sum::<usize>()
            + self.chunks.capacity() * std::mem::size_of::<Chunk>()
    }
}

/// Pending output: the front `start` bytes have been written already.
#[derive(Debug, Default)]
pub(crate) struct OutBuf {
    pub(crate) buf: Vec<u8>,
    pub(crate) start: usize,
}

/// A drained buffer bigger than this gives its memory back (keeps idle monitors small).
const OUT_KEEP_CAPACITY: usize = 1024;

impl OutBuf {
    pub(crate) fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub(crate) fn written(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            if self.buf.capacity() > OUT_KEEP_CAPACITY {
                self.buf = Vec::new();
            }
        } else if self.start > 64 * 1024 && self.start > self.buf.len() / 2 {
            // Slide the unwritten tail down so a slow reader does not pin written bytes.
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.buf = Vec::new();
        self.start = 0;
    }
}

/// An entry of the in-band queue (QEMU's `QMPRequest`).
#[derive(Debug)]
pub(crate) enum Queued {
    /// A parsed value, checked when dispatched (7.2).
    Request(Value),
    /// A JSON error, answered in order when dispatched.
    JsonError(JsonString),
    /// A human monitor's command line, run when dispatched.
    Hmp(Vec<u8>),
    /// A request already checked on arrival (2.12), to be executed when dispatched.
    Checked {
        id: Option<Value>,
        name: JsonString,
        args: crate::json::Object,
    },
}

impl Queued {
    /// Heap bytes held by the entry (walks the value).
    fn heap_bytes(&self) -> usize {
        match self {
            Queued::Request(v) => value_heap_bytes(v),
            Queued::JsonError(d) => d.heap_bytes(),
            Queued::Hmp(line) => line.capacity(),
            Queued::Checked { id, name, args } => {
                id.as_ref().map_or(0, value_heap_bytes)
                    + name.heap_bytes()
                    + object_heap_bytes(args)
            }
        }
    }
}

fn object_heap_bytes(o: &crate::json::Object) -> usize {
    std::mem::size_of_val(o.entries())
        + o.iter()
            .map(|(k, v)| k.heap_bytes() + value_heap_bytes(v))
            .sum::<usize>()
}

/// Approximate heap bytes behind a value (lengths for containers, capacities for strings).
pub(crate) fn value_heap_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.heap_bytes(),
        Value::Array(a) => {
            a.capacity() * std::mem::size_of::<Value>()
                + a.iter().map(value_heap_bytes).sum::<usize>()
        }
        Value::Object(o) => object_heap_bytes(o),
        _ => 0,
    }
}

/// One QMP monitor (QEMU's `MonitorQMP`): created by the first `Open` of its id, kept across
/// its clients' sessions until `Destroy` (or shutdown).
#[derive(Debug)]
pub(crate) struct Monitor {
    // ---- the monitor's own state: survives `Close` ----
    pub(crate) id: MonitorId,
    /// The chardev's properties (OOB capability, pretty): the same for every session.
    pub(crate) options: MonitorOptions,
    /// QEMU's suspend counter: queue suspensions plus external ones. A session's close undoes
    /// the queue's share as QEMU's `monitor_qmp_cleanup_queue_and_resume` does; an in-band
    /// call still running keeps its share until it completes.
    pub(crate) suspend_count: u32,
    /// The external share of `suspend_count` (for misuse checks).
    pub(crate) ext_suspends: u32,
    /// `getfd` names, newest first (QEMU inserts at the head). They belong to the monitor, not
    /// the connection (spec §10.2).
    pub(crate) named_fds: Vec<(JsonString, FdId)>,
    /// The out-of-band call issued from this monitor's input and not completed yet. QEMU runs
    /// an OOB handler in the I/O thread from the parser callback, so nothing more of this
    /// monitor is lexed or handled until it returns: input stops here like at a suspension
    /// point (the rest stays buffered) and goes on when the call completes. At most one. It
    /// survives `Close` (QEMU cannot see the close before the handler returns), so the next
    /// session's input waits for it too.
    pub(crate) oob_call: Option<CallId>,
    /// The generation of the `Open` that created this monitor: a call issued before it (by an
    /// earlier monitor of the same id, destroyed since) does not belong to this monitor.
    pub(crate) created: u64,
    /// The generation of the current (or last) session: the `Open` that started it. A call of
    /// an earlier session must not answer the later one.
    pub(crate) generation: u64,
    /// A client is connected (between `Open` and `Close`).
    pub(crate) open: bool,
    /// The line editor of a human monitor (`None` for QMP monitors): its history survives
    /// sessions, the line is restarted at each `OpenHmp`.
    pub(crate) hmp: Option<Box<crate::hmp::ReadLine>>,

    // ---- the session: reset by `reset_session` ----
    /// Command mode (negotiation done).
    pub(crate) negotiated: bool,
    pub(crate) oob_enabled: bool,
    pub(crate) streamer: JsonStreamer,
    pub(crate) input: InputBuffer,
    /// Descriptors received and not claimed yet (QEMU's `read_msgfds`).
    pub(crate) pending_fds: Vec<FdId>,
    /// The in-band queue; at most `QMP_REQ_QUEUE_LEN_MAX` entries.
    pub(crate) queue: VecDeque<Queued>,
    pub(crate) out: OutBuf,
    /// A `Transmit` for this monitor is waiting in the output queue.
    pub(crate) transmit_queued: bool,
    /// The core gave up on this client (disconnect reported): input is ignored, output
    /// discarded, until the driver closes it.
    pub(crate) dead: bool,
    /// Replies held back by the planted bug `OobReplyHeldBehindInBand`.
    #[cfg(feature = "planted-bugs")]
    pub(crate) held_replies: Vec<Vec<u8>>,
}

impl Monitor {
    /// A monitor without a session yet.
    pub(crate) fn new(
        id: MonitorId,
        options: MonitorOptions,
        streamer: JsonStreamer,
        created: u64,
    ) -> Monitor {
        Monitor {
            id,
            options,
            suspend_count: 0,
            ext_suspends: 0,
            named_fds: Vec::new(),
            oob_call: None,
            created,
            generation: created,
            open: false,
            negotiated: false,
            oob_enabled: false,
            streamer,
            input: InputBuffer::default(),
            pending_fds: Vec::new(),
            queue: VecDeque::new(),
            out: OutBuf::default(),
            transmit_queued: false,
            dead: false,
            #[cfg(feature = "planted-bugs")]
            held_replies: Vec::new(),
            hmp: None,
        }
    }

    /// QEMU's `monitor_qmp_caps_reset` plus the parser and queue reset of a session's end:
    /// negotiation mode, capabilities off, a fresh parser, no input, queue, pending fds or
    /// output. Returns the descriptors it dropped (pending or not delivered yet), to be
    /// closed. The queue must have been accounted for by the caller.
    pub(crate) fn reset_session(&mut self, streamer: JsonStreamer) -> Vec<FdId> {
        self.negotiated = false;
        self.oob_enabled = false;
        self.streamer = streamer;
        self.queue = VecDeque::new();
        self.out.clear();
        self.dead = false;
        #[cfg(feature = "planted-bugs")]
        {
            self.held_replies = Vec::new();
        }
        let mut fds = std::mem::take(&mut self.pending_fds);
        fds.extend(self.input.clear());
        fds
    }

    /// A client is connected and the core has not given up on it: input is handled and
    /// output kept.
    pub(crate) fn live(&self) -> bool {
        self.open && !self.dead
    }

    #[cfg(feature = "planted-bugs")]
    fn held_bytes(&self) -> usize {
        self.held_replies.iter().map(Vec::capacity).sum()
    }

    /// Nothing is held without the planted bug.
    #[cfg(not(feature = "planted-bugs"))]
    fn held_bytes(&self) -> usize {
        0
    }

    /// Bytes of core memory this monitor holds (see `Server::memory_estimate`).
    pub(crate) fn memory_estimate(&self) -> usize {
        self.held_bytes()
            + std::mem::size_of::<Monitor>()
            + self.streamer.buffered_bytes()
            + self.input.capacity_bytes()
            + self.out.buf.capacity()
            + self.queue.capacity() * std::mem::size_of::<Queued>()
            + self.queue.iter().map(Queued::heap_bytes).sum::<usize>()
            + self.pending_fds.capacity() * std::mem::size_of::<FdId>()
            + self
                .named_fds
                .iter()
                .map(|(n, _)| n.heap_bytes() + std::mem::size_of::<(JsonString, FdId)>())
                .sum::<usize>()
            + self.hmp.as_ref().map_or(0, |r| {
                std::mem::size_of::<crate::hmp::ReadLine>() + r.memory_estimate()
            })
    }
}

/// The open monitors, sorted by id: binary search over a dense id list (a few cache lines
/// even for hundreds of monitors) and id-ordered iteration without a tree's pointer chasing.
#[derive(Debug, Default)]
pub(crate) struct MonitorTable {
    ids: Vec<MonitorId>,
    v: Vec<Monitor>,
    /// Position of the last monitor looked up mutably: the driver touches one monitor several
    /// times in a row (poll, pending output, written), so most lookups hit it.
    hint: usize,
}

impl MonitorTable {
    #[inline]
    fn find(&self, id: &MonitorId) -> Result<usize, usize> {
        if self.ids.get(self.hint) == Some(id) {
            return Ok(self.hint);
        }
        // Fan-out touches monitors in id order: the next one is the likely next lookup.
        if self.ids.get(self.hint + 1) == Some(id) {
            return Ok(self.hint + 1);
        }
        self.ids.binary_search(id)
    }

    #[inline]
    pub(crate) fn get(&self, id: &MonitorId) -> Option<&Monitor> {
        self.find(id).ok().map(|i| &self.v[i])
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, id: &MonitorId) -> Option<&mut Monitor> {
        let i = self.find(id).ok()?;
        self.hint = i;
        Some(&mut self.v[i])
    }

    pub(crate) fn contains_key(&self, id: &MonitorId) -> bool {
        self.find(id).is_ok()
    }

    /// Insert a monitor whose id is not in the table.
    pub(crate) fn insert(&mut self, m: Monitor) {
        if let Err(i) = self.find(&m.id) {
            self.ids.insert(i, m.id);
            self.v.insert(i, m);
        }
    }

    pub(crate) fn remove(&mut self, id: &MonitorId) -> Option<Monitor> {
        let i = self.find(id).ok()?;
        self.ids.remove(i);
        Some(self.v.remove(i))
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &MonitorId> + '_ {
        self.ids.iter()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Monitor> + '_ {
        self.v.iter()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&MonitorId, &Monitor)> + '_ {
        self.ids.iter().zip(self.v.iter())
    }

    pub(crate) fn len(&self) -> usize {
        self.v.len()
    }

    /// By position (ids ascending), for passes over every monitor.
    pub(crate) fn at_mut(&mut self, i: usize) -> &mut Monitor {
        &mut self.v[i]
    }
}
