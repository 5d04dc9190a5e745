//! One run of itersnap: check the kernel, arm the backend, and turn every
//! snapshot it delivers into output until the count is reached or the user
//! stops it (Ctrl-C, SIGTERM, SIGHUP, a closed stdout).

use std::io::{self, BufWriter, Write};
use std::os::fd::AsFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::backend::BackendChoice;
use crate::backend::{self, TriggerOptions, TriggerSpec, WalkOptions};
use crate::diff::{self, SortKey};
use crate::features::{self, BtfNames};
use crate::kinds::holds::Target;
use crate::kinds::sockets::SocketFilter;
use crate::ksyms::Ksyms;
use crate::output::Printer;
use crate::output::{Column, OutputFormat};
use crate::snapshot;
use crate::text::human_duration;

const DEFAULT_MIN_GAP: Duration = Duration::from_millis(100);

thread_local! {
    /// Where this thread's messages go instead of stderr: a server's
    /// answer (src/serve.rs) carries them to its client.
    static DIAG: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
}

/// One line of the run's messages: to stderr, or to the answer being
/// built on this thread.
pub fn say(line: std::fmt::Arguments<'_>) {
    DIAG.with(|d| match d.borrow_mut().as_mut() {
        Some(buf) => {
            let _ = writeln!(buf, "{line}");
        }
        None => eprintln!("{line}"),
    });
}

macro_rules! say {
    ($($arg:tt)*) => { $crate::run::say(format_args!($($arg)*)) };
}

/// Runs `f` with this thread's messages collected instead of written:
/// (its result, the lines).
pub fn collecting_messages<R>(f: impl FnOnce() -> R) -> (R, Vec<u8>) {
    DIAG.with(|d| *d.borrow_mut() = Some(Vec::new()));
    let r = f();
    let lines = DIAG.with(|d| d.borrow_mut().take()).unwrap_or_default();
    (r, lines)
}

/// The messages collected on this thread so far (`collecting_messages`),
/// taken: a server sends them ahead of the output that follows them.
pub fn take_messages() -> Vec<u8> {
    DIAG.with(|d| d.borrow_mut().as_mut().map(std::mem::take))
        .unwrap_or_default()
}

/// How long one wait for events lasts before the stop flag is looked at.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// One run as the command line asks for it, in the types below the
/// command line (req.rs builds it; nothing here knows clap).
#[derive(Debug, Clone)]
pub struct Request {
    pub trigger: TriggerSpec,
    /// Only tasks with one of these exact names (a COMM filter).
    pub comms: Vec<Vec<u8>>,
    /// Only these processes (--pid).
    pub pids: Vec<u32>,
    /// --user: (as given, uid), any of them.
    pub users: Vec<(String, u32)>,
    /// --task-state: a mask of indices in task::STATE_LETTERS; 0: any.
    pub states: u32,
    /// --cgroup: (as given, its id).
    pub cgroup: Option<(String, u64)>,
    pub threads: bool,
    pub files: bool,
    pub stacks: bool,
    /// --activity: the syscall each task is in (and its WCHAN).
    pub activity: bool,
    /// --ustacks: each task's user-space stack.
    pub ustacks: bool,
    /// --folded: folded stacks to stdout at the end, instead of snapshots.
    pub folded: bool,
    /// --flamegraph FILE: the same as an SVG.
    pub flamegraph: Option<std::path::PathBuf>,
    /// --maps.
    pub maps: bool,
    /// --port, --proto, --state.
    pub sockets: SocketFilter,
    /// --file, --mount: only processes holding one of them.
    pub targets: Vec<Target>,
    pub tree: bool,
    /// --columns; None for the default set.
    pub columns: Option<Vec<Column>>,
    pub output: OutputFormat,
    pub verbose: bool,
    pub diff: bool,
    pub sort: SortKey,
    pub caller_pid: Option<u32>,
    pub caller_comm: Option<Vec<u8>>,
    pub count: Option<u64>,
    pub min_gap: Option<Duration>,
    pub event_budget: Option<Duration>,
    pub backend: BackendChoice,
    pub ringbuf_size: Option<u32>,
    /// --allow-incomplete: a snapshot that lost records does not change the
    /// exit status.
    pub allow_incomplete: bool,
}

impl Request {
    /// The filters that select tasks, as the command line gave them; empty
    /// when every task is selected.
    /// Kernel stacks are read for --stacks, and for WCHAN (--activity, or
    /// its column).
    pub fn reads_stacks(&self) -> bool {
        self.stacks || self.reads_activity() || self.has_column(Column::Wchan)
    }

    /// What each task is doing is read for --activity, or its column.
    pub fn reads_activity(&self) -> bool {
        self.activity || self.has_column(Column::Syscall)
    }

    /// --folded or --flamegraph.
    pub fn folds(&self) -> bool {
        self.folded || self.flamegraph.is_some()
    }

