//! Records → one snapshot: tasks grouped into processes (or threads), each
//! kind's data (kinds/) attached to its task in a `Row`, and the snapshot's
//! own account: what fired it, which tasks the event captured, what is
//! missing.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use std::time::{Duration, UNIX_EPOCH};

use crate::kinds::activity::{Activity, ActivityRec};
use crate::kinds::cmdline::{Cmdline, CmdlineRec};
use crate::kinds::event::{self, EventRec};
use crate::kinds::files::{self, FileEntry};
use crate::kinds::holds::{self, Held, Target};
use crate::kinds::maps;
use crate::kinds::oncpu::{OnCpu, OnCpuSample};
use crate::kinds::process::{ProcRec, Process};
use crate::kinds::sockets::Socket;
use crate::kinds::stacks::{self, Frame, StackRec};
use crate::kinds::task::{self, Task, TaskRec};
use crate::kinds::ustacks::{self, UStack, UStackRec, USyms as UStackSyms};
use crate::ksyms::Ksyms;
use crate::model::{RawSnapshot, TriggerSpec};
use crate::record::{BeginRec, Record};

/// A task involved in the event: the signal's sender or target, the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub pid: u32,
    pub tid: u32,
    pub comm: Vec<u8>,
}

impl Actor {
    fn describe(&self) -> String {
        format!("{} ({})", self.pid, crate::text::printable(&self.comm))
    }
}

/// What made the snapshot happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    OneShot,
    Signal {
        signal: i32,
        sender: Actor,
        target: Actor,
    },
    Syscall {
        name: String,
        nr: i32,
        caller: Actor,
    },
    Tracepoint {
        name: String,
        caller: Actor,
    },
    Uprobe {
        target: String,
        caller: Actor,
    },
    /// A tick of --interval.
    Timer {
        period: Duration,
    },
    /// The trigger's own record was lost (ring buffer full).
    Unknown,
}

impl Trigger {
    /// The signal of a signal trigger.
    pub fn signal(&self) -> Option<i32> {
        match self {
            Trigger::Signal { signal, .. } => Some(*signal),
            _ => None,
        }
    }

