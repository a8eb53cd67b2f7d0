//! Hot reload and health updates: the control thread builds, each worker swaps.
//!
//! [`RouteControl`] (control thread) builds and checks a new table off the hot
//! path, clones it once per worker and sends each clone through that worker's
//! own rtrb ring. [`WorkerRoutes`] (one per worker, owned by it) polls its
//! ring between batches, swaps to the new copy in a few instructions, and
//! sends the old copy back through a return ring, so memory is freed on the
//! control thread, never on a worker. Health changes travel through the same
//! ring as small messages, in order with the tables they refer to. No lock,
//! no shared table: a worker's lookups never wait for a reload, and every
//! lookup answers from exactly one table version.
//!
//! At most one table is in a worker's ring at a time; newer tables wait on
//! the control side, where a still newer one replaces them, so a worker that
//! stops polling costs at most a few copies, not one per reload.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use rtrb::{Consumer, Producer, PushError, RingBuffer};

use crate::cps::{Admission, CpsShares};
use crate::files::{self, LoadStats, RouteErrors, RoutesConfig};
use crate::select::HealthView;
use crate::table::{GroupId, RouteGroup, RouteMatch, RouteTable, Target, UpstreamId};
use config::{ConfigError, SourceFile};

/// Messages a ring to a worker holds at most.
pub const RING_CAPACITY: usize = 1024;
/// Retired tables a return ring holds at most (more than can be out at once).
const RETURN_CAPACITY: usize = 4;

/// Everything a worker routes with, replaced as a whole on reload: its own
/// copy of the table, its CPS counters and its health view.
#[derive(Debug)]
pub struct WorkerTable {
    version: u64,
    table: RouteTable,
    cps: CpsShares,
    health: HealthView,
    /// The version this table expects to replace, and for each of its
    /// groups the index of the same-named group there (CPS carry-over).
    replaces: u64,
    previous: Vec<Option<GroupId>>,
    /// Set by the worker when it retires this table: the version it moved to.
    replaced_by: u64,
}

impl WorkerTable {
    /// The table version.
    pub fn version(&self) -> u64 {
        self.version
    }
}

/// What the control thread sends a worker.
#[derive(Debug)]
pub enum ToWorker {
    /// Swap to this table (built, checked and cloned off the hot path).
    Table(Box<WorkerTable>),
    /// An upstream of table `version` went up or down.
    Health {
        /// The table version whose upstream ids this message uses.
        version: u64,
        /// The upstream.
        upstream: UpstreamId,
        /// Its new state.
        up: bool,
    },
}

/// What a worker did in one [`WorkerRoutes::poll`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Polled {
    /// The version swapped to, if a table was swapped in.
    pub swapped_to: Option<u64>,
    /// Health messages applied.
    pub health_updates: u32,
}

/// The routing decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'a> {
    /// No prefix matched and there is no default route: the configured
    /// no-route answer (404 or 484).
    NoRoute,
    /// Forward statelessly to this target.
    Forward {
        /// The matched prefix and group.
        route: RouteMatch,
        /// The chosen target.
        target: &'a Target,
    },
    /// Answer 302 with these targets as Contacts (priority order).
    Redirect {
        /// The matched prefix and group.
        route: RouteMatch,
        /// The group's targets.
        targets: &'a [Target],
    },
    /// Answer with this status code.
    Reject {
        /// The matched prefix and group.
        route: RouteMatch,
        /// The code.
        code: u16,
    },
    /// The group is over its CPS cap on this worker: 503 with Retry-After.
    OverCap {
        /// The matched prefix and group.
        route: RouteMatch,
        /// What Retry-After should say.
        retry_after: Duration,
    },
    /// A forward group whose targets are all down, and that answers 503
    /// then (`when_all_down = "answer_503"`).
    NoTargetUp {
        /// The matched prefix and group.
        route: RouteMatch,
    },
}

/// One worker's routes: its own table copy, CPS shares and health view, and
/// its end of the rings to the control thread. Lives on the worker thread.
#[derive(Debug)]
pub struct WorkerRoutes {
    worker: usize,
    current: Box<WorkerTable>,
    inbox: Consumer<ToWorker>,
    retired: Producer<Box<WorkerTable>>,
    /// A retired table the return ring had no room for; handed back before
    /// any new table is taken (so there is never more than one).
    parked: Option<Box<WorkerTable>>,
}

