//! The fleet's shared state in NATS JetStream key-value buckets, over the
//! polled [`NatsClient`]: two buckets per fleet, `dce_<fleet>_state`
//! (heartbeats, bans, verified sources: entries lapse with the bucket's
//! maximum age) and `dce_<fleet>_ops` (operators' actions: kept until
//! replaced).
//!
//! A put is a plain publish on `$KV.<bucket>.<key>`: the bucket's stream
//! stores it, and every edge subscribed to `$KV.<bucket>.>` receives it at
//! once. After every (re)connection the buckets are made if missing and
//! read whole again (an ephemeral consumer delivering the last value of
//! every key; each delivery's reply subject counts down what is left), so
//! what was missed during an outage is caught up.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::nats::{Msg, NatsClient, NatsEvent};

/// How long making the buckets and reading them may take.
const SYNC_TIMEOUT: Duration = Duration::from_secs(15);

/// Wait before trying a failed sync again.
const SYNC_RETRY: Duration = Duration::from_secs(3);

/// One key and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key inside its bucket (`ban.e1.198_18_0_9_32`).
    pub key: String,
    /// The value.
    pub payload: Vec<u8>,
}

/// What the bus did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// Connected; the buckets are being read.
    Connected {
        /// The server.
        server: String,
    },
    /// Lost.
    Down {
        /// How it was noticed.
        reason: String,
    },
    /// A connection attempt failed (while down).
    AttemptFailed {
        /// Why.
        reason: String,
    },
    /// Both buckets read whole after a (re)connection.
    Synced {
        /// Every key's latest value.
        entries: Vec<Entry>,
        /// How long making and reading the buckets took.
        took: Duration,
    },
    /// A value another edge just put.
    Live(Entry),
    /// Something that does not stop the bus but an operator should know.
    Warning(String),
}

#[derive(Debug)]
enum Phase {
    /// Not connected.
    Down,
    /// Making the buckets (requests outstanding) then reading them.
    Syncing {
        started: Instant,
        streams_pending: usize,
        readers: Vec<Reader>,
        entries: Vec<Entry>,
    },
    /// In sync; waiting to try a failed sync again when `retry_at` is set.
    Live { retry_at: Option<Instant> },
}

/// One bucket being read.
#[derive(Debug)]
struct Reader {
    bucket: String,
    /// The subscription to the consumer's deliveries (which keep their
    /// original subjects, `$KV.<bucket>.<key>`).
    sid: u64,
    consumer: Option<String>,
    done: bool,
}

/// What an outstanding request was for.
#[derive(Debug, Clone)]
enum Request {
    CreateStream,
    CreateConsumer { bucket: String },
    DeleteConsumer,
}

/// The buckets of one fleet over one NATS connection.
pub struct Bus {
    client: NatsClient,
    buckets: [String; 2],
    max_age: [Duration; 2],
    phase: Phase,
    requests: HashMap<String, Request>,
    next_request: u64,
    generation: u64,
    live_sids: [u64; 2],
    inbox_sid: u64,
}

impl Bus {
    /// The buckets of `fleet` over `client`; state entries lapse after
    /// `state_max_age`.
    pub fn new(mut client: NatsClient, fleet: &str, state_max_age: Duration) -> Bus {
        let buckets = [format!("dce_{fleet}_state"), format!("dce_{fleet}_ops")];
        let live_sids = [
            client.subscribe(&format!("$KV.{}.>", buckets[0])),
            client.subscribe(&format!("$KV.{}.>", buckets[1])),
        ];
        let inbox_sid = client.subscribe(&format!("{}.>", client.inbox_prefix()));
        Bus {
            client,
            buckets,
            max_age: [state_max_age, Duration::ZERO],
            phase: Phase::Down,
            requests: HashMap::new(),
            next_request: 0,
            generation: 0,
            live_sids,
            inbox_sid,
        }
    }

    /// The bucket names (state, operators).
    pub fn buckets(&self) -> &[String; 2] {
        &self.buckets
    }

    /// True when connected.
    pub fn connected(&self) -> bool {
        self.client.is_connected()
    }

    /// True when connected and the buckets exist: puts are stored.
    pub fn ready(&self) -> bool {
        self.client.is_connected() && matches!(self.phase, Phase::Live { .. })
    }

    /// The server, when connected.
    pub fn server(&self) -> Option<&str> {
        self.client.server()
    }

    /// Messages published and refused.
    pub fn publish_counts(&self) -> (u64, u64) {
        self.client.publish_counts()
    }

    /// Stores `payload` under `key` (operators' keys, `op.*`, in their own
    /// bucket). False when not connected.
    pub fn put(&mut self, key: &str, payload: &[u8]) -> bool {
        let bucket = if key.starts_with("op.") {
            &self.buckets[1]
        } else {
            &self.buckets[0]
        };
        let subject = format!("$KV.{bucket}.{key}");
        self.client.publish(&subject, None, payload)
    }