    fn has_column(&self, col: Column) -> bool {
        self.columns.as_ref().is_some_and(|c| c.contains(&col))
    }

    pub fn filters(&self) -> Vec<String> {
        let mut filters = Vec::new();
        if !self.comms.is_empty() {
            let names: Vec<String> = self
                .comms
                .iter()
                .map(|c| crate::text::printable(c).into_owned())
                .collect();
            let named = if self.threads {
                "with a thread named"
            } else {
                "named"
            };
            filters.push(format!("{named} {}", names.join(" or ")));
        }
        if !self.pids.is_empty() {
            let pids: Vec<String> = self.pids.iter().map(u32::to_string).collect();
            filters.push(format!("with pid {}", pids.join(" or ")));
        }
        if !self.targets.is_empty() {
            let names: Vec<String> = self
                .targets
                .iter()
                .map(|t| crate::text::printable(&t.name).into_owned())
                .collect();
            filters.push(format!("holding {}", names.join(" or ")));
        }
        if !self.users.is_empty() {
            let users: Vec<&str> = self.users.iter().map(|(name, _)| name.as_str()).collect();
            filters.push(format!("of user {}", users.join(" or ")));
        }
        if let Some((path, _)) = &self.cgroup {
            filters.push(format!("in cgroup {path}"));
        }
        if self.states != 0 {
            let letters: String = crate::kinds::task::STATE_LETTERS
                .iter()
                .enumerate()
                .filter(|(i, _)| self.states & (1 << i) != 0)
                .map(|(_, &l)| l as char)
                .collect();
            filters.push(format!("with a task in state {letters}"));
        }
        if self.sockets.is_on() {
            filters.push("holding a socket that --port, --proto and --state select".into());
        }
        filters
    }
}

/// How a run went, for its exit status (docs/usage.md, "Errors and exit
/// status"): how many snapshots it wrote, how many held a task, how many
/// lost records.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub snapshots: u64,
    pub matched: u64,
    pub incomplete: u64,
}

impl Outcome {
    /// What to say when a snapshot lost records and the user did not
    /// accept it (exit 3).
    pub fn incomplete_line(&self, req: &Request) -> Option<String> {
        (self.incomplete > 0 && !req.allow_incomplete).then(|| {
            format!(
                "{} of {} incomplete: records were lost (see problems in the output; --allow-incomplete accepts it)",
                self.incomplete,
                plural(self.snapshots, "snapshot"),
            )
        })
    }

    /// What to say when the filters matched nothing in any snapshot (exit
    /// 1, as pgrep and lsof), with what may have been meant.
    pub fn no_match_line(&self, req: &Request) -> Option<String> {
        if self.snapshots == 0 || self.matched > 0 {
            return None;
        }
        let filters = req.filters();
        let what = if filters.is_empty() {
            "no task".to_string()
        } else {
            format!("no process {}", filters.join(" and "))
        };
        let snapshots = match self.snapshots {
            1 => "the snapshot".to_string(),
            n => format!("any of {n} snapshots"),
        };
        let mut hints = String::new();
        // As pgrep warns: only a kernel thread's name is that long.
        if req.comms.iter().any(|c| c.len() > 15) {
            hints.push_str(
                " (a process's name is at most 15 bytes; only kernel threads have longer ones)",
            );
        }
        for comm in req.comms.iter().filter_map(|c| std::str::from_utf8(c).ok()) {
            // `itersnap chek`: a COMM a typo away from a subcommand.
            if let Some(sub) = ["check", "completions"]
                .into_iter()
                .find(|sub| crate::text::edit_distance(comm, sub) <= 2)
            {
                hints.push_str(&if comm == sub {
                    // `itersnap nginx check`: a subcommand after a COMM.
                    format!("; `{sub}` is a subcommand: `itersnap {sub}`, alone")
                } else {
                    format!("; did you mean `itersnap {sub}`?")
                });
            }
            // `itersnap /var/log/x.log`, as `lsof FILE` is used.
            if comm.contains('/') && std::path::Path::new(comm).exists() {
                hints.push_str(&format!(
                    "; to see who holds a file: itersnap --file {comm}"
                ));
            }
        }
        Some(format!("{what} in {snapshots}{hints}"))
    }

    /// The run's exit status (docs/usage.md, "Errors and exit status"): 3
    /// when a snapshot lost records, unless --allow-incomplete; 1 when the
    /// filters matched nothing; else 0. With the line that says why.
    pub fn exit_status(&self, req: &Request) -> (u8, Option<String>) {
        if let Some(line) = self.incomplete_line(req) {
            return (3, Some(line));
        }
        if let Some(line) = self.no_match_line(req) {
            return (1, Some(line));
        }
        (0, None)
    }

    fn count(&mut self, snap: &snapshot::Snapshot) {
        self.snapshots += 1;
        if !snap.rows.is_empty() {
            self.matched += 1;
        }
        if !snap.complete() {
            self.incomplete += 1;
        }
    }
}