impl WorkerRoutes {
    /// Applies what the control thread sent: call it between batches. Never
    /// blocks, never allocates, never frees a table.
    pub fn poll(&mut self) -> Polled {
        let mut polled = Polled::default();
        if let Some(old) = self.parked.take() {
            if let Err(PushError::Full(old)) = self.retired.push(old) {
                self.parked = Some(old);
            }
        }
        loop {
            match self.inbox.peek() {
                Err(_) => break,
                // Keep the new table in the ring until the old one can go back.
                Ok(ToWorker::Table(_)) if self.parked.is_some() => break,
                Ok(_) => {}
            }
            match self.inbox.pop() {
                Ok(ToWorker::Table(mut next)) => {
                    if next.replaces == self.current.version {
                        next.cps.carry_over(&self.current.cps, &next.previous);
                    }
                    let mut old = std::mem::replace(&mut self.current, next);
                    old.replaced_by = self.current.version;
                    polled.swapped_to = Some(self.current.version);
                    if let Err(PushError::Full(old)) = self.retired.push(old) {
                        self.parked = Some(old);
                    }
                }
                Ok(ToWorker::Health {
                    version,
                    upstream,
                    up,
                }) => {
                    if version == self.current.version {
                        self.current.health.set(upstream, up);
                        polled.health_updates += 1;
                    }
                }
                Err(_) => break,
            }
        }
        polled
    }

    /// This worker's index.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// The version of the table this worker routes with.
    pub fn version(&self) -> u64 {
        self.current.version
    }

    /// This worker's table.
    pub fn table(&self) -> &RouteTable {
        &self.current.table
    }

    /// This worker's view of upstream health.
    pub fn health(&self) -> &HealthView {
        &self.current.health
    }

    /// The longest prefix of `number` in this worker's table.
    #[inline]
    pub fn lookup(&self, number: &[u8]) -> Option<RouteMatch> {
        self.current.table.lookup(number)
    }

    /// Lookups for a batch, overlapping their memory accesses (see
    /// [`RouteTable::lookup_batch`]).
    pub fn lookup_batch(&self, numbers: &[&[u8]], out: &mut [Option<RouteMatch>]) {
        self.current.table.lookup_batch(numbers, out);
    }

    /// The group with this id in this worker's table.
    pub fn group(&self, id: GroupId) -> &RouteGroup {
        self.current.table.group(id)
    }

    /// The target of `group` for this Call-ID, by this worker's health view.
    pub fn select(&self, group: GroupId, call_id: &[u8]) -> Option<&Target> {
        self.current
            .table
            .group(group)
            .select(call_id, &self.current.health)
    }

    /// Counts a new call to `group` against this worker's share of its cap.
    pub fn admit(&mut self, group: GroupId, now: Duration) -> Admission {
        self.current.cps.admit(group, now)
    }

    /// Routes a request that starts a call (an initial INVITE): lookup, CPS
    /// cap, then the group's action. `now` is time since the workers' shared
    /// epoch. Never allocates.
    pub fn route_call(&mut self, number: &[u8], call_id: &[u8], now: Duration) -> Decision<'_> {
        let found = self.current.table.lookup(number);
        self.route_call_found(found, call_id, now)
    }

    /// [`WorkerRoutes::route_call`] for a number already looked up (by
    /// [`WorkerRoutes::lookup`] or [`WorkerRoutes::lookup_batch`] on this
    /// table: `found` is what the lookup returned).
    pub fn route_call_found(
        &mut self,
        found: Option<RouteMatch>,
        call_id: &[u8],
        now: Duration,
    ) -> Decision<'_> {
        let Some(route) = found else {
            return Decision::NoRoute;
        };
        if let Admission::OverCap { retry_after } = self.current.cps.admit(route.group, now) {
            return Decision::OverCap { route, retry_after };
        }
        decide(&self.current, route, call_id)
    }

    /// Routes a request that does not start a call (ACK, BYE, CANCEL, ...):
    /// the same answer as [`WorkerRoutes::route_call`] without counting
    /// against the cap, so it follows the INVITE's target while that is up.
    pub fn route_in_dialog(&self, number: &[u8], call_id: &[u8]) -> Decision<'_> {
        self.route_in_dialog_found(self.current.table.lookup(number), call_id)
    }

    /// [`WorkerRoutes::route_in_dialog`] for a number already looked up.
    pub fn route_in_dialog_found(&self, found: Option<RouteMatch>, call_id: &[u8]) -> Decision<'_> {
        match found {
            None => Decision::NoRoute,
            Some(route) => decide(&self.current, route, call_id),
        }
    }
}

