//! Snapshot → Prometheus metrics (`itersnap serve --metrics`): what a
//! fleet asks of each machine, counted from one snapshot of every thread,
//! its files, sockets and mapped files, in the OpenMetrics text format
//! (prometheus-client's encoder). Labels are bounded: states, file types,
//! protocols and socket states are small fixed sets; the series named by
//! a port or a COMM are capped at `NAMED_SERIES_MAX` per metric, the rest
//! counted in an `_overflow` series (docs/fleet.md).

use std::collections::BTreeMap;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::snapshot::Snapshot;
use crate::text::printable;

/// Series per metric labelled with a port or a COMM; past it, the
/// metric's `_overflow` gauge counts what was left out.
pub const NAMED_SERIES_MAX: usize = 200;

/// The server's own counts since it started, beside the snapshot's.
#[derive(Debug, Default, Clone)]
pub struct ServerCounts {
    pub queries: u64,
    pub scrapes: u64,
    pub records_dropped: u64,
    /// Each trigger armed from --triggers, since it was armed.
    pub triggers: Vec<TriggerCounts>,
}

/// One armed trigger's account.
#[derive(Debug, Default, Clone)]
pub struct TriggerCounts {
    /// Where it is configured: FILE:LINE.
    pub trigger: String,
    pub snapshots: u64,
    /// Events its guards skipped: within --min-gap, during a walk.
    pub skipped_gap: u64,
    pub skipped_busy: u64,
    /// Events the kernel did not run its program for.
    pub missed: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabel {
    trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SkippedLabels {
    trigger: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SocketLabels {
    protocol: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    protocol: String,
    port: String,
    comm: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommLabel {
    comm: String,
}

/// What one snapshot counts, before it is encoded.
#[derive(Default)]
struct Counted {
    tasks_by_state: BTreeMap<char, i64>,
    processes: i64,
    zombies: i64,
    files_by_type: BTreeMap<&'static str, i64>,
    sockets: BTreeMap<(&'static str, String), i64>,
    /// (protocol, port, comm) → listening fds.
    listeners: BTreeMap<(&'static str, u16, String), i64>,
    /// COMM → its threads in uninterruptible sleep.
    uninterruptible: BTreeMap<String, i64>,
    /// COMM → its processes that map a deleted file.
    mapping_deleted: BTreeMap<String, i64>,
}

fn count(snap: &Snapshot) -> Counted {
    let mut c = Counted::default();
    for row in &snap.rows {
        let task = &row.task;
        *c.tasks_by_state.entry(task.state).or_default() += 1;
        let comm = || printable(&task.comm).into_owned();
        if task.state == 'D' {
            *c.uninterruptible.entry(comm()).or_default() += 1;
        }
        // A process's own row is its leader's: the one with its files.
        if task.tid != task.pid {
            continue;
        }
        c.processes += 1;
        if task.state == 'Z' {
            c.zombies += 1;
        }
        for file in &row.files {
            *c.files_by_type.entry(file.kind).or_default() += 1;
            let Some(sock) = file.socket.as_deref() else {
                continue;
            };
            let protocol = sock.protocol_class();
            let state = sock.state_name();
            let listening = state == "LISTEN" || (state == "UNCONNECTED" && sock.local_port != 0);
            if listening && matches!(protocol, "tcp" | "udp" | "udplite" | "sctp") {
                *c.listeners
                    .entry((protocol, sock.local_port, comm()))
                    .or_default() += 1;
            }
            *c.sockets.entry((protocol, state)).or_default() += 1;
        }
        let maps = row.process.as_ref().and_then(|p| p.maps.as_ref());
        if maps.is_some_and(|m| m.iter().any(|f| f.deleted)) {
            *c.mapping_deleted.entry(comm()).or_default() += 1;
        }
    }
    c
}

/// Registers `family` and fills it from `series`, at most
/// NAMED_SERIES_MAX of them (the largest), the rest summed into
/// `<name>_overflow`.
fn bounded<L, K>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    series: BTreeMap<K, i64>,
    label: impl Fn(K) -> L,
) where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
    K: Ord,
{
    let family = Family::<L, Gauge>::default();
    let overflow = Gauge::<i64>::default();
    let mut all: Vec<(K, i64)> = series.into_iter().collect();
    // Largest first; equal ones in key order, so that a scrape is stable.
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (i, (key, n)) in all.into_iter().enumerate() {
        if i < NAMED_SERIES_MAX {
            family.get_or_create(&label(key)).set(n);
        } else {
            overflow.inc_by(n);
        }
    }
    registry.register(name, help, family);
    registry.register(
        format!("{name}_overflow"),
        format!("What {name} left out past its {NAMED_SERIES_MAX} largest series"),
        overflow,
    );
}

/// The metrics of one snapshot, and of the server so far, as OpenMetrics
/// text.
pub fn render(snap: &Snapshot, server: &ServerCounts) -> String {
    let mut registry = Registry::with_prefix("itersnap");
    let named = register_fixed_sets(&mut registry, count(snap));
    register_named(&mut registry, named);
    register_own(&mut registry, snap, server);
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}

/// The gauge of a count.
fn gauge(n: i64) -> Gauge {
    let g = Gauge::<i64>::default();
    g.set(n);
    g
}

/// The series whose labels are small fixed sets; returns the counts left
/// (those labelled with a port or a COMM).
fn register_fixed_sets(registry: &mut Registry, mut c: Counted) -> Counted {
    let tasks = Family::<StateLabel, Gauge>::default();
    for (state, n) in std::mem::take(&mut c.tasks_by_state) {
        tasks
            .get_or_create(&StateLabel {
                state: state.to_string(),
            })
            .set(n);
    }
    registry.register(
        "tasks",
        "Tasks (threads) by state, as ps's STAT letter",
        tasks,
    );
    registry.register("processes", "Processes", gauge(c.processes));
    registry.register(
        "zombie_processes",
        "Processes that have exited and not been reaped",
        gauge(c.zombies),
    );
    let files = Family::<TypeLabel, Gauge>::default();
    for (kind, n) in std::mem::take(&mut c.files_by_type) {
        files
            .get_or_create(&TypeLabel {
                r#type: kind.into(),
            })
            .set(n);
    }
    registry.register("open_files", "Open fds by type, as lsof's TYPE", files);
    let sockets = Family::<SocketLabels, Gauge>::default();
    for ((protocol, state), n) in std::mem::take(&mut c.sockets) {
        sockets
            .get_or_create(&SocketLabels {
                protocol: protocol.into(),
                state,
            })
            .set(n);
    }
    registry.register(
        "sockets",
        "Socket fds by protocol and state, in every network namespace",
        sockets,
    );
    c
}

/// The series labelled with a port or a COMM, each bounded.
fn register_named(registry: &mut Registry, c: Counted) {
    bounded(
        registry,
        "listening_sockets",
        "Fds of listening sockets (TCP LISTEN, bound unconnected UDP) by protocol, port and process name",
        c.listeners,
        |(protocol, port, comm)| ListenerLabels {
            protocol: protocol.into(),
            port: port.to_string(),
            comm,
        },
    );
    bounded(
        registry,
        "uninterruptible_tasks",
        "Threads in uninterruptible sleep (D) by process name",
        c.uninterruptible,
        |comm| CommLabel { comm },
    );
    bounded(
        registry,
        "processes_mapping_deleted_files",
        "Processes that map a file since deleted (an upgraded library still in use) by name",
        c.mapping_deleted,
        |comm| CommLabel { comm },
    );
}

/// The walk's own account and the server's counts.
fn register_own(registry: &mut Registry, snap: &Snapshot, server: &ServerCounts) {
    let walk = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    walk.set(snap.info.walk_ns as f64 / 1e9);
    registry.register(
        "walk_seconds",
        "How long this scrape's walk of the kernel took",
        walk,
    );
    registry.register(
        "snapshot_complete",
        "1 when this scrape's snapshot lost no record",
        gauge(i64::from(snap.complete())),
    );
    let counter = |n: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(n);
        c
    };
    registry.register(
        "records_dropped",
        "Records lost by the server's snapshots since it started",
        counter(server.records_dropped),
    );
    registry.register(
        "queries",
        "One-shot queries the server answered since it started",
        counter(server.queries),
    );
    registry.register(
        "scrapes",
        "Scrapes the server answered since it started",
        counter(server.scrapes),
    );
    let fired = Family::<TriggerLabel, Counter>::default();
    let skipped = Family::<SkippedLabels, Counter>::default();
    for t in &server.triggers {
        let label = || t.trigger.clone();
        fired
            .get_or_create(&TriggerLabel { trigger: label() })
            .inc_by(t.snapshots);
        for (reason, n) in [
            ("min_gap", t.skipped_gap),
            ("busy", t.skipped_busy),
            ("missed", t.missed),
        ] {
            skipped
                .get_or_create(&SkippedLabels {
                    trigger: label(),
                    reason: reason.into(),
                })
                .inc_by(n);
        }
    }
    registry.register(
        "trigger_snapshots",
        "Snapshots each trigger of --triggers (FILE:LINE) took since it was armed",
        fired,
    );
    registry.register(
        "trigger_skipped",
        "Events each trigger let pass: within --min-gap, during a walk (busy), or not run by the kernel (missed)",
        skipped,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_series_are_capped_and_the_rest_summed() {
        let mut registry = Registry::default();
        let series: BTreeMap<String, i64> = (0..NAMED_SERIES_MAX + 50)
            .map(|i| (format!("c{i:03}"), 1 + (i % 3) as i64))
            .collect();
        let total: i64 = series.values().sum();
        bounded(&mut registry, "x", "test", series, |comm| CommLabel {
            comm,
        });
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        let named: Vec<i64> = text
            .lines()
            .filter(|l| l.starts_with("x{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        let overflow: i64 = text
            .lines()
            .find_map(|l| l.strip_prefix("x_overflow "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(named.len(), NAMED_SERIES_MAX);
        // The largest are kept: the 50 left out are all of the smallest (1).
        assert_eq!(overflow, 50);
        assert_eq!(named.iter().sum::<i64>() + overflow, total);
    }
}