/// The syscalls that return a new fd for a path: with --file or --mount,
/// `--on-syscall` on one of them fires only for the targets' opens.
pub const OPEN_SYSCALLS: [&str; 5] = ["open", "openat", "openat2", "creat", "open_by_handle_at"];

/// What to walk and what triggers it, from the command line, checked
/// against this kernel (tracepoints, uprobe targets).
fn options(req: &Request, btf: &BtfNames) -> Result<(WalkOptions, TriggerOptions)> {
    let mut walk = WalkOptions {
        comms: req.comms.clone(),
        pids: req.pids.clone(),
        uids: req.users.iter().map(|&(_, uid)| uid).collect(),
        states: req.states,
        cgroup: req.cgroup.as_ref().map(|&(_, id)| id),
        threads: req.threads,
        files: req.files,
        stacks: req.reads_stacks(),
        activity: req.reads_activity(),
        // Flame graphs take user stacks where the kernel can.
        ustacks: req.ustacks || (req.folds() && features::ustacks_unsupported(btf).is_none()),
        sockets: req.sockets.clone(),
        cmdlines: features::cmdlines_unsupported(btf).is_none(),
        // Flame graphs show stacks, not command lines.
        skip_cmdline_text: req.folds(),
        maps: req.maps,
        targets: req.targets.clone(),
    };
    if let Some(why) = req
        .reads_activity()
        .then(|| features::activity_unsupported(btf))
        .flatten()
    {
        anyhow::bail!("{why}");
    }
    if let Some(why) = req.maps.then(|| features::maps_unsupported(btf)).flatten() {
        anyhow::bail!("{why}");
    }
    if let Some(why) = req
        .ustacks
        .then(|| features::ustacks_unsupported(btf))
        .flatten()
    {
        anyhow::bail!("{why}");
    }
    // --file and --mount look for mappings too (fuser's `m`), where the
    // kernel can walk them.
    if !req.targets.is_empty() {
        match features::maps_unsupported(btf) {
            None => walk.maps = true,
            Some(_) => say!(
                "itersnap: mappings are not searched (fuser's m): this kernel has no task_vma iterator (Linux 5.12+)"
            ),
        }
    }
    let mut spec = req.trigger.clone();
    if let TriggerSpec::Uprobe { path, .. } = &mut spec {
        *path = features::resolve_program(path, req.caller_pid);
    }
    let mut tracefs = false;
    match &spec {
        TriggerSpec::Tracepoint { category, name } => {
            tracefs = features::check_tracepoint(btf, category, name)?
                == features::TracepointKind::Tracefs;
        }
        TriggerSpec::Uprobe { path, symbol } => features::check_uprobe(path, symbol)?,
        _ => {}
    }
    // An interval is its own rate; event triggers get a gap that keeps a hot
    // syscall from walking every task thousands of times a second.
    let min_gap = req.min_gap.unwrap_or(match spec {
        TriggerSpec::Interval { .. } => Duration::ZERO,
        _ => DEFAULT_MIN_GAP,
    });
    let spec_is_oneshot = spec.is_oneshot();
    // "The moment someone opens the key file": the open's return, and only
    // for the targets' fds (bpf/trigger.bpf.h's on_syscall_exit).
    let on_open_of_targets = !req.targets.is_empty()
        && matches!(&spec, TriggerSpec::Syscall { name, .. } if OPEN_SYSCALLS.contains(&name.as_str()));
    let event_budget = req.event_budget.unwrap_or(backend::DEFAULT_EVENT_BUDGET);
    let event = features::event_setup(&spec, tracefs);
    let trig = TriggerOptions {
        count: if spec.is_oneshot() {
            Some(1)
        } else {
            req.count
        },
        min_gap,
        spec,
        caller_pid: req.caller_pid,
        caller_comm: req.caller_comm.clone(),
        ringbuf_size: req
            .ringbuf_size
            .unwrap_or_else(|| backend::default_ringbuf_size(event_budget, spec_is_oneshot)),
        event_budget,
        on_open_of_targets,
        tracefs,
        event,
    };
    Ok((walk, trig))
}

/// The machine's memory as /proc/meminfo's MemTotal gives it (KiB), for ps's
/// %MEM; 0 if unknown.
fn mem_total_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The inode of itersnap's own network namespace (0 if unknown).
fn own_netns() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/net").map_or(0, |m| m.ino())
}

/// Loads and attaches the backend, and says so on stderr.
fn arm(
    req: &Request,
    walk: &WalkOptions,
    trig: &TriggerOptions,
    btf: &BtfNames,
) -> Result<Box<dyn backend::Backend>> {
    let (backend, reason) = open_backend(req, walk, trig, btf)?;
    if req.verbose {
        describe_backend(req, backend.as_ref(), &reason);
    }
    if !trig.spec.is_oneshot() {
        say!(
            "itersnap: armed: {}, {} backend; Ctrl-C to stop",
            describe_spec(trig, backend.name()),
            backend.name()
        );
    }
    Ok(backend)
}