    /// Names from the user's trigger spec, the rest from the kernel's begin_rec.
    pub fn from_event(spec: &TriggerSpec, begin: Option<&BeginRec>) -> Trigger {
        let Some(b) = begin else {
            return if spec.is_oneshot() {
                Trigger::OneShot
            } else {
                Trigger::Unknown
            };
        };
        let caller = Actor {
            pid: b.pid,
            tid: b.tid,
            comm: b.comm.clone(),
        };
        match spec {
            TriggerSpec::OneShot => Trigger::OneShot,
            TriggerSpec::Signal { .. } => Trigger::Signal {
                signal: b.arg,
                sender: caller,
                target: Actor {
                    pid: b.target_pid,
                    tid: b.target_tid,
                    comm: b.target_comm.clone(),
                },
            },
            TriggerSpec::Syscall { name, nr } => Trigger::Syscall {
                name: name.clone(),
                nr: *nr,
                caller,
            },
            TriggerSpec::Tracepoint { category, name } => Trigger::Tracepoint {
                name: format!("{category}:{name}"),
                caller,
            },
            TriggerSpec::Uprobe { path, symbol } => Trigger::Uprobe {
                target: format!("{}:{symbol}", path.display()),
                caller,
            },
            TriggerSpec::Interval { period } => Trigger::Timer { period: *period },
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Trigger::OneShot => "one-shot".to_string(),
            Trigger::Signal {
                signal,
                sender,
                target,
            } => format!(
                "{} from {} to {}",
                crate::signals::name(*signal),
                sender.describe(),
                target.describe()
            ),
            Trigger::Syscall { name, caller, .. } => {
                format!("syscall {name} by {}", caller.describe())
            }
            Trigger::Tracepoint { name, caller } => {
                format!("tracepoint {name} in {}", caller.describe())
            }
            Trigger::Uprobe { target, caller } => {
                format!("uprobe {target} in {}", caller.describe())
            }
            Trigger::Timer { period } => {
                format!("every {}", crate::text::human_duration(*period))
            }
            Trigger::Unknown => "a trigger whose record was lost".to_string(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::OneShot => "oneshot",
            Trigger::Signal { .. } => "signal",
            Trigger::Syscall { .. } => "syscall",
            Trigger::Tracepoint { .. } => "tracepoint",
            Trigger::Uprobe { .. } => "uprobe",
            Trigger::Timer { .. } => "interval",
            Trigger::Unknown => "unknown",
        }
    }
}

/// How the kernel walk went, as the backend measured it.
#[derive(Debug, Clone)]
pub struct WalkInfo {
    pub seq: u32,
    pub trigger: Trigger,
    pub backend: &'static str,
    /// Completed by reading iterators after the event: not every task is
    /// the event's (see Capture).
    pub after_event: bool,
    pub capture: Capture,
    /// itersnap's own network namespace (sockets elsewhere say theirs).
    pub reader_netns: u64,
    /// When the machine booted, wall clock ns (Context::boot_wall_ns).
    pub boot_wall_ns: u64,
    /// The machine's memory, KiB (Context::mem_total_kib).
    pub mem_total_kib: u64,
    /// Open files were walked (not --no-files): a row without any has none.
    pub files: bool,
    /// CPU the trigger fired on, when there was a trigger.
    pub cpu: Option<u32>,
    /// Wall-clock time at the start of the walk.
    pub wall_time: SystemTime,
    /// CLOCK_MONOTONIC (the kernel's ktime) at the start of the walk, ns.
    pub ktime_ns: u64,
    pub walk_ns: u64,
    /// Triggers the in-kernel guards skipped since the previous snapshot.
    pub skipped_gap: u64,
    pub skipped_busy: u64,
    /// Events the kernel did not run the trigger for since the previous
    /// snapshot (another BPF program was running on that CPU).
    pub missed: u64,
    /// The event's own details (its arguments, exit code, siginfo,
    /// tracepoint fields), read inside it.
    pub details: Option<event::Details>,
}

/// Which tasks were captured inside the event and which after, and when.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capture {
    /// Task records (threads) the trigger program filled inside the event.
    pub in_event: usize,
    /// Task records the completion filled after it.
    pub after_event: usize,
    /// How long the trigger program captured inside the event.
    pub in_event_ns: u64,
    /// --event-budget; 0 for a one-shot or a tick (nothing in the event).
    pub budget_ns: u64,
    /// The budget ran out before the event's part was done.
    pub budget_hit: bool,
    /// The latest task record of the completion, after the event (or the
    /// walk's start).
    pub latest_after_ns: u64,
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub info: WalkInfo,
    /// One row per process, or per thread with `--threads`; sorted by (pid, tid).
    pub rows: Vec<Row>,
    pub counts: Counts,
    /// Why the snapshot is incomplete, if it is (decode errors, drops).
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub processes: usize,
    pub threads: usize,
    pub files: usize,
    /// Of the files, sockets with their socket record.
    pub sockets: usize,
    pub stacks: usize,
    /// Task, file and stack records in the snapshot (the event's and the
    /// completion's, merged).
    pub records: usize,
    /// Records the kernel wrote for this snapshot: through the ring buffer
    /// (begin and end records included) and through the iterators.
    pub emitted: u64,
    /// Of those, the records that arrived (emitted = received + dropped).
    pub received: u64,
    /// Records lost because the ring buffer was full.
    pub dropped: u64,
    /// Records read from the iterators, after the event (none are lost).
    pub iterated: u64,
    pub truncated: usize,
}