impl WorkerRoutes {
    /// Where an emergency call goes: an up target of the emergency group,
    /// else an up target of its fallback, else the emergency group's first
    /// target anyway (an emergency call is never refused because no target
    /// looks up). Never counted against a cap. `None` when the table has no
    /// emergency group: the caller routes by prefix, still without caps.
    pub fn route_emergency(&self, call_id: &[u8]) -> Option<&Target> {
        let table = &self.current.table;
        let e = table.emergency()?;
        let group = table.group(e.group);
        group
            .select(call_id, &self.current.health)
            .or_else(|| {
                e.fallback
                    .and_then(|f| table.group(f).select(call_id, &self.current.health))
            })
            .or_else(|| group.targets.first())
    }

    /// A call routed by prefix as an emergency call: like
    /// [`WorkerRoutes::route_call_found`] without the cap, and a forward
    /// group whose targets are all down still gets its first target.
    pub fn route_emergency_by_prefix(
        &self,
        found: Option<RouteMatch>,
        call_id: &[u8],
    ) -> Decision<'_> {
        let Some(route) = found else {
            return Decision::NoRoute;
        };
        match decide(&self.current, route, call_id) {
            Decision::NoTargetUp { route } => {
                match self.current.table.group(route.group).targets.first() {
                    Some(target) => Decision::Forward { route, target },
                    None => Decision::NoTargetUp { route },
                }
            }
            d => d,
        }
    }
}

fn decide<'a>(current: &'a WorkerTable, route: RouteMatch, call_id: &[u8]) -> Decision<'a> {
    let group = current.table.group(route.group);
    match group.action {
        crate::table::Action::Reject { code } => Decision::Reject { route, code },
        crate::table::Action::Redirect => Decision::Redirect {
            route,
            targets: &group.targets,
        },
        crate::table::Action::Forward => match group.select(call_id, &current.health) {
            Some(target) => Decision::Forward { route, target },
            None => match group.when_all_down {
                crate::table::WhenAllDown::TryAnyway => match group.select_ignoring_health(call_id)
                {
                    Some(target) => Decision::Forward { route, target },
                    None => Decision::NoTargetUp { route },
                },
                crate::table::WhenAllDown::Answer503 => Decision::NoTargetUp { route },
            },
        },
    }
}

/// A message waiting on the control side for room in a worker's ring.
#[derive(Debug)]
enum Pending {
    Table(Box<WorkerTable>),
    Health {
        version: u64,
        upstream: UpstreamId,
        up: bool,
    },
}

/// The control side of one worker's rings.
#[derive(Debug)]
struct Link {
    inbox: Producer<ToWorker>,
    retired: Consumer<Box<WorkerTable>>,
    pending: VecDeque<Pending>,
    /// Tables pushed and not yet back.
    tables_out: usize,
    /// The version of the last table pushed, and its group names: what the
    /// worker will be running when it reads the next message.
    pushed_version: u64,
    pushed_names: HashMap<String, GroupId>,
    /// The version the worker last reported running.
    applied_version: u64,
}

/// A reload that was accepted.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The new version.
    pub version: u64,
    /// What the files' checks noticed without refusing them.
    pub warnings: Vec<ConfigError>,
    /// How long reading and building took.
    pub stats: LoadStats,
}

/// The control thread's side: builds tables, numbers their versions, hands
/// copies to the workers, passes on health changes and frees what workers
/// give back.
#[derive(Debug)]
pub struct RouteControl {
    version: u64,
    table: RouteTable,
    upstream_ids: HashMap<SocketAddr, UpstreamId>,
    health: HashMap<SocketAddr, bool>,
    workers: usize,
    links: Vec<Link>,
}

fn group_names(table: &RouteTable) -> HashMap<String, GroupId> {
    table
        .groups()
        .iter()
        .enumerate()
        .map(|(i, g)| (g.name.clone(), GroupId(i as u32)))
        .collect()
}