    fn request(&mut self, subject: &str, body: &str, what: Request) {
        self.next_request += 1;
        let reply = format!("{}.r{}", self.client.inbox_prefix(), self.next_request);
        if self.client.publish(subject, Some(&reply), body.as_bytes()) {
            self.requests.insert(reply, what);
        }
    }

    fn start_sync(&mut self, now: Instant) {
        self.generation += 1;
        self.requests.clear();
        for i in 0..2 {
            let bucket = self.buckets[i].clone();
            let age = self.max_age[i].as_nanos() as u64;
            // What nats.go makes for a bucket of history 1.
            let dup = if age == 0 {
                120_000_000_000
            } else {
                age.min(120_000_000_000)
            };
            let cfg = serde_json::json!({
                "name": format!("KV_{bucket}"),
                "subjects": [format!("$KV.{bucket}.>")],
                "retention": "limits",
                "max_consumers": -1,
                "max_msgs": -1,
                "max_bytes": -1,
                "max_age": age,
                "max_msgs_per_subject": 1,
                "max_msg_size": -1,
                "storage": "file",
                "discard": "new",
                "num_replicas": 1,
                "duplicate_window": dup,
                "allow_rollup_hdrs": true,
                "deny_delete": true,
                "allow_direct": true,
            });
            self.request(
                &format!("$JS.API.STREAM.CREATE.KV_{bucket}"),
                &cfg.to_string(),
                Request::CreateStream,
            );
        }
        self.phase = Phase::Syncing {
            started: now,
            streams_pending: 2,
            readers: Vec::new(),
            entries: Vec::new(),
        };
    }

    fn start_readers(&mut self) {
        let prefix = self.client.inbox_prefix().to_string();
        let generation = self.generation;
        let mut readers = Vec::new();
        for bucket in self.buckets.clone() {
            // Outside the inbox wildcard, so a delivery arrives once.
            let deliver = format!("{prefix}_sync.{generation}.{bucket}");
            let sid = self.client.subscribe(&deliver);
            let cfg = serde_json::json!({
                "stream_name": format!("KV_{bucket}"),
                "config": {
                    "deliver_subject": deliver,
                    "deliver_policy": "last_per_subject",
                    "filter_subject": format!("$KV.{bucket}.>"),
                    "ack_policy": "none",
                    "replay_policy": "instant",
                    "mem_storage": true,
                    "num_replicas": 1,
                    "inactive_threshold": 5_000_000_000u64,
                }
            });
            self.request(
                &format!("$JS.API.CONSUMER.CREATE.KV_{bucket}"),
                &cfg.to_string(),
                Request::CreateConsumer {
                    bucket: bucket.clone(),
                },
            );
            readers.push(Reader {
                bucket,
                sid,
                consumer: None,
                done: false,
            });
        }
        if let Phase::Syncing { readers: r, .. } = &mut self.phase {
            *r = readers;
        }
    }

    fn sync_failed(&mut self, now: Instant, why: String, out: &mut Vec<BusEvent>) {
        if let Phase::Syncing { readers, .. } = &self.phase {
            let sids: Vec<u64> = readers.iter().map(|r| r.sid).collect();
            for sid in sids {
                self.client.unsubscribe(sid);
            }
        }
        out.push(BusEvent::Warning(format!(
            "reading the shared state failed ({why}); live messages still flow, trying again in {} s",
            SYNC_RETRY.as_secs()
        )));
        self.phase = Phase::Live {
            retry_at: Some(now + SYNC_RETRY),
        };
    }