impl Snapshot {
    pub fn complete(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What assembly needs besides the records.
pub struct Context<'a> {
    pub backend: &'static str,
    pub spec: &'a TriggerSpec,
    pub per_thread: bool,
    /// Open files are walked (not --no-files).
    pub files: bool,
    pub ksyms: Option<&'a Ksyms>,
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, to date kernel timestamps.
    pub wall_offset_ns: u64,
    /// CLOCK_REALTIME minus CLOCK_BOOTTIME: when the machine booted, as
    /// /proc/stat's btime (which ps dates start times from).
    pub boot_wall_ns: u64,
    /// /proc/meminfo's MemTotal, KiB, for ps's %MEM (0: unknown).
    pub mem_total_kib: u64,
    /// --event-budget, as the trigger programs were given it.
    pub event_budget_ns: u64,
    /// A --port/--proto/--state filter is on: processes without a matching
    /// socket are not shown.
    pub socket_filter: bool,
    /// --file, --mount: only processes holding one of them are shown.
    pub targets: &'a [Target],
    /// --task-state (a mask of task::STATE_LETTERS' indices; 0: any): only
    /// processes with a thread in one, and with --threads only those
    /// threads. The kernel leaves out other threads but not main ones,
    /// which carry their process's records.
    pub states: u32,
    /// --stacks: rows show the stacks read (a WCHAN column reads them
    /// without showing them).
    pub stacks: bool,
    /// --threads with COMMs: the threads of processes of these names (ps -L
    /// -C) and the threads of these names (pgrep -w -x). The kernel also
    /// lets through the main threads of the latter's processes, which carry
    /// the processes' records.
    pub thread_names: &'a [Vec<u8>],
    /// itersnap's own network namespace: sockets of others say theirs.
    pub reader_netns: u64,
    /// The backend reads command lines (a sleepable iterator, 5.18+).
    pub cmdlines: bool,
    /// --maps: every process's mapped files are read.
    pub maps: bool,
    /// Look up names in the machine's own databases: users and groups,
    /// user-space symbols (not for output that must not depend on the
    /// machine: the tests' renderings).
    pub user_names: bool,
    /// With --ustacks: the run's user-space symbolizer (each file's
    /// symbols read once per run; a process's mappings when it has a new
    /// address or its address space changed).
    pub usyms: Option<&'a std::cell::RefCell<UStackSyms>>,
    /// What names the event's details: a raw tracepoint's arguments, a
    /// tracefs tracepoint's fields.
    pub event_names: &'a event::Names,
}

/// One task of a snapshot (a process, or a thread with `--threads`) and
/// each kind's data about it. A new kind of data gets its field here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub task: Task,
    /// Its process as ps aux and lsof see it (a thread's row: its
    /// process's, without the mapped files).
    pub process: Option<Process>,
    /// Its open files, by fd (the leader's row holds a process's files).
    pub files: Vec<FileEntry>,
    /// Its kernel stack, when stacks were asked for.
    pub stack: Option<Vec<Frame>>,
    /// Its user stack, with --ustacks.
    pub ustack: Option<UStack>,
    /// Its stacks came from its CPU's on-CPU sample (--interval: it ran).
    pub oncpu: Option<OnCpu>,
    /// With --file or --mount: which of them it holds, and how.
    pub holds: Vec<Held>,
}

impl Row {
    pub fn of(task: Task) -> Row {
        Row {
            task,
            process: None,
            files: Vec::new(),
            stack: None,
            ustack: None,
            oncpu: None,
            holds: Vec::new(),
        }
    }
}

/// Everything the records say about one process, gathered in one place:
/// one lookup per run of its records instead of one per record and table.
#[derive(Default)]
struct ProcessParts {
    threads: Vec<TaskRec>,
    files: Vec<FileEntry>,
    /// What it holds without an fd (cwd, rtd, txt, mapped files).
    slots: Vec<FileEntry>,
    /// Its first process record: the event's.
    proc_rec: Option<Box<ProcRec>>,
    cmdline: Option<Vec<CmdlineRec>>,
}

impl ProcessParts {
    /// Adds what a later run of records said; earlier records stay first.
    fn absorb(&mut self, mut later: ProcessParts) {
        self.threads.append(&mut later.threads);
        self.files.append(&mut later.files);
        self.slots.append(&mut later.slots);
        if self.proc_rec.is_none() {
            self.proc_rec = later.proc_rec;
        }
        match (&mut self.cmdline, later.cmdline) {
            (Some(chunks), Some(mut more)) => chunks.append(&mut more),
            (none @ None, more) => *none = more,
            (Some(_), None) => {}
        }
    }
}

