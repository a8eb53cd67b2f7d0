//! Pinned workers and the control side that starts and stops them.
//!
//! A worker owns its I/O (an AF_XDP socket or UDP sockets), its handler and
//! its counters. Between batches it drains its control ring (handler
//! messages, stats requests, stop) and, in AF_XDP mode, its neighbour ring;
//! it answers through its event ring. The rings are rtrb SPSC queues, the
//! only memory a worker shares with another thread.

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rtrb::{Consumer, Producer, RingBuffer};

use super::afxdp::{XskError, XskPort};
use super::config::{DataplaneConfig, IoMode};
use super::counters::WorkerSnapshot;
use super::handoff::HandoffTx;
use super::io::{PacketIo, Receiver};
use super::neigh::{NeighbourError, NeighbourService};
use super::nexthop::NeighbourUpdate;
use super::socket::{SocketError, SocketPort};
use super::{Datagram, DropReason, Outbox, PacketHandler, Timestamp};

/// A message from the control thread to one worker.
#[derive(Debug)]
pub enum Control<C> {
    /// For the handler's [`PacketHandler::on_control`].
    Handler(C),
    /// Asks for a [`WorkerEvent::Snapshot`].
    Snapshot,
    /// Ends the worker after the current batch.
    Stop,
}

/// A message from one worker to the control thread.
#[derive(Debug)]
pub enum WorkerEvent<S, E> {
    /// Counters, as asked for with [`Control::Snapshot`].
    Snapshot(Box<WorkerSnapshot<S>>),
    /// Something the handler reported ([`PacketHandler`]'s events, such as
    /// abuse signals).
    Handler(E),
}

/// Where AF_XDP sockets are registered: the XDP program's XSKMAP, keyed by
/// RX queue. Implemented for aya's `XskMap`; the dataplane only inserts, the
/// XDP loader owns the map.
pub trait SocketMap {
    /// Points `queue`'s entry at the AF_XDP socket `fd`.
    fn insert(&mut self, queue: u32, fd: std::os::fd::RawFd) -> Result<(), String>;
}

impl<T: std::borrow::BorrowMut<aya::maps::MapData>> SocketMap for aya::maps::XskMap<T> {
    fn insert(&mut self, queue: u32, fd: std::os::fd::RawFd) -> Result<(), String> {
        self.set(queue, fd, 0).map_err(|e| e.to_string())
    }
}

/// Why the dataplane could not start.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The configuration does not work.
    #[error(transparent)]
    Config(#[from] super::config::ConfigProblem),
    /// AF_XDP mode was asked for without the XDP program's socket map.
    #[error("AF_XDP mode needs the XDP program's XSKMAP to register its sockets in")]
    NoSocketMap,
    /// An AF_XDP socket could not be set up.
    #[error("worker {worker}: {source}")]
    Xsk {
        /// Which worker.
        worker: usize,
        /// What failed.
        source: XskError,
    },
    /// A UDP socket could not be set up.
    #[error("worker {worker}: {source}")]
    Socket {
        /// Which worker.
        worker: usize,
        /// What failed.
        source: SocketError,
    },
    /// Registering a socket in the XSKMAP failed.
    #[error("worker {worker}: cannot insert the AF_XDP socket of queue {queue} into the XSKMAP: {reason}")]
    SocketMap {
        /// Which worker.
        worker: usize,
        /// Its queue.
        queue: u32,
        /// The map's error.
        reason: String,
    },
    /// The interface's routes, neighbours or addresses could not be read.
    #[error(transparent)]
    Neighbour(#[from] NeighbourError),
    /// A worker thread (or, with `worker` equal to the worker count, the
    /// neighbour thread) could not be started.
    #[error("cannot start worker thread {worker}: {source}")]
    Thread {
        /// Which worker.
        worker: usize,
        /// Why.
        source: std::io::Error,
    },
    /// A worker thread panicked.
    #[error("worker {worker} panicked")]
    WorkerPanicked {
        /// Which worker.
        worker: usize,
    },
}

/// A worker's handler at one instant, as its I/O sees it.
struct HandlerAt<'h, H> {
    handler: &'h mut H,
    now: Timestamp,
}