impl RouteControl {
    /// Starts with `table` as version 1 and makes one [`WorkerRoutes`] per
    /// worker, each with its own copy; move each to its worker thread.
    pub fn new(table: RouteTable, workers: usize) -> (RouteControl, Vec<WorkerRoutes>) {
        assert!(workers > 0, "at least one worker");
        let mut control = RouteControl {
            version: 1,
            upstream_ids: HashMap::new(),
            health: HashMap::new(),
            workers,
            links: Vec::with_capacity(workers),
            table,
        };
        control.upstream_ids = control.upstream_ids_of(&control.table);
        let mut routes = Vec::with_capacity(workers);
        for worker in 0..workers {
            let (to_worker, inbox) = RingBuffer::new(RING_CAPACITY);
            let (retired, from_worker) = RingBuffer::new(RETURN_CAPACITY);
            let current = control.worker_table(worker, control.table.clone());
            control.links.push(Link {
                inbox: to_worker,
                retired: from_worker,
                pending: VecDeque::new(),
                tables_out: 0,
                pushed_version: 1,
                pushed_names: group_names(&control.table),
                applied_version: 1,
            });
            routes.push(WorkerRoutes {
                worker,
                current,
                inbox,
                retired,
                parked: None,
            });
        }
        (control, routes)
    }

    fn upstream_ids_of(&self, table: &RouteTable) -> HashMap<SocketAddr, UpstreamId> {
        table
            .upstreams()
            .iter()
            .enumerate()
            .map(|(i, &a)| (a, UpstreamId(i as u32)))
            .collect()
    }

    fn worker_table(&self, worker: usize, table: RouteTable) -> Box<WorkerTable> {
        let mut health = HealthView::all_up(table.upstreams().len());
        for (i, addr) in table.upstreams().iter().enumerate() {
            if self.health.get(addr) == Some(&false) {
                health.set(UpstreamId(i as u32), false);
            }
        }
        Box::new(WorkerTable {
            version: self.version,
            cps: CpsShares::new(&table, worker, self.workers),
            health,
            replaces: 0,
            previous: Vec::new(),
            replaced_by: 0,
            table,
        })
    }