/// Loads and attaches the backend the request asks for: (it, why it).
pub fn open_backend(
    req: &Request,
    walk: &WalkOptions,
    trig: &TriggerOptions,
    btf: &BtfNames,
) -> Result<(Box<dyn backend::Backend>, String)> {
    backend::open(req.backend, walk, trig, btf).map_err(explain_refusal)
}

/// --verbose's lines on the backend: which, why, what it loaded.
pub fn describe_backend(req: &Request, backend: &dyn backend::Backend, reason: &str) {
    say!(
        "itersnap: backend {} ({reason}); paths {}",
        backend.name(),
        backend.paths()
    );
    if let Some(report) = backend.load_report() {
        say!("itersnap: {}", report.describe());
    }
    for t in &req.targets {
        say!("itersnap: {}", t.describe());
    }
}

/// A one-shot taken with a backend loaded before (a server's, which keeps
/// it for the next): the snapshot written to `out` as `run` writes it, and
/// returned for the caller to free when it suits it (a server: once its
/// client has the answer; a full snapshot takes milliseconds to free).
pub fn answer_oneshot(
    req: &Request,
    prepared: &Prepared,
    backend: &mut dyn backend::Backend,
    color: bool,
    out: &mut dyn Write,
) -> Result<(Outcome, snapshot::Snapshot)> {
    let mut printer = printer(req)?;
    printer.color = color;
    let snap = take_oneshot(req, prepared, backend)?;
    let mut outcome = Outcome::default();
    outcome.count(&snap);
    write_snapshot(out, &printer, &snap, None, req)?;
    printer.finish(out, 1)?;
    Ok((outcome, snap))
}

/// One more snapshot from a backend loaded for a one-shot.
pub fn take_oneshot(
    req: &Request,
    prepared: &Prepared,
    backend: &mut dyn backend::Backend,
) -> Result<snapshot::Snapshot> {
    let ctx = prepared.context(req, backend.name(), None);
    backend.rewind();
    let raw = backend
        .poll(POLL_INTERVAL)?
        .into_iter()
        .next()
        .context("the kernel walk produced no snapshot")?;
    Ok(snapshot::assemble(raw, &ctx, (0, 0, 0)))
}

/// A trigger's run inside another loop (a server's, whose triggers come
/// from its config): armed once, then polled without waiting; its
/// snapshots are written as `run` writes them.
pub struct Watch {
    pub req: Request,
    prepared: Prepared,
    backend: Box<dyn backend::Backend>,
    watched: Watched,
    stream: Stream,
}

impl Watch {
    pub fn arm(req: Request, machine: &mut Machine) -> Result<Watch> {
        let prepared = Prepared::new(&req, machine)?;
        let watched = Watched::open(&prepared.trig)?;
        let printer = printer(&req)?;
        let (backend, _) = open_backend(&req, &prepared.walk, &prepared.trig, &machine.btf)?;
        Ok(Watch {
            req,
            prepared,
            backend,
            watched,
            stream: Stream::new(printer),
        })
    }

    /// (snapshots taken, skipped within --min-gap, skipped during a walk,
    /// missed by the kernel, records dropped) so far.
    pub fn counts(&self) -> (u64, u64, u64, u64, u64) {
        let (gap, busy) = self.backend.skipped();
        let missed = self.stream.tally.missed_total.max(self.backend.missed());
        (self.stream.taken, gap, busy, missed, self.stream.dropped)
    }

    /// What it watches for, as `armed:` says it.
    pub fn describe(&self) -> String {
        describe_spec(&self.prepared.trig, self.backend.name())
    }

    /// Writes the snapshots completed since the last call to `out`, each
    /// flushed; false once the run is over (its --count reached, or the
    /// process it waits on gone).
    pub fn poll(&mut self, out: &mut dyn Write) -> Result<bool> {
        let wanted = self.prepared.trig.count.unwrap_or(u64::MAX);
        let raws = self.backend.poll(Duration::ZERO)?;
        if !raws.is_empty() {
            let ctx = self.prepared.context(&self.req, self.backend.name(), None);
            for raw in raws {
                if self.stream.taken >= wanted {
                    break;
                }
                self.stream
                    .write(raw, self.backend.missed(), &ctx, &self.req, out)?;
            }
        }
        Ok(self.stream.taken < wanted && self.watched.exited().is_none())
    }
}

/// What a run reads of the machine once, not per snapshot: the kernel's
/// BTF names, its memory (ps's %MEM), the reader's network namespace
/// (lsof's socket names) and, when stacks need them, the kernel's symbols.
/// A server keeps one for all its queries.
pub struct Machine {
    pub btf: BtfNames,
    mem_total_kib: u64,
    reader_netns: u64,
    /// The kernel's symbols and the /proc/modules they were read with.
    ksyms: Option<(Rc<Ksyms>, String)>,
}