impl<H: PacketHandler> Receiver for HandlerAt<'_, H> {
    #[inline]
    fn prepare(&mut self, payloads: &mut dyn Iterator<Item = &[u8]>) {
        self.handler.prepare(self.now, payloads);
    }

    #[inline]
    fn handle(&mut self, pkt: &Datagram<'_>, out: &mut Outbox<'_>) -> Result<(), usize> {
        self.handler
            .handle(self.now, pkt, out)
            .map_err(DropReason::index)
    }
}

/// Ring sizes between a worker and the control thread.
const EVENT_RING: usize = 1024;

/// One worker: its I/O, its handler and its rings. Runs on its own thread.
pub struct Worker<I: PacketIo, H: PacketHandler> {
    index: usize,
    core: Option<usize>,
    io: I,
    handler: H,
    control: Consumer<Control<H::Control>>,
    neighbours: Option<Consumer<NeighbourUpdate>>,
    events: Producer<WorkerEvent<H::Stats, H::Event>>,
    busy_polls: u32,
    wait: Duration,
    events_lost: u64,
    pinned: bool,
    /// SCHED_FIFO priority asked for (0: ordinary scheduling).
    priority: u8,
    /// Whether the real-time policy took effect.
    realtime: bool,
    /// The thread's kernel id, for its scheduler statistics.
    tid: u32,
}

impl<I: PacketIo, H: PacketHandler> Worker<I, H> {
    fn snapshot(&mut self) -> WorkerSnapshot<H::Stats> {
        let xsk = self.io.xsk_statistics();
        WorkerSnapshot {
            worker: self.index,
            core: self.core,
            pinned: self.pinned,
            io: self.io.kind(),
            counters: *self.io.counters(),
            handler_drop_names: <H::Drop as DropReason>::NAMES,
            xsk,
            socket_rx_drops: self.io.socket_rx_drops(),
            handler: self.handler.stats(),
            events_lost: self.events_lost,
            realtime: self.realtime,
            sched: sys::thread_schedstat(self.tid),
        }
    }

    /// Runs until [`Control::Stop`] (or the control side goes away), then
    /// returns the final snapshot.
    pub fn run(mut self) -> WorkerSnapshot<H::Stats> {
        if let Some(core) = self.core {
            // Pinning can fail in a restricted cpuset; the worker still runs
            // and its snapshots say `pinned: false`.
            self.pinned = core_affinity::set_for_current(core_affinity::CoreId { id: core });
        }
        self.tid = sys::thread_id();
        if self.priority > 0 {
            // Refused without CAP_SYS_NICE; the worker still runs, and its
            // snapshots say `realtime: false`.
            self.realtime = sys::set_thread_realtime(self.priority).is_ok();
        }
        let mut empty_loops: u32 = 0;
        loop {
            let now = crate::now();
            while let Ok(msg) = self.control.pop() {
                self.io.counters().control_messages += 1;
                match msg {
                    Control::Handler(m) => self.handler.on_control(now, m),
                    Control::Snapshot => {
                        let snap = Box::new(self.snapshot());
                        if self.events.push(WorkerEvent::Snapshot(snap)).is_err() {
                            self.events_lost += 1;
                        }
                    }
                    Control::Stop => {
                        self.io.finish();
                        return self.snapshot();
                    }
                }
            }
            if self.control.is_abandoned() {
                self.io.finish();
                return self.snapshot();
            }
            if let Some(ring) = &mut self.neighbours {
                while let Ok(update) = ring.pop() {
                    self.io.apply_neighbour(update);
                }
            }
            self.handler.between_batches(now);
            let mut rx = HandlerAt {
                handler: &mut self.handler,
                now,
            };
            let received = self.io.receive(now, &mut rx);
            self.io.transmit(now);
            while let Some(ev) = self.handler.poll_event() {
                if self.events.push(WorkerEvent::Handler(ev)).is_err() {
                    self.events_lost += 1;
                }
            }
            if received == 0 {
                empty_loops += 1;
                // Never asleep with frames the kernel has not taken yet.
                if empty_loops > self.busy_polls && !self.io.tx_pending() {
                    self.io.counters().idle_waits += 1;
                    self.io.wait(self.wait);
                    empty_loops = 0;
                }
            } else {
                empty_loops = 0;
            }
        }
    }
}