    /// Does what is due on the connection and the sync; events to `out`.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<BusEvent>) {
        let mut events = Vec::new();
        self.client.poll(now, &mut events);
        for ev in events {
            match ev {
                NatsEvent::Connected { server } => {
                    out.push(BusEvent::Connected { server });
                    self.start_sync(now);
                }
                NatsEvent::Disconnected { reason } => {
                    if let Phase::Syncing { readers, .. } = &self.phase {
                        let sids: Vec<u64> = readers.iter().map(|r| r.sid).collect();
                        for sid in sids {
                            self.client.unsubscribe(sid);
                        }
                    }
                    if matches!(self.phase, Phase::Down) {
                        out.push(BusEvent::AttemptFailed { reason });
                    } else {
                        out.push(BusEvent::Down { reason });
                    }
                    self.phase = Phase::Down;
                    self.requests.clear();
                }
                NatsEvent::ServerError(e) => out.push(BusEvent::Warning(format!("server: {e}"))),
                NatsEvent::Msg(m) => self.message(now, m, out),
            }
        }
        match &mut self.phase {
            Phase::Syncing { started, .. } if now.duration_since(*started) > SYNC_TIMEOUT => {
                self.sync_failed(now, "timed out".into(), out)
            }
            Phase::Live { retry_at: Some(at) } if now >= *at && self.client.is_connected() => {
                self.start_sync(now)
            }
            _ => {}
        }
    }

    fn message(&mut self, now: Instant, m: Msg, out: &mut Vec<BusEvent>) {
        if m.sid == self.inbox_sid {
            if let Some(what) = self.requests.remove(&m.subject) {
                self.answer(now, what, m, out);
            }
            return;
        }
        if let Phase::Syncing { readers, .. } = &self.phase {
            if readers.iter().any(|r| r.sid == m.sid) {
                return self.delivery(now, m, out);
            }
        }
        let Some(i) = self.live_sids.iter().position(|&s| s == m.sid) else {
            return;
        };
        let prefix = format!("$KV.{}.", self.buckets[i]);
        if let Some(key) = m.subject.strip_prefix(&prefix) {
            if is_deletion(&m) {
                return;
            }
            out.push(BusEvent::Live(Entry {
                key: key.to_string(),
                payload: m.payload,
            }));
        }
    }

    /// A delivery of a bucket being read.
    fn delivery(&mut self, now: Instant, m: Msg, out: &mut Vec<BusEvent>) {
        let Phase::Syncing {
            readers, entries, ..
        } = &mut self.phase
        else {
            return;
        };
        let Some(r) = readers.iter_mut().find(|r| r.sid == m.sid) else {
            return;
        };
        if m.status().is_some() && m.payload.is_empty() {
            // Flow control or heartbeat of the consumer: nothing to read.
            return;
        }
        // $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        let pending = m
            .reply
            .as_deref()
            .and_then(|r| r.rsplit('.').next())
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or(0);
        let bucket_prefix = format!("$KV.{}.", r.bucket);
        if !is_deletion(&m) {
            if let Some(key) = m.subject_key(&bucket_prefix) {
                entries.push(Entry {
                    key,
                    payload: m.payload,
                });
            }
        }
        if pending == 0 {
            r.done = true;
        }
        self.maybe_synced(now, out);
    }

    fn answer(&mut self, now: Instant, what: Request, m: Msg, out: &mut Vec<BusEvent>) {
        let body: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
        let error = if m.status() == Some(503) {
            Some("no JetStream on the server (start nats-server with -js)".to_string())
        } else {
            body.get("error").map(|e| {
                e.get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error")
                    .to_string()
            })
        };
        match what {
            Request::CreateStream => {
                // A bucket made by another edge (or with other settings) is
                // used as it is.
                if let Some(e) = &error {
                    if !e.contains("already in use") {
                        return self.sync_failed(now, format!("making a bucket: {e}"), out);
                    }
                }
                let Phase::Syncing {
                    streams_pending, ..
                } = &mut self.phase
                else {
                    return;
                };
                *streams_pending -= 1;
                if *streams_pending == 0 {
                    self.start_readers();
                }
            }
            Request::CreateConsumer { bucket } => {
                if let Some(e) = error {
                    return self.sync_failed(now, format!("reading {bucket}: {e}"), out);
                }
                let Phase::Syncing { readers, .. } = &mut self.phase else {
                    return;
                };
                if let Some(r) = readers.iter_mut().find(|r| r.bucket == bucket) {
                    r.consumer = body.get("name").and_then(Value::as_str).map(String::from);
                    if body.get("num_pending").and_then(Value::as_u64) == Some(0) {
                        r.done = true;
                    }
                }
                self.maybe_synced(now, out);
            }
            Request::DeleteConsumer => {}
        }
    }

    fn maybe_synced(&mut self, now: Instant, out: &mut Vec<BusEvent>) {
        let Phase::Syncing {
            started,
            readers,
            entries,
            ..
        } = &mut self.phase
        else {
            return;
        };
        if readers.len() < 2 || !readers.iter().all(|r| r.done && r.consumer.is_some()) {
            return;
        }
        let took = now.duration_since(*started);
        let entries = std::mem::take(entries);
        let done: Vec<(String, String)> = readers
            .iter()
            .filter_map(|r| Some((r.bucket.clone(), r.consumer.clone()?)))
            .collect();
        let sids: Vec<u64> = readers.iter().map(|r| r.sid).collect();
        self.phase = Phase::Live { retry_at: None };
        for sid in sids {
            self.client.unsubscribe(sid);
        }
        for (bucket, consumer) in done {
            self.request(
                &format!("$JS.API.CONSUMER.DELETE.KV_{bucket}.{consumer}"),
                "",
                Request::DeleteConsumer,
            );
        }
        out.push(BusEvent::Synced { entries, took });
    }

    /// Closes the connection.
    pub fn close(&mut self) {
        self.client.close();
        self.phase = Phase::Down;
    }
}

fn is_deletion(m: &Msg) -> bool {
    matches!(
        m.header("KV-Operation").as_deref(),
        Some("DEL") | Some("PURGE")
    )
}

trait SubjectKey {
    fn subject_key(&self, prefix: &str) -> Option<String>;
}

impl SubjectKey for Msg {
    fn subject_key(&self, prefix: &str) -> Option<String> {
        self.subject.strip_prefix(prefix).map(String::from)
    }
}