impl Machine {
    pub fn read(btf: BtfNames) -> Machine {
        Machine {
            btf,
            mem_total_kib: mem_total_kib(),
            reader_netns: own_netns(),
            ksyms: None,
        }
    }

    /// The kernel's symbols, read once (~75 ms for 120,000 of them) and
    /// again only when a module has come or gone since.
    fn ksyms(&mut self) -> Result<Rc<Ksyms>> {
        let modules = std::fs::read_to_string("/proc/modules").unwrap_or_default();
        match &self.ksyms {
            Some((ksyms, read_with)) if *read_with == modules => Ok(Rc::clone(ksyms)),
            _ => {
                let ksyms = Rc::new(Ksyms::load_with(&modules)?);
                self.ksyms = Some((Rc::clone(&ksyms), modules));
                Ok(ksyms)
            }
        }
    }

    /// --stacks needs symbols; WCHAN alone (--activity, its column) goes
    /// without, saying why.
    fn ksyms_for(&mut self, req: &Request) -> Result<Option<Rc<Ksyms>>> {
        if req.stacks {
            self.ksyms().map(Some)
        } else if req.reads_stacks() {
            Ok(self
                .ksyms()
                .map_err(|e| say!("itersnap: WCHAN is not shown: {e:#}"))
                .ok())
        } else {
            Ok(None)
        }
    }
}

/// A request's walk and trigger, checked against this kernel, with what
/// its snapshots are assembled with: what `answer_oneshot` takes.
pub struct Prepared {
    pub walk: WalkOptions,
    pub trig: TriggerOptions,
    ksyms: Option<Rc<Ksyms>>,
    mem_total_kib: u64,
    reader_netns: u64,
}

impl Prepared {
    pub fn new(req: &Request, machine: &mut Machine) -> Result<Prepared> {
        let (walk, trig) = options(req, &machine.btf)?;
        Ok(Prepared {
            walk,
            trig,
            ksyms: machine.ksyms_for(req)?,
            mem_total_kib: machine.mem_total_kib,
            reader_netns: machine.reader_netns,
        })
    }

    /// What assembly needs to know of the run: the request's filters and
    /// views, the backend, the clocks, the machine.
    fn context<'a>(
        &'a self,
        req: &'a Request,
        backend_name: &'static str,
        usyms: Option<&'a std::cell::RefCell<crate::kinds::ustacks::USyms>>,
    ) -> snapshot::Context<'a> {
        let (walk, trig) = (&self.walk, &self.trig);
        snapshot::Context {
            backend: backend_name,
            spec: &trig.spec,
            per_thread: req.threads,
            files: req.files,
            ksyms: self.ksyms.as_deref(),
            wall_offset_ns: backend::realtime_ns().saturating_sub(backend::monotonic_ns()),
            boot_wall_ns: backend::realtime_ns().saturating_sub(backend::boottime_ns()),
            mem_total_kib: self.mem_total_kib,
            event_budget_ns: trig.event_budget.as_nanos().min(u64::MAX as u128) as u64,
            socket_filter: req.sockets.is_on(),
            targets: &req.targets,
            states: req.states,
            stacks: req.stacks,
            thread_names: if req.threads { &req.comms } else { &[] },
            reader_netns: self.reader_netns,
            cmdlines: walk.cmdlines,
            maps: walk.maps,
            user_names: true,
            usyms,
            event_names: &trig.event.names,
        }
    }
}

/// What every snapshot of an armed run goes through, from the backend to
/// the output: the guards' and the kernel's skips accounted, assembled,
/// written (or, with --diff, what changed since the one before).
struct Stream {
    printer: Printer,
    tally: Tally,
    outcome: Outcome,
    taken: u64,
    dropped: u64,
    /// --diff: the snapshot before.
    previous: Option<snapshot::Snapshot>,
}

impl Stream {
    fn new(printer: Printer) -> Stream {
        Stream {
            printer,
            tally: Tally::default(),
            outcome: Outcome::default(),
            taken: 0,
            dropped: 0,
            previous: None,
        }
    }

    fn write(
        &mut self,
        raw: backend::RawSnapshot,
        missed_now: u64,
        ctx: &snapshot::Context<'_>,
        req: &Request,
        out: &mut dyn Write,
    ) -> Result<()> {
        let skipped = self.tally.account(&raw, missed_now, ctx.spec);
        let snap = snapshot::assemble(raw, ctx, skipped);
        self.outcome.count(&snap);
        self.dropped += snap.counts.dropped;
        write_snapshot(out, &self.printer, &snap, self.previous.as_ref(), req)?;
        if req.diff {
            self.previous = Some(snap);
        } else if ctx.spec.is_oneshot() {
            // The process ends next: freeing a 100,000-file snapshot
            // allocation by allocation would only delay the exit.
            std::mem::forget(snap);
        }
        self.taken += 1;
        Ok(())
    }
}