struct WorkerHandle<H: PacketHandler> {
    control: Producer<Control<H::Control>>,
    events: Consumer<WorkerEvent<H::Stats, H::Event>>,
    thread: Option<JoinHandle<WorkerSnapshot<H::Stats>>>,
}

/// The running dataplane, as the control thread holds it.
pub struct Dataplane<H: PacketHandler> {
    workers: Vec<WorkerHandle<H>>,
    neighbour: Option<NeighbourService>,
    pending: std::collections::VecDeque<(usize, H::Event)>,
    local: Vec<SocketAddr>,
    /// Send-only handles on the first socket worker's sockets (socket
    /// mode), for [`Dataplane::take_udp_egress`].
    udp_egress: Vec<std::net::UdpSocket>,
}

impl<H: PacketHandler> Dataplane<H> {
    /// Sets up every worker's I/O (AF_XDP sockets registered in `xsk_map`
    /// after bind, or UDP sockets), reads the interface's routes and
    /// neighbours (AF_XDP), and starts one pinned thread per worker, each
    /// with the handler `handler_factory(worker_index)` made for it.
    pub fn start(
        config: &DataplaneConfig,
        xsk_map: Option<&mut dyn SocketMap>,
        handler_factory: impl FnMut(usize) -> H,
    ) -> Result<Dataplane<H>, DataplaneError> {
        Self::start_with_handoffs(config, xsk_map, Vec::new(), handler_factory)
    }

    /// [`Dataplane::start`], worker `i` handing its messages for TCP and
    /// TLS peers to the stream thread through `handoffs[i]` (without one, a
    /// worker drops them as `no_stream_path`).
    pub fn start_with_handoffs(
        config: &DataplaneConfig,
        xsk_map: Option<&mut dyn SocketMap>,
        handoffs: Vec<HandoffTx>,
        mut handler_factory: impl FnMut(usize) -> H,
    ) -> Result<Dataplane<H>, DataplaneError> {
        config.validate()?;
        let mut handoffs = handoffs.into_iter();
        let mut config = config.clone();
        let mut dp = Dataplane {
            workers: Vec::with_capacity(config.workers.len()),
            neighbour: None,
            pending: std::collections::VecDeque::new(),
            local: config.local.clone(),
            udp_egress: Vec::new(),
        };
        let config = &mut config;
        match config.mode {
            IoMode::Socket => {
                for i in 0..config.workers.len() {
                    // The first socket turns a port 0 into a real port in
                    // `config.local`; the other workers bind the same one.
                    let mut io = SocketPort::open(config)
                        .map_err(|source| DataplaneError::Socket { worker: i, source })?;
                    if let Some(h) = handoffs.next() {
                        io.set_handoff(h);
                    }
                    if i == 0 {
                        dp.udp_egress =
                            io.clone_sockets()
                                .map_err(|source| DataplaneError::Socket {
                                    worker: i,
                                    source: SocketError::Io {
                                        what: "duplicate",
                                        addr: config.local[0],
                                        source,
                                    },
                                })?;
                    }
                    dp.local = config.local.clone();
                    let core = config.workers[i].core;
                    dp.spawn(i, core, io, None, config, handler_factory(i))?;
                }
            }
            IoMode::AfXdp => {
                let map = xsk_map.ok_or(DataplaneError::NoSocketMap)?;
                let mut service = NeighbourService::start(config)?;
                let mac = service.interface().map(|i| i.mac).unwrap_or_default();
                for i in 0..config.workers.len() {
                    let placement = config.workers[i];
                    let (table, updates) = service.add_worker(config);
                    let mut io = XskPort::open(config, placement.queue, mac, table)
                        .map_err(|source| DataplaneError::Xsk { worker: i, source })?;
                    if let Some(h) = handoffs.next() {
                        io.set_handoff(h);
                    }
                    // Only a bound socket may enter the XSKMAP (PLATFORM.md).
                    map.insert(placement.queue, io.raw_fd()).map_err(|reason| {
                        DataplaneError::SocketMap {
                            worker: i,
                            queue: placement.queue,
                            reason,
                        }
                    })?;
                    dp.spawn(
                        i,
                        placement.core,
                        io,
                        Some(updates),
                        config,
                        handler_factory(i),
                    )?;
                }
                service.run().map_err(|source| DataplaneError::Thread {
                    worker: config.workers.len(),
                    source,
                })?;
                dp.neighbour = Some(service);
            }
        }
        Ok(dp)
    }