/// Builds the snapshot from a backend's records. `skipped` is what the
/// trigger guards skipped since the previous snapshot: (min-gap, busy), and
/// the events the kernel missed.
pub fn assemble(raw: RawSnapshot, ctx: &Context<'_>, skipped: (u64, u64, u64)) -> Snapshot {
    let mut info = walk_info(&raw, ctx, skipped);
    let mut counts = record_counts(&raw);
    let problems = problems(&raw, ctx);
    let ktime_ns = raw.ktime_ns;
    let mut gathered = gather(raw.records, ktime_ns, &mut info.capture);
    // A thread sampled on two CPUs (it moved): its latest sample.
    for s in raw.oncpu {
        match gathered.oncpu.get(&s.tid) {
            Some(had) if had.time_ns >= s.time_ns => {}
            _ => {
                gathered.oncpu.insert(s.tid, s);
            }
        }
    }
    let event = gathered.event.take();
    let rows = rows(gathered, ctx, ktime_ns, &mut counts);
    info.details = event.map(|e| event_details(&e, &info.trigger, ctx, &rows));
    Snapshot {
        info,
        rows,
        counts,
        problems,
    }
}

/// How the walk went, from the backend's account and the trigger's record.
fn walk_info(raw: &RawSnapshot, ctx: &Context<'_>, skipped: (u64, u64, u64)) -> WalkInfo {
    WalkInfo {
        seq: raw.seq,
        trigger: Trigger::from_event(ctx.spec, raw.begin.as_ref()),
        backend: ctx.backend,
        after_event: raw.after_event,
        reader_netns: ctx.reader_netns,
        boot_wall_ns: ctx.boot_wall_ns,
        mem_total_kib: ctx.mem_total_kib,
        capture: Capture {
            in_event_ns: raw.in_event_ns,
            // A tick captures nothing in its event, whatever the budget.
            budget_ns: match ctx.spec {
                TriggerSpec::Interval { .. } | TriggerSpec::OneShot => 0,
                _ if raw.expects_end => ctx.event_budget_ns,
                _ => 0,
            },
            budget_hit: raw.end_flags & crate::record::END_BUDGET_HIT != 0,
            ..Capture::default()
        },
        files: ctx.files,
        cpu: raw.begin.as_ref().map(|b| b.cpu),
        // Kernel timestamps are untrusted: no overflow, whatever they say.
        wall_time: UNIX_EPOCH
            .checked_add(Duration::from_nanos(
                raw.ktime_ns.saturating_add(ctx.wall_offset_ns),
            ))
            .unwrap_or(UNIX_EPOCH),
        ktime_ns: raw.ktime_ns,
        walk_ns: raw.walk_ns,
        skipped_gap: skipped.0,
        skipped_busy: skipped.1,
        missed: skipped.2,
        details: None,
    }
}

/// The record accounting; the rows' counts are added as they are built.
fn record_counts(raw: &RawSnapshot) -> Counts {
    // Without a trigger program (a one-shot, a user-space tick) every
    // record came from the iterators.
    let iterated = match raw.emitted {
        Some(_) => raw.completion_records,
        None => raw.records.len() as u64,
    };
    Counts {
        dropped: raw.dropped,
        records: raw.records.len(),
        emitted: raw.emitted.unwrap_or(0).saturating_add(iterated),
        received: raw
            .received
            .unwrap_or(raw.emitted.unwrap_or(0).saturating_sub(raw.dropped))
            .saturating_add(iterated),
        iterated,
        ..Counts::default()
    }
}

/// Records sorted by what they belong to.
struct Gathered {
    procs: BTreeMap<u32, ProcessParts>,
    stacks: BTreeMap<u32, StackRec>,
    /// What each thread was doing (--activity), by thread.
    activities: HashMap<u32, ActivityRec>,
    /// Socket records not right after their file's (pid, fd).
    sockets: HashMap<(u32, i32), Socket>,
    /// User stacks (--ustacks), by thread.
    ustacks: HashMap<u32, UStackRec>,
    /// The trigger's own details.
    event: Option<Box<EventRec>>,
    /// --interval with stacks: each CPU's latest sample, by thread.
    oncpu: HashMap<u32, OnCpuSample>,
}

