//! Route lookups for a whole receive batch, done side by side before the
//! batch is handled.
//!
//! A worker routes every new call by the longest prefix of its dialed
//! number. In a table of a million prefixes each lookup waits for a memory
//! access (the table is larger than the caches); looked up one after
//! another, those waits queue. Before handling a batch the proxy reads the
//! dialed number from each request's start line and looks all of them up at
//! once with [`WorkerRoutes::lookup_batch`], whose walks overlap their
//! memory accesses. Handling then takes the answer when the number the full
//! parse finds is the one read here; otherwise (a REGISTER, which names its
//! user in To; a start line this quick read gets wrong) it looks up again.
//! The table cannot change within a batch (workers swap tables between
//! batches), so a prepared answer is always the answer a lookup would give.

use route::{RouteMatch, WorkerRoutes};
use sip::{peek_dialed_number, DialedNumber};

/// Walks looked up together (the trie's batch width).
const CHUNK: usize = 64;

/// The dialed numbers of a batch's requests and their routes.
pub(crate) struct PreparedRoutes {
    /// One per datagram of the batch; empty when none was read.
    numbers: Vec<DialedNumber>,
    found: Vec<Option<RouteMatch>>,
    /// The datagram being handled (one past it: 0 before the first).
    next: usize,
}

impl PreparedRoutes {
    pub(crate) fn new() -> PreparedRoutes {
        PreparedRoutes {
            numbers: Vec::with_capacity(CHUNK),
            found: Vec::with_capacity(CHUNK),
            next: 0,
        }
    }

    /// Reads the dialed number of each request in `payloads` and looks them
    /// all up in `routes`. Keeps its buffers between batches: allocates only
    /// when a batch is larger than every one before it.
    pub(crate) fn prepare(
        &mut self,
        routes: &WorkerRoutes,
        payloads: &mut dyn Iterator<Item = &[u8]>,
    ) {
        self.numbers.clear();
        self.next = 0;
        for payload in payloads {
            let mut number = DialedNumber::new();
            // A request without a number (or no request) leaves it empty.
            peek_dialed_number(payload, &mut number);
            self.numbers.push(number);
        }
        self.found.clear();
        self.found.resize(self.numbers.len(), None);
        let mut refs: [&[u8]; CHUNK] = [&[]; CHUNK];
        let mut at: [usize; CHUNK] = [0; CHUNK];
        let mut out = [None; CHUNK];
        let mut n = 0;
        let mut flush = |refs: &[&[u8]], at: &[usize], found: &mut [Option<RouteMatch>]| {
            routes.lookup_batch(refs, &mut out[..refs.len()]);
            for (&i, m) in at.iter().zip(&out) {
                found[i] = *m;
            }
        };
        for (i, number) in self.numbers.iter().enumerate() {
            if number.is_empty() {
                continue;
            }
            refs[n] = number.as_bytes();
            at[n] = i;
            n += 1;
            if n == CHUNK {
                flush(&refs, &at, &mut self.found);
                n = 0;
            }
        }
        if n > 0 {
            flush(&refs[..n], &at[..n], &mut self.found);
        }
    }

    /// Moves on to the next datagram of the batch; call once per datagram
    /// handled, in order.
    #[inline]
    pub(crate) fn advance(&mut self) {
        self.next += 1;
    }

    /// The route prepared for the datagram being handled, if its dialed
    /// number was read and is `number`.
    #[inline]
    pub(crate) fn route_for(&self, number: &DialedNumber) -> Option<Option<RouteMatch>> {
        let i = self.next.checked_sub(1)?;
        let prepared = self.numbers.get(i)?;
        (!prepared.is_empty() && prepared.as_bytes() == number.as_bytes()).then(|| self.found[i])
    }

    /// Forgets the batch (the datagrams handled next were not prepared).
    pub(crate) fn clear(&mut self) {
        self.numbers.clear();
        self.next = 0;
    }
}