    fn spawn<I: PacketIo>(
        &mut self,
        index: usize,
        core: Option<usize>,
        io: I,
        neighbours: Option<Consumer<NeighbourUpdate>>,
        config: &DataplaneConfig,
        handler: H,
    ) -> Result<(), DataplaneError> {
        let (control_tx, control_rx) = RingBuffer::new(config.control_ring);
        let (events_tx, events_rx) = RingBuffer::new(EVENT_RING);
        let worker = Worker {
            index,
            core,
            io,
            handler,
            control: control_rx,
            neighbours,
            events: events_tx,
            busy_polls: config.idle.busy_polls,
            wait: config.idle.wait(),
            events_lost: 0,
            pinned: false,
            priority: config.worker_priority,
            realtime: false,
            tid: 0,
        };
        let thread = std::thread::Builder::new()
            .name(format!("dce-worker-{index}"))
            .spawn(move || worker.run())
            .map_err(|source| DataplaneError::Thread {
                worker: index,
                source,
            })?;
        self.workers.push(WorkerHandle {
            control: control_tx,
            events: events_rx,
            thread: Some(thread),
        });
        Ok(())
    }

    /// The local addresses in use (in socket mode with the real port when
    /// the configuration said port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// Socket mode: send-only handles on the SIP port's sockets, one per
    /// address of `local_addrs` (taken once; empty in AF_XDP mode, which
    /// has no kernel socket on the SIP port). Another thread that sends
    /// from them sends from the SIP port, and what comes back reaches the
    /// workers.
    pub fn take_udp_egress(&mut self) -> Vec<std::net::UdpSocket> {
        std::mem::take(&mut self.udp_egress)
    }

    /// How many workers run.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// True while every worker thread is alive (none has returned or
    /// panicked).
    pub fn all_running(&self) -> bool {
        self.workers
            .iter()
            .all(|w| w.thread.as_ref().is_some_and(|t| !t.is_finished()))
    }

    /// Sends `msg` to worker `worker`'s handler; gives it back if that
    /// worker's control ring is full.
    pub fn send(&mut self, worker: usize, msg: H::Control) -> Result<(), H::Control> {
        match self.workers[worker].control.push(Control::Handler(msg)) {
            Ok(()) => Ok(()),
            Err(rtrb::PushError::Full(Control::Handler(m))) => Err(m),
            Err(rtrb::PushError::Full(_)) => unreachable!("pushed a handler message"),
        }
    }

    /// Sends a copy of `msg` to every worker; returns the workers whose ring
    /// was full.
    pub fn broadcast(&mut self, msg: H::Control) -> Vec<usize>
    where
        H::Control: Clone,
    {
        let mut full = Vec::new();
        for i in 0..self.workers.len() {
            if self.send(i, msg.clone()).is_err() {
                full.push(i);
            }
        }
        full
    }