/// Records by process, stacks by thread; counts in `capture` which tasks
/// the event captured and which came after. A process's records arrive one
/// after another: each run is gathered apart and added to the map when the
/// next process's begins.
fn gather(records: Vec<Record>, ktime_ns: u64, capture: &mut Capture) -> Gathered {
    let mut procs: BTreeMap<u32, ProcessParts> = BTreeMap::new();
    let mut stacks: BTreeMap<u32, StackRec> = BTreeMap::new();
    let mut activities: HashMap<u32, ActivityRec> = HashMap::new();
    let mut sockets: HashMap<(u32, i32), Socket> = HashMap::new();
    let mut run: Option<(u32, ProcessParts)> = None;
    let mut event = None;
    let mut ustacks: HashMap<u32, UStackRec> = HashMap::new();
    for rec in Shrinking::new(records) {
        match rec {
            Record::Task(t) => {
                if t.in_event() {
                    capture.in_event += 1;
                } else {
                    capture.after_event += 1;
                    capture.latest_after_ns = capture
                        .latest_after_ns
                        .max(t.taken_ns.saturating_sub(ktime_ns));
                }
                run_parts(&mut run, t.tgid, &mut procs).threads.push(*t)
            }
            Record::File(f) if f.fd < 0 => run_parts(&mut run, f.pid, &mut procs)
                .slots
                .push(FileEntry::from_record(f)),
            Record::File(f) => run_parts(&mut run, f.pid, &mut procs)
                .files
                .push(FileEntry::from_record(f)),
            // The first of a thread's stacks: the event's.
            Record::Stack(s) => {
                stacks.entry(s.pid).or_insert(s);
            }
            Record::Activity(a) => {
                activities.entry(a.pid).or_insert(a);
            }
            // A socket follows its file's record: it goes with it.
            Record::Socket(s) => {
                let file = run
                    .as_mut()
                    .filter(|(pid, _)| *pid == s.pid)
                    .and_then(|(_, parts)| parts.files.last_mut())
                    .filter(|f| f.fd == s.fd && f.socket.is_none());
                match file {
                    Some(f) => f.socket = Some(Box::new(s.socket)),
                    None => {
                        sockets.entry((s.pid, s.fd)).or_insert(s.socket);
                    }
                }
            }
            Record::Proc(p) => {
                run_parts(&mut run, p.pid, &mut procs)
                    .proc_rec
                    .get_or_insert(p);
            }
            Record::Cmdline(c) => run_parts(&mut run, c.pid, &mut procs)
                .cmdline
                .get_or_insert_with(Vec::new)
                .push(c),
            Record::Event(e) => {
                event.get_or_insert(e);
            }
            // The first of a thread's: the one unwound inside the event.
            Record::UStack(u) => {
                ustacks.entry(u.pid).or_insert(u);
            }
            Record::Begin(_) | Record::End(_) => {}
        }
    }
    end_run(&mut run, &mut procs);
    Gathered {
        procs,
        stacks,
        activities,
        sockets,
        ustacks,
        event,
        oncpu: HashMap::new(),
    }
}

/// The parts of the run of records `pid`'s belong to; a record of another
/// process ends the run before.
fn run_parts<'r>(
    run: &'r mut Option<(u32, ProcessParts)>,
    pid: u32,
    procs: &mut BTreeMap<u32, ProcessParts>,
) -> &'r mut ProcessParts {
    if run.as_ref().is_some_and(|(of, _)| *of != pid) {
        end_run(run, procs);
    }
    &mut run.get_or_insert_with(|| (pid, ProcessParts::default())).1
}

/// Adds a run's parts to its process's.
fn end_run(run: &mut Option<(u32, ProcessParts)>, procs: &mut BTreeMap<u32, ProcessParts>) {
    if let Some((pid, parts)) = run.take() {
        match procs.entry(pid) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(parts);
            }
            std::collections::btree_map::Entry::Occupied(mut had) => had.get_mut().absorb(parts),
        }
    }
}

/// A vector's elements in order, its memory handed back as they go: a
/// slice at a time is cut from its end (the vector reversed once first),
/// and the rest shrunk. The records and the rows built from them are then
/// never both whole in memory (at 5,000 processes with 80,000 files, a
/// one-shot's peak RSS 34.5 MB instead of 42).
struct Shrinking<T> {
    rest: Vec<T>,
    slice: std::iter::Rev<std::vec::IntoIter<T>>,
}

impl<T> Shrinking<T> {
    const SLICE: usize = 8192;

    fn new(mut all: Vec<T>) -> Self {
        all.reverse();
        Shrinking {
            rest: all,
            slice: Vec::new().into_iter().rev(),
        }
    }
}