    /// The newest version (what every worker runs once it has polled).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The newest table (the control thread's own copy).
    pub fn table(&self) -> &RouteTable {
        &self.table
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The version worker `worker` last reported running.
    pub fn worker_version(&self, worker: usize) -> u64 {
        self.links[worker].applied_version
    }

    /// True when every worker runs the newest version and nothing waits.
    pub fn settled(&self) -> bool {
        self.links
            .iter()
            .all(|l| l.applied_version == self.version && l.pending.is_empty() && l.tables_out == 0)
    }

    /// Reads the files of a `[routes]` table, checks them and, if they pass,
    /// makes them the new version. A refused table changes nothing: the
    /// workers keep the one they run. This is what SIGHUP and
    /// `dce-edge routes reload` end up calling.
    pub fn reload(
        &mut self,
        config: &RoutesConfig,
        source: &SourceFile,
    ) -> Result<Reloaded, RouteErrors> {
        self.reload_guarded(config, source, false)
    }

    /// [`RouteControl::reload`] with the guards an operator's mistakes
    /// meet: a table without prefixes, or one that drops more than
    /// `[routes] reload_max_drop` of the running table's prefixes (default
    /// half: a truncated or half-written file), is refused unless `force`.
    pub fn reload_guarded(
        &mut self,
        config: &RoutesConfig,
        source: &SourceFile,
        force: bool,
    ) -> Result<Reloaded, RouteErrors> {
        let max_drop = config.max_drop(source)?;
        let loaded = config.load_forced(source, force || config.allow_empty)?;
        let running = self.table.prefix_count();
        let new = loaded.table.prefix_count();
        let keep = (running as f64 * (1.0 - max_drop)).ceil() as usize;
        if !force && new < keep {
            let path = source.resolve(config.prefixes.get_ref());
            return Err(config::ConfigError::file(
                path,
                format!(
                    "the new table has {new} prefixes, the running one {running}: a reload may \
                     drop at most {:.0}% of them ([routes] reload_max_drop = {max_drop}); check \
                     the file (truncated? half written?), or force it with `dce-edge routes \
                     reload --force`",
                    max_drop * 100.0
                ),
            )
            .into());
        }
        let version = self.install(loaded.table);
        Ok(Reloaded {
            version,
            warnings: loaded.warnings,
            stats: loaded.stats,
        })
    }

    /// [`RouteControl::reload`] from a groups file and a prefixes file.
    pub fn reload_files(
        &mut self,
        groups: &Path,
        prefixes: &Path,
    ) -> Result<Reloaded, RouteErrors> {
        let loaded = files::load_files(groups, prefixes)?;
        let version = self.install(loaded.table);
        Ok(Reloaded {
            version,
            warnings: loaded.warnings,
            stats: loaded.stats,
        })
    }

    /// Makes an already built and checked table the new version: one copy per
    /// worker, queued for its ring. Returns the new version.
    pub fn install(&mut self, table: RouteTable) -> u64 {
        self.version += 1;
        self.upstream_ids = self.upstream_ids_of(&table);
        for worker in 0..self.workers {
            let copy = self.worker_table(worker, table.clone());
            let link = &mut self.links[worker];
            // A table still waiting here is superseded, with its messages.
            let dropped: Vec<u64> = link
                .pending
                .iter()
                .filter_map(|p| match p {
                    Pending::Table(t) => Some(t.version),
                    Pending::Health { .. } => None,
                })
                .collect();
            link.pending.retain(|p| match p {
                Pending::Table(_) => false,
                Pending::Health { version, .. } => !dropped.contains(version),
            });
            link.pending.push_back(Pending::Table(copy));
        }
        self.table = table;
        self.pump();
        self.version
    }

    /// Records that the upstream at `addr` went up or down and tells every
    /// worker. Returns false (and only records it) when the newest table has
    /// no such upstream.
    pub fn set_health(&mut self, addr: SocketAddr, up: bool) -> bool {
        self.health.insert(addr, up);
        let Some(&upstream) = self.upstream_ids.get(&addr) else {
            return false;
        };
        let version = self.version;
        for link in &mut self.links {
            // A newer message about the same upstream replaces a waiting one.
            let waiting = link.pending.iter_mut().find_map(|p| match p {
                Pending::Health {
                    version: v,
                    upstream: u,
                    up,
                } if *v == version && *u == upstream => Some(up),
                _ => None,
            });
            match waiting {
                Some(state) => *state = up,
                None => link.pending.push_back(Pending::Health {
                    version,
                    upstream,
                    up,
                }),
            }
        }
        self.pump();
        true
    }

    /// [`RouteControl::set_health`] for each change a prober reported.
    pub fn apply_health(&mut self, changes: &[crate::health::HealthChange]) {
        for c in changes {
            self.set_health(c.addr, c.up);
        }
    }

    /// The last state recorded for an upstream address (up when never told).
    pub fn is_up(&self, addr: SocketAddr) -> bool {
        self.health.get(&addr).copied().unwrap_or(true)
    }

    /// Moves waiting messages into the rings and frees the tables workers
    /// gave back. Call it regularly (every few milliseconds, and after a
    /// reload); returns how many old tables were freed.
    pub fn pump(&mut self) -> usize {
        let mut freed = 0;
        for link in &mut self.links {
            while let Ok(old) = link.retired.pop() {
                link.applied_version = link.applied_version.max(old.replaced_by);
                link.tables_out = link.tables_out.saturating_sub(1);
                // The old copy is freed here, on the control thread.
                drop(old);
                freed += 1;
            }
            while let Some(front) = link.pending.front() {
                if matches!(front, Pending::Table(_)) && link.tables_out > 0 {
                    break;
                }
                if link.inbox.is_full() {
                    break;
                }
                let message = match link.pending.pop_front().expect("front exists") {
                    Pending::Table(mut table) => {
                        // Carry CPS counters from the version the worker will
                        // be running when it reads this table.
                        table.replaces = link.pushed_version;
                        table.previous = table
                            .table
                            .groups()
                            .iter()
                            .map(|g| link.pushed_names.get(&g.name).copied())
                            .collect();
                        link.pushed_version = table.version;
                        link.pushed_names = group_names(&table.table);
                        link.tables_out += 1;
                        ToWorker::Table(table)
                    }
                    Pending::Health {
                        version,
                        upstream,
                        up,
                    } => ToWorker::Health {
                        version,
                        upstream,
                        up,
                    },
                };
                if link.inbox.push(message).is_err() {
                    unreachable!("the ring was checked for room");
                }
            }
        }
        freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::HealthSettings;
    use crate::table::{Action, RouteGroup, Target};
    use crate::trie::PrefixKey;

    fn table(prefix: &str, group: &str, target: &str) -> RouteTable {
        RouteTable::build(
            vec![
                RouteGroup::new(group, Action::Forward).with_target(Target::new(
                    target.parse().unwrap(),
                    1,
                    1,
                )),
            ],
            &[(
                PrefixKey::from_digits(prefix.as_bytes()).unwrap(),
                GroupId(0),
            )],
            HealthSettings::default(),
        )
        .unwrap()
    }

    #[test]
    fn a_worker_swaps_on_poll_and_hands_the_old_table_back() {
        let (mut control, mut workers) = RouteControl::new(table("49", "a", "198.18.0.1:5060"), 1);
        let w = &mut workers[0];
        assert_eq!(w.version(), 1);
        let v = control.install(table("33", "b", "198.18.0.2:5060"));
        assert_eq!(v, 2);
        assert_eq!(w.version(), 1, "nothing changes before the worker polls");
        assert!(w.lookup(b"4912").is_some());
        assert_eq!(w.poll().swapped_to, Some(2));
        assert!(w.lookup(b"4912").is_none());
        assert!(w.lookup(b"3312").is_some());
        assert!(!control.settled());
        assert_eq!(
            control.pump(),
            1,
            "the old copy is freed by the control thread"
        );
        assert!(control.settled());
        assert_eq!(control.worker_version(0), 2);
    }

    #[test]
    fn reloads_while_a_worker_is_not_polling_collapse_to_the_newest() {
        let (mut control, mut workers) = RouteControl::new(table("1", "a", "198.18.0.1:5060"), 1);
        for i in 2..=10 {
            control.install(table(&i.to_string(), "a", "198.18.0.1:5060"));
        }
        let w = &mut workers[0];
        assert_eq!(
            w.poll().swapped_to,
            Some(2),
            "the first reload was already in the ring"
        );
        control.pump();
        assert_eq!(
            w.poll().swapped_to,
            Some(10),
            "the waiting ones collapsed into the newest"
        );
        control.pump();
        assert!(control.settled());
    }

    #[test]
    fn health_changes_reach_the_worker_through_its_ring() {
        let addr: SocketAddr = "198.18.0.1:5060".parse().unwrap();
        let (mut control, mut workers) = RouteControl::new(table("49", "a", "198.18.0.1:5060"), 2);
        assert!(control.set_health(addr, false));
        for w in &mut workers {
            assert!(
                w.select(GroupId(0), b"call").is_some(),
                "not before polling"
            );
            assert_eq!(w.poll().health_updates, 1);
            assert_eq!(w.select(GroupId(0), b"call"), None);
            assert!(matches!(
                w.route_call(b"491", b"call", Duration::ZERO),
                Decision::NoTargetUp { .. }
            ));
        }
        // A new table starts from the health the control knows.
        control.install(table("49", "a", "198.18.0.1:5060"));
        for w in &mut workers {
            w.poll();
            assert!(!w.health().is_up(UpstreamId(0)));
        }
        control.set_health(addr, true);
        for w in &mut workers {
            w.poll();
            assert!(w.select(GroupId(0), b"call").is_some());
        }
    }

    #[test]
    fn cps_counters_survive_a_reload_of_the_same_group() {
        let capped = |prefix: &str| {
            RouteTable::build(
                vec![RouteGroup::new("a", Action::Reject { code: 403 }).with_cps_cap(2)],
                &[(
                    PrefixKey::from_digits(prefix.as_bytes()).unwrap(),
                    GroupId(0),
                )],
                HealthSettings::default(),
            )
            .unwrap()
        };
        let (mut control, mut workers) = RouteControl::new(capped("1"), 1);
        let w = &mut workers[0];
        let now = Duration::from_millis(5_300);
        assert_eq!(w.admit(GroupId(0), now), Admission::Admitted);
        assert_eq!(w.admit(GroupId(0), now), Admission::Admitted);
        control.install(capped("2"));
        w.poll();
        assert!(matches!(
            w.admit(GroupId(0), now),
            Admission::OverCap { .. }
        ));
        assert_eq!(
            w.admit(GroupId(0), now + Duration::from_secs(1)),
            Admission::Admitted
        );
    }
}