    /// Asks every worker for a snapshot and waits up to `timeout` for all of
    /// them; handler events that arrive meanwhile are kept for
    /// [`Dataplane::poll_events`]. Workers that did not answer in time are
    /// missing from the result.
    pub fn snapshots(&mut self, timeout: Duration) -> Vec<WorkerSnapshot<H::Stats>> {
        let mut asked = vec![false; self.workers.len()];
        for (i, w) in self.workers.iter_mut().enumerate() {
            asked[i] = w.control.push(Control::Snapshot).is_ok();
        }
        let deadline = Instant::now() + timeout;
        let mut out: Vec<Option<WorkerSnapshot<H::Stats>>> =
            (0..self.workers.len()).map(|_| None).collect();
        while Instant::now() < deadline {
            for (i, w) in self.workers.iter_mut().enumerate() {
                while let Ok(ev) = w.events.pop() {
                    match ev {
                        WorkerEvent::Snapshot(s) => out[i] = Some(*s),
                        WorkerEvent::Handler(e) => self.pending.push_back((i, e)),
                    }
                }
            }
            if out
                .iter()
                .zip(&asked)
                .all(|(got, asked)| got.is_some() || !asked)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        out.into_iter().flatten().collect()
    }

    /// Calls `f(worker, event)` for every handler event reported so far.
    pub fn poll_events(&mut self, mut f: impl FnMut(usize, H::Event)) {
        while let Some((i, e)) = self.pending.pop_front() {
            f(i, e);
        }
        for (i, w) in self.workers.iter_mut().enumerate() {
            while let Ok(ev) = w.events.pop() {
                match ev {
                    WorkerEvent::Handler(e) => f(i, e),
                    // An answer to a snapshot request nobody waits for any more.
                    WorkerEvent::Snapshot(_) => {}
                }
            }
        }
    }

    /// Neighbour resolution figures (AF_XDP mode).
    pub fn neighbour_stats(&self) -> Option<super::neigh::NeighbourStats> {
        self.neighbour.as_ref().map(NeighbourService::stats)
    }

    /// Stops every worker (and the neighbour upkeep), waits for them, and
    /// returns their final snapshots. Sockets close as the workers end; the
    /// kernel removes closed AF_XDP sockets from the XSKMAP.
    pub fn stop(mut self) -> Result<Vec<WorkerSnapshot<H::Stats>>, DataplaneError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<Vec<WorkerSnapshot<H::Stats>>, DataplaneError> {
        for w in &mut self.workers {
            // A full control ring still ends the worker: it also stops when
            // the control side is dropped, which happens below.
            let _ = w.control.push(Control::Stop);
        }
        let mut finals = Vec::with_capacity(self.workers.len());
        let mut panicked = None;
        for (i, w) in self.workers.drain(..).enumerate() {
            let WorkerHandle {
                control,
                events,
                thread,
            } = w;
            drop(control);
            if let Some(t) = thread {
                match t.join() {
                    Ok(s) => finals.push(s),
                    Err(_) => panicked = Some(i),
                }
            }
            drop(events);
        }
        if let Some(n) = self.neighbour.take() {
            n.stop();
        }
        match panicked {
            Some(worker) => Err(DataplaneError::WorkerPanicked { worker }),
            None => Ok(finals),
        }
    }
}

impl<H: PacketHandler> Drop for Dataplane<H> {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataplane_can_move_to_another_control_thread() {
        fn assert_send<T: Send>() {}
        struct H;
        #[derive(Clone, Copy)]
        enum D {}
        impl DropReason for D {
            const NAMES: &'static [&'static str] = &[];
            fn index(self) -> usize {
                match self {}
            }
        }
        impl PacketHandler for H {
            type Control = ();
            type Stats = ();
            type Drop = D;
            type Event = ();
            fn handle(
                &mut self,
                _: Timestamp,
                _: &Datagram<'_>,
                _: &mut Outbox<'_>,
            ) -> Result<(), D> {
                Ok(())
            }
            fn on_control(&mut self, _: Timestamp, _: ()) {}
            fn stats(&self) {}
        }
        assert_send::<Dataplane<H>>();
    }
}