pub fn run(req: &Request) -> Result<Outcome> {
    let started = std::time::Instant::now();
    features::require_runnable()?;
    let mut machine = Machine::read(BtfNames::load()?);
    let prepared = Prepared::new(req, &mut machine)?;
    let (walk, trig) = (&prepared.walk, &prepared.trig);
    let watched = Watched::open(trig)?;

    // Ctrl-C, SIGTERM and SIGHUP end the loop; everything is released on return.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the signal handler")?;

    // --flamegraph's file is created before anything is loaded.
    let mut stream = Stream::new(printer(req)?);
    let before_arm = started.elapsed();
    let mut backend = arm(req, walk, trig, &machine.btf)?;
    let armed = started.elapsed();
    let oneshot = trig.spec.is_oneshot();

    // A test hook (tests/errors.rs): a panic once everything is loaded and
    // attached must still leave nothing behind in the kernel.
    if std::env::var_os("ITERSNAP_TEST_PANIC").is_some() {
        panic!("ITERSNAP_TEST_PANIC is set");
    }

    let mut out = snapshot_sink();
    let usyms = walk.ustacks.then(std::cell::RefCell::default);
    let ctx = prepared.context(req, backend.name(), usyms.as_ref());

    let mut last_snapshot: Option<std::time::Instant> = None;
    let mut status = StatusLine::new();
    let wanted = trig.count.unwrap_or(u64::MAX);
    let result = (|| -> Result<()> {
        while stream.taken < wanted && !stop.load(Ordering::SeqCst) {
            for raw in backend.poll(POLL_INTERVAL)? {
                status.clear();
                stream.write(raw, backend.missed(), &ctx, req, &mut out)?;
                if stream.taken == 1 && req.verbose {
                    phases(before_arm, armed, backend.as_ref(), started.elapsed());
                }
                last_snapshot = Some(std::time::Instant::now());
                if stream.taken >= wanted {
                    break;
                }
            }
            if oneshot && stream.taken == 0 {
                anyhow::bail!("the kernel walk produced no snapshot");
            }
            // `itersnap … | head -1`: nobody reads any more; end now, not
            // at the next event.
            if stdout_closed() {
                return Err(io::Error::from(io::ErrorKind::BrokenPipe).into());
            }
            if let Some((what, pid)) = watched.exited() {
                status.clear();
                say!("itersnap: {what} {pid} has exited: no more events to wait for");
                break;
            }
            if !oneshot {
                status.show_counts(
                    stream.taken,
                    stream.dropped,
                    backend.skipped(),
                    last_snapshot,
                );
            }
        }
        Ok(())
    })();
    status.clear();
    let result = result.and_then(|()| stream.printer.finish(&mut out, stream.taken));

    if !oneshot {
        print_summary(&stream, backend.as_ref(), req.verbose);
    }
    result.map(|()| stream.outcome)
}