impl<T> Iterator for Shrinking<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        loop {
            if let Some(item) = self.slice.next() {
                return Some(item);
            }
            if self.rest.is_empty() {
                return None;
            }
            let at = self.rest.len().saturating_sub(Self::SLICE);
            self.slice = self.rest.split_off(at).into_iter().rev();
            self.rest.shrink_to_fit();
        }
    }
}

/// One row per process (or per thread), with its files and stack.
fn rows(g: Gathered, ctx: &Context<'_>, ktime_ns: u64, counts: &mut Counts) -> Vec<Row> {
    let Gathered {
        procs,
        mut stacks,
        mut activities,
        mut sockets,
        mut ustacks,
        event: _,
        oncpu,
    } = g;
    // Symbols from the processes' own files, read while they live (not for
    // renderings that must not depend on the machine).
    let mut usyms = snapshot_usyms(ctx, !ustacks.is_empty());
    let mut rows = Vec::with_capacity(procs.len());
    for (tgid, mut proc) in procs {
        // Stable: of two records of one thread, the event's (first) stays.
        proc.threads.sort_by_key(|t| t.pid);
        proc.threads.dedup_by_key(|t| t.pid);
        let Some(leader) = proc
            .threads
            .iter()
            .find(|t| t.pid == tgid)
            .or(proc.threads.first())
        else {
            continue;
        };
        let shown = |t: &&TaskRec| thread_shown(ctx, &leader.comm, t);
        if !proc.threads.iter().any(|t| shown(&t)) {
            continue; // no thread of it in one of the states, or so named
        }
        let mut open_files = by_fd_with_sockets(proc.files, &mut sockets, tgid);
        if ctx.socket_filter && !open_files.iter().any(|f| f.socket.is_some()) {
            continue; // --port, --proto, --state: only processes holding one
        }
        let process = process_of(
            leader,
            proc.proc_rec.map(|p| *p),
            proc.slots,
            proc.cmdline,
            ctx,
        );
        let holds = holds::held(ctx.targets, Some(&process), &open_files);
        if !ctx.targets.is_empty() && holds.is_empty() {
            continue; // --file, --mount: only processes holding one
        }
        // With --threads the main thread's row carries the files: none
        // when that row is not shown (--task-state, a thread's name).
        let shown_threads = proc.threads.iter().filter(shown).count();
        if ctx.per_thread && !proc.threads.iter().any(|t| t.pid == tgid && shown(&t)) {
            open_files.clear();
        }
        let threads = if ctx.per_thread {
            shown_threads
        } else {
            proc.threads.len()
        };
        counts.add_process(threads, &open_files, &process);

        let mut doing = activities_of(&proc.threads, &mut activities, &open_files);
        let space = address_space(leader, &process);
        // Each row's per-thread views: what it was doing, its stack.
        let mut add_views = |row: &mut Row, pid: u32| {
            row.task.activity = doing.remove(&pid);
            let mut stack = stacks.remove(&pid);
            let mut ustack = ustacks.remove(&pid);
            row.oncpu = oncpu.get(&pid).and_then(|s| {
                sampled_stacks(s, row.task.on_cpu, &mut stack, &mut ustack, ktime_ns)
            });
            let frames = stack.map(|s| stacks::frames(&s, ctx.ksyms));
            add_stack(row, frames, ctx, counts);
            if let Some(u) = ustack {
                row.ustack = Some(UStack::of(&u, tgid, space, usyms.as_deref_mut()));
            }
        };
        if ctx.per_thread {
            for t in proc.threads.iter().filter(shown) {
                let mut row = Row::of(Task::thread(t, ktime_ns));
                add_views(&mut row, t.pid);
                if t.pid == tgid {
                    row.files = std::mem::take(&mut open_files);
                    row.process = Some(process.clone());
                } else {
                    row.process = Some(Process {
                        maps: None,
                        ..process.clone()
                    });
                }
                rows.push(row);
            }
        } else {
            let mut row = Row::of(Task::process(leader, &proc.threads, ktime_ns));
            add_views(&mut row, leader.pid);
            row.files = open_files;
            row.process = Some(process);
            row.holds = holds;
            rows.push(row);
        }
    }
    rows
}

/// A thread the walk found on a CPU, whose stacks it could not read, takes
/// those of its CPU's sample (of it, at the tick). Its kernel
/// stack is read with its task record (`on_cpu` then: the record is
/// empty, the kernel's unwinder refuses a running task), its user stack
/// later by another iterator (marked running if it ran then). A stack the
/// event read (its own task's) stays.
fn sampled_stacks(
    sample: &OnCpuSample,
    on_cpu: bool,
    stack: &mut Option<StackRec>,
    ustack: &mut Option<UStackRec>,
    ktime_ns: u64,
) -> Option<OnCpu> {
    let kernel_unread = on_cpu && stack.as_ref().is_some_and(|s| s.ips.is_empty());
    let user_unread = ustack
        .as_ref()
        .is_some_and(|u| u.flags & ustacks::USTACK_RUNNING != 0);
    let mut used = false;
    if let Some(k) = sample.stack_rec().filter(|_| kernel_unread) {
        *stack = Some(k);
        used = true;
    }
    if let Some(u) = sample.ustack_rec().filter(|_| user_unread) {
        *ustack = Some(u);
        used = true;
    }
    used.then(|| sample.note(ktime_ns))
}

/// What identifies a process's address space to the symbolizer from one
/// snapshot to the next.
fn address_space(leader: &TaskRec, process: &Process) -> ustacks::SpaceKey {
    ustacks::SpaceKey {
        start_ns: leader.start_ns,
        exec_id: leader.self_exec_id,
        vsz_kib: process.vsz_kib,
    }
}

/// The run's user-space symbolizer for this snapshot, if it has user
/// stacks to name.
fn snapshot_usyms<'a>(
    ctx: &Context<'a>,
    has_ustacks: bool,
) -> Option<std::cell::RefMut<'a, UStackSyms>> {
    let mut usyms = ctx
        .usyms
        .filter(|_| ctx.user_names && has_ustacks)?
        .borrow_mut();
    usyms.new_snapshot();
    Some(usyms)
}

/// A process's files by fd, each socket record not right after its
/// file's hung on it.
fn by_fd_with_sockets(
    mut open_files: Vec<FileEntry>,
    sockets: &mut HashMap<(u32, i32), Socket>,
    tgid: u32,
) -> Vec<FileEntry> {
    files::by_fd(&mut open_files);
    if !sockets.is_empty() {
        for f in open_files.iter_mut().filter(|f| f.socket.is_none()) {
            f.socket = sockets.remove(&(tgid, f.fd)).map(Box::new);
        }
    }
    open_files
}

/// What each thread was doing, its fd argument's file among the process's.
fn activities_of(
    threads: &[TaskRec],
    activities: &mut HashMap<u32, ActivityRec>,
    open_files: &[FileEntry],
) -> HashMap<u32, Activity> {
    threads
        .iter()
        .filter_map(|t| {
            let a = activities.remove(&t.pid)?;
            Some((t.pid, Activity::from_record(&a, syscall_name, open_files)))
        })
        .collect()
}

/// A syscall's name for this architecture.
fn syscall_name(nr: i32) -> Option<&'static str> {
    crate::syscalls::SYSCALLS
        .iter()
        .find(|&&(_, n)| n == nr)
        .map(|&(name, _)| name)
}

/// Whether a thread of the process whose main thread is named `leader_comm`
/// is shown: in one of --task-state's states, and with --threads' COMMs of
/// that name or of a process of that name.
fn thread_shown(ctx: &Context<'_>, leader_comm: &[u8], t: &TaskRec) -> bool {
    let state = task::state_index(t.state, t.exit_state);
    (ctx.states == 0 || ctx.states & (1 << state) != 0)
        && (ctx.thread_names.is_empty()
            || ctx
                .thread_names
                .iter()
                .any(|n| n == leader_comm || *n == t.comm))
}

/// A row's stack gives its task's WCHAN; the row shows the stack itself
/// with --stacks.
fn add_stack(row: &mut Row, frames: Option<Vec<Frame>>, ctx: &Context<'_>, counts: &mut Counts) {
    row.task.wchan = frames
        .as_deref()
        .and_then(|f| stacks::wchan(f, row.task.state));
    if ctx.stacks && frames.is_some() {
        counts.stacks += 1;
        row.stack = frames;
    }
}