/// The processes a trigger waits on (--signal-target, --caller-pid): each
/// must exist when the run starts, and the run ends when one exits, as
/// `tail --pid` does. Watched through pidfds (Linux 5.3+), which a reused
/// pid cannot fool.
struct Watched(Vec<(&'static str, u32, std::os::fd::OwnedFd)>);

impl Watched {
    fn open(trig: &TriggerOptions) -> Result<Watched> {
        use std::os::fd::FromRawFd;
        let target = match trig.spec {
            TriggerSpec::Signal { target_pid, .. } => target_pid,
            _ => None,
        };
        let mut watched = Vec::new();
        for (what, pid) in [
            ("--signal-target", target),
            ("--caller-pid", trig.caller_pid),
        ] {
            let Some(pid) = pid else { continue };
            // /proc answers for thread ids too: its Tgid tells them apart.
            // Bytes, not text: the Name line is the task's name, any bytes.
            let status = std::fs::read(format!("/proc/{pid}/status"));
            let tgid = status.ok().and_then(|s| {
                String::from_utf8_lossy(&s)
                    .lines()
                    .find_map(|l| l.strip_prefix("Tgid:"))
                    .and_then(|t| t.trim().parse::<u32>().ok())
            });
            match tgid {
                None => anyhow::bail!("{what} {pid}: no such process"),
                Some(tgid) if tgid != pid => {
                    anyhow::bail!("{what} {pid} is a thread, not a process: its process is {tgid}")
                }
                Some(_) => {}
            }
            // SAFETY: pidfd_open takes a pid and flags and returns a new
            // fd or -1; nothing is borrowed.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
            if fd < 0 {
                // Gone since, or before 5.3 (no pidfds): not watched.
                continue;
            }
            // SAFETY: a new fd of our own, owned from here on.
            watched.push((what, pid, unsafe {
                std::os::fd::OwnedFd::from_raw_fd(fd as i32)
            }));
        }
        Ok(Watched(watched))
    }

    /// The first watched process that has exited (its pidfd reads ready).
    fn exited(&self) -> Option<(&'static str, u32)> {
        use std::os::fd::AsRawFd;
        self.0.iter().find_map(|(what, pid, fd)| {
            let mut p = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, no timeout.
            let ready = unsafe { libc::poll(&mut p, 1, 0) } == 1;
            ready.then_some((*what, *pid))
        })
    }
}

/// Where snapshots are written. Rust's stdout is line-buffered: every
/// write looks for its last newline, all 17 MB of a snapshot at 5,000
/// processes. Snapshots go to fd 1 itself through a buffer of our own,
/// flushed at each one's end.
fn snapshot_sink() -> BufWriter<Box<dyn Write>> {
    let stdout: Box<dyn Write> = match io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(std::fs::File::from(fd)),
        Err(_) => Box::new(io::stdout().lock()),
    };
    BufWriter::with_capacity(1 << 16, stdout)
}

/// Whether stdout is a pipe whose reader has gone (it polls as an error),
/// so that a run waiting for events ends without writing first.
fn stdout_closed() -> bool {
    let mut p = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// How snapshots are printed, as the request asks.
fn printer(req: &Request) -> Result<Printer> {
    let svg = match &req.flamegraph {
        Some(path) => Some((
            path.clone(),
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    Ok(Printer {
        format: req.output,
        threads: req.threads,
        activity: req.activity,
        tree: req.tree,
        columns: req.columns.clone(),
        targets: req.targets.iter().map(|t| t.name.clone()).collect(),
        color: crate::output::want_color(),
        fold: req.folds().then(|| crate::output::folded::FoldSink {
            folded: Default::default(),
            print: req.folded,
            svg,
        }),
    })
}

/// Where a run's time went up to its first snapshot written, for
/// --verbose (docs/performance.md quotes it): from main() on; what comes
/// before (exec, the dynamic loader) is outside.
fn phases(before_arm: Duration, armed: Duration, backend: &dyn backend::Backend, first: Duration) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let load = backend
        .load_report()
        .map_or(Duration::ZERO, |r| r.load_time);
    say!(
        "itersnap: time: {:.1} ms to the backend, {:.1} ms loading (open, CO-RE, verifier), \
         {:.1} ms attaching, {:.1} ms to the first snapshot written: {:.1} ms",
        ms(before_arm),
        ms(load),
        ms(armed.saturating_sub(before_arm).saturating_sub(load)),
        ms(first.saturating_sub(armed)),
        ms(first)
    );
}

/// One snapshot to stdout: whole, or (--diff) what changed since `previous`.
fn write_snapshot(
    out: &mut dyn Write,
    printer: &Printer,
    snap: &snapshot::Snapshot,
    previous: Option<&snapshot::Snapshot>,
    req: &Request,
) -> Result<()> {
    match previous {
        Some(prev) if req.diff => {
            let d = diff::diff(prev, snap, req.sort);
            printer.write_diff(out, snap, &d)
        }
        _ => printer.write(out, snap),
    }
    .context("writing a snapshot")?;
    out.flush().context("writing a snapshot")?;
    if req.verbose {
        // scripts/bench reads this line: the end-to-end time.
        say!(
            "itersnap: snapshot {}: walk {:.2} ms, {:.2} ms from walk start to last line written",
            snap.info.seq,
            snap.info.walk_ns as f64 / 1e6,
            backend::monotonic_ns().saturating_sub(snap.info.ktime_ns) as f64 / 1e6
        );
    }
    Ok(())
}

/// The last line of an armed run, on stderr.
fn print_summary(stream: &Stream, backend: &dyn backend::Backend, verbose: bool) {
    let (taken, dropped) = (stream.taken, stream.dropped);
    let (gap, busy) = backend.skipped();
    let missed = stream.tally.missed_total.max(backend.missed());
    let missed = if missed > 0 {
        format!(", {} missed by the kernel", plural(missed, "event"))
    } else {
        String::new()
    };
    say!(
        "itersnap: {}, {} skipped ({gap} within --min-gap, {busy} during a walk){missed}, {}",
        plural(taken, "snapshot"),
        plural(gap + busy, "trigger"),
        plural(dropped, "record") + " dropped"
    );
    if let (true, Some(runs)) = (verbose, backend.sampler_runs()) {
        // scripts/bench reads this line: the samplers' cost, which no
        // process is charged for (they run in the timer interrupt).
        say!("itersnap: {}", runs.describe("on-CPU sampler"));
    }
}

/// What the guards skipped and the kernel missed, snapshot by snapshot.
#[derive(Default)]
struct Tally {
    skipped_seen: (u64, u64),
    missed_seen: u64,
    last_tick: Option<u64>,
    missed_total: u64,
}

impl Tally {
    /// (within --min-gap, busy, missed by the kernel) since the previous
    /// snapshot; `missed_now` is the trigger program's running count.
    fn account(
        &mut self,
        raw: &backend::RawSnapshot,
        missed_now: u64,
        spec: &TriggerSpec,
    ) -> (u64, u64, u64) {
        let skipped_now = raw
            .begin
            .as_ref()
            .map_or(self.skipped_seen, |b| (b.skipped_gap, b.skipped_busy));
        let delta = (
            skipped_now.0.saturating_sub(self.skipped_seen.0),
            skipped_now.1.saturating_sub(self.skipped_seen.1),
        );
        self.skipped_seen = self.skipped_seen.max(skipped_now);
        let mut missed = missed_now.saturating_sub(self.missed_seen);
        self.missed_seen = missed_now;
        // A timer tick that never ran (the kernel refuses to nest BPF
        // programs of some kinds on a CPU) shows as a longer gap.
        if let (TriggerSpec::Interval { period }, Some(last), Some(b)) =
            (spec, self.last_tick, raw.begin.as_ref())
        {
            let periods =
                (b.ktime_ns.saturating_sub(last) as f64 / period.as_nanos() as f64).round() as u64;
            // Ticks the guards skipped are counted already.
            missed = missed.max(periods.saturating_sub(1 + delta.0 + delta.1));
        }
        if let Some(b) = raw.begin.as_ref() {
            self.last_tick = Some(b.ktime_ns);
        }
        self.missed_total += missed;
        (delta.0, delta.1, missed)
    }
}

/// The live status line on stderr while a trigger is armed, on a terminal
/// only; erased before each snapshot is written and at the end.
struct StatusLine {
    on: bool,
    shown: bool,
    last_draw: Option<std::time::Instant>,
}

impl StatusLine {
    fn new() -> Self {
        use std::io::IsTerminal;
        StatusLine {
            on: io::stderr().is_terminal(),
            shown: false,
            last_draw: None,
        }
    }

    fn show(&mut self, text: &str) {
        let due = self
            .last_draw
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(200));
        if self.on && due {
            eprint!("\r\x1b[K{text}");
            self.shown = true;
            self.last_draw = Some(std::time::Instant::now());
        }
    }

    /// The counts so far, while waiting for the next snapshot.
    fn show_counts(
        &mut self,
        taken: u64,
        dropped: u64,
        (gap, busy): (u64, u64),
        last_snapshot: Option<std::time::Instant>,
    ) {
        self.show(&format!(
            "itersnap: {}, {} skipped, {} dropped, {}",
            plural(taken, "snapshot"),
            plural(gap + busy, "trigger"),
            plural(dropped, "record"),
            last_snapshot.map_or("waiting for the first".to_string(), |t| {
                format!("last {:.1} s ago", t.elapsed().as_secs_f64())
            })
        ));
    }

    fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
            self.shown = false;
            self.last_draw = None;
        }
    }
}

/// A load refused with EPERM although itersnap has its capabilities: say
/// why when the system tells (kernel lockdown).
fn explain_refusal(e: anyhow::Error) -> anyhow::Error {
    let refused = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
            || c.to_string().contains("Operation not permitted")
    });
    match features::explain_refusal() {
        Some(why) if refused => e.context(why),
        _ => e,
    }
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn describe_spec(trig: &TriggerOptions, backend: &str) -> String {
    let mut s = match &trig.spec {
        TriggerSpec::OneShot => "one-shot".to_string(),
        TriggerSpec::Signal {
            signal,
            target_pid,
            target_comm,
        } => {
            let mut s = format!("on {}", crate::signals::name(*signal));
            if let Some(p) = target_pid {
                s.push_str(&format!(" sent to {p}"));
            }
            if let Some(c) = target_comm {
                s.push_str(&format!(" sent to {}", crate::output::printable(c)));
            }
            s
        }
        TriggerSpec::Syscall { name, .. } if trig.on_open_of_targets => {
            format!("on syscall {name} returning an fd of --file or --mount")
        }
        TriggerSpec::Syscall { name, .. } => format!("on syscall {name}"),
        TriggerSpec::Tracepoint { category, name } => format!("on tracepoint {category}:{name}"),
        TriggerSpec::Uprobe { path, symbol } => format!("on uprobe {}:{symbol}", path.display()),
        TriggerSpec::Interval { period } => format!(
            "every {} ({})",
            human_duration(*period),
            if backend == "open-coded" {
                "a perf_event program on a CPU-clock event, CPU 0"
            } else {
                "a user-space timer"
            }
        ),
    };
    if let Some(p) = trig.caller_pid {
        s.push_str(&format!(" in {p}"));
    }
    if let Some(c) = &trig.caller_comm {
        s.push_str(&format!(" in {}", crate::output::printable(c)));
    }
    if let Some(n) = trig.count {
        s.push_str(&format!(", {}", plural(n, "snapshot")));
    }
    s.push_str(&format!(", min gap {}", human_duration(trig.min_gap)));
    s
}