impl Counts {
    /// A process shown, with `threads` threads and these files.
    fn add_process(&mut self, threads: usize, open_files: &[FileEntry], process: &Process) {
        self.processes += 1;
        self.threads += threads;
        self.files += open_files.len();
        self.sockets += open_files.iter().filter(|f| f.socket.is_some()).count();
        // Every path the table shows: the fds', and cwd, root, exe, maps'.
        self.truncated += open_files
            .iter()
            .chain(process.slot_files())
            .filter(|f| f.truncated)
            .count();
    }
}

/// A process from its leader's record, its process record, what it holds
/// without an fd and its command line's chunks.
fn process_of(
    leader: &TaskRec,
    rec: Option<ProcRec>,
    slots: Vec<FileEntry>,
    cmdline: Option<Vec<CmdlineRec>>,
    ctx: &Context<'_>,
) -> Process {
    let mut p = Process::from_record(rec.as_ref(), leader.euid, leader.egid, ctx.user_names);
    for f in slots {
        p.add_slot(f);
    }
    if let Some(m) = p.maps.as_mut() {
        maps::by_file(m);
    } else if ctx.maps {
        p.maps = Some(Vec::new());
    }
    p.cmdline = cmdline.map(Cmdline::join);
    p.cmdline_read = ctx.cmdlines || p.cmdline.is_some();
    // Read by iterators, after the event, but the event's own task's when
    // it could be read whole inside it.
    if leader.in_event() {
        if p.cmdline.as_ref().is_some_and(|c| !c.in_event) {
            p.read_after_event.push("cmdline");
        }
        if p.maps.is_some() {
            p.read_after_event.push("maps");
        }
    }
    p
}

/// The event's details, named from the trigger, its fd arguments' files
/// from its caller's row (captured in the event).
fn event_details(
    rec: &EventRec,
    trigger: &Trigger,
    ctx: &Context<'_>,
    rows: &[Row],
) -> event::Details {
    let (syscall, signal, caller) = match trigger {
        Trigger::Syscall { name, caller, .. } => (Some(name.as_str()), None, Some(caller.pid)),
        Trigger::Signal { signal, sender, .. } => (None, Some(*signal), Some(sender.pid)),
        // syscalls:sys_enter_NAME: NAME's arguments, as --on-syscall's.
        Trigger::Tracepoint { name, caller } => (
            name.strip_prefix("syscalls:sys_enter_"),
            None,
            Some(caller.pid),
        ),
        Trigger::Uprobe { caller, .. } => (None, None, Some(caller.pid)),
        _ => (None, None, None),
    };
    let files = caller
        .and_then(|pid| {
            rows.iter()
                .find(|r| r.task.pid == pid && !r.files.is_empty())
        })
        .map_or(&[][..], |r| &r.files[..]);
    event::Details::from_record(
        rec,
        &event::Context {
            syscall,
            signal,
            arg_names: &ctx.event_names.args,
            record_fields: &ctx.event_names.fields,
            files,
        },
    )
}

/// Why the snapshot is incomplete, if it is.
fn problems(raw: &RawSnapshot, ctx: &Context<'_>) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(e) = &raw.decode_error {
        problems.push(e.clone());
    }
    if raw.dropped > 0 {
        problems.push(format!(
            "{} records dropped: the ring buffer was full (see --ringbuf-size)",
            raw.dropped
        ));
    }
    if raw.begin.is_none() && !ctx.spec.is_oneshot() {
        problems.push("the trigger's record was lost".into());
    }
    match &raw.end {
        Some(end) if end.truncated_fds > 0 => problems.push(format!(
            "{} fd tables were larger than the scan limit: their highest fds are missing",
            end.truncated_fds
        )),
        None if raw.expects_end => problems.push("the end record was lost".into()),
        _ => {}
    }
    problems
}

#[cfg(test)]
mod shrinking_tests {
    /// Slice by slice, the elements come in their order, all of them.
    #[test]
    fn shrinking_yields_every_element_in_order() {
        for n in [0, 1, 8191, 8192, 8193, 20000] {
            let all: Vec<usize> = (0..n).collect();
            let got: Vec<usize> = super::Shrinking::new(all.clone()).collect();
            assert_eq!(got, all, "{n}");
        }
    }
}
