//! How a loaded BPF object becomes snapshots, the same for both backends:
//! the trigger program's in-event records arrive through the ring buffer
//! (begin_rec, what the event is about, end_rec); the snapshot is then
//! completed right after, preemptibly, by reading the seq iterators
//! (completion.rs), and the two are merged, the event's records first. A
//! one-shot or a user-space tick reads only the iterators. The backends
//! differ only in what their trigger programs reach inside the event
//! (open_coded.rs, seq.rs).

use std::any::Any;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::attach::AttachedTrigger;
use super::completion::{merge, Completion};
use super::events::EventStream;
use super::sampler::Sampler;
use super::{Backend, RawSnapshot, TriggerSpec};
use crate::record::{self, BeginRec, EndRec, Record, END_ALL_TASKS};

pub const STATS_SLOTS: u32 = 16;

/// How long after each CPU's sample a user-space tick comes: enough for
/// the samplers to have run, little enough for the threads still to run.
const SAMPLE_LEAD: Duration = Duration::from_millis(1);

/// enum trigger_kind in bpf/itersnap.h.
const TRIGGER_TIMER: u32 = 6;

/// struct snap_stats (bpf/itersnap.h), as both objects lay it out.
#[repr(C)]
pub struct SnapStats {
    pub seq: u32,
    pub done: u32,
    pub emitted: u64,
    pub dropped: u64,
    pub walk_ns: u64,
    pub flags: u32,
    pub _pad: u32,
}

/// The trigger guards' state in a loaded object's mmapped `.bss`, which the
/// BPF programs write concurrently. Both objects have these globals (from
/// bpf/trigger.bpf.h and bpf/complete.bpf.h) in distinct generated types,
/// so `guards_of!` takes their addresses; `Session` keeps the object alive
/// as long as it holds them.
pub struct Guards {
    pub busy: *mut u64,
    pub seq_next: *const u32,
    pub stats: *const SnapStats,
    pub learn_root_only: *mut u32,
    pub skipped_gap: *const u64,
    pub skipped_busy: *const u64,
}

/// The `Guards` of a loaded skeleton.
macro_rules! guards_of {
    ($skel:expr) => {{
        let bss = $skel
            .maps
            .bss_data
            .as_deref_mut()
            .context("BPF object has no .bss")?;
        anyhow::ensure!(
            std::mem::size_of_val(&bss.stats[0])
                == std::mem::size_of::<$crate::backend::session::SnapStats>()
                && bss.stats.len() == $crate::backend::session::STATS_SLOTS as usize,
            "struct snap_stats differs between bpf/itersnap.h and the decoder"
        );
        $crate::backend::session::Guards {
            busy: &mut bss.busy,
            seq_next: &bss.seq_next,
            stats: bss.stats.as_ptr().cast(),
            learn_root_only: &mut bss.learn_root_only,
            skipped_gap: &bss.skipped_gap,
            skipped_busy: &bss.skipped_busy,
        }
    }};
}
pub(crate) use guards_of;

impl Guards {
    fn seq_next(&self) -> u32 {
        // SAFETY: a plain integer in the mmapped .bss, valid while the
        // object lives (Session owns it); BPF writes it, hence volatile.
        unsafe { std::ptr::read_volatile(self.seq_next) }
    }

    /// (done, emitted, dropped, walk_ns, flags) of a snapshot's stats slot,
    /// if the slot still belongs to `seq`.
    fn slot(&self, seq: u32) -> Option<(bool, u64, u64, u64, u32)> {
        // SAFETY: the slot is inside the .bss array (index < STATS_SLOTS);
        // every field is read once, volatile, as BPF writes them.
        unsafe {
            let st = self.stats.add((seq % STATS_SLOTS) as usize);
            if std::ptr::read_volatile(&(*st).seq) != seq {
                return None;
            }
            Some((
                std::ptr::read_volatile(&(*st).done) != 0,
                std::ptr::read_volatile(&(*st).emitted),
                std::ptr::read_volatile(&(*st).dropped),
                std::ptr::read_volatile(&(*st).walk_ns),
                std::ptr::read_volatile(&(*st).flags),
            ))
        }
    }

    /// Lets the trigger program fire again (single flight across user space).
    fn release(&self) {
        // SAFETY: as in seq_next; the kernel reads it with compare-and-swap.
        unsafe { std::ptr::write_volatile(self.busy, 0) }
    }

    /// The iterator then only learns the reader's root (complete.bpf.h).
    fn set_learn_root_only(&self, on: bool) {
        // SAFETY: as in seq_next.
        unsafe { std::ptr::write_volatile(self.learn_root_only, u32::from(on)) }
    }

    fn skipped(&self) -> (u64, u64) {
        // SAFETY: as in seq_next.
        unsafe {
            (
                std::ptr::read_volatile(self.skipped_gap),
                std::ptr::read_volatile(self.skipped_busy),
            )
        }
    }
}

/// How snapshots are started.
enum Mode {
    /// One snapshot now, from the iterators.
    OneShot { taken: bool },
    /// --interval without a perf-event program: a user-space timer
    /// (period, next tick, snapshots taken).
    Timer {
        period: Duration,
        next: Instant,
        taken: u32,
    },
    /// A trigger program reports events through the ring buffer.
    Events,
}

/// A triggered snapshot whose in-event part is still arriving.
#[derive(Default)]
struct Pending {
    begin: Option<BeginRec>,
    end: Option<EndRec>,
    records: Vec<Record>,
    decode_error: Option<String>,
}

/// A loaded object's programs, taking snapshots (see the module comment).
pub struct Session {
    pub name: &'static str,
    pub paths: &'static str,
    /// What was loaded into the kernel, and what it cost.
    pub load: super::programs::LoadReport,
    pub events: EventStream,
    pub completion: Completion,
    pub trigger: Option<AttachedTrigger>,
    /// --interval with stacks: the threads found on a CPU are sampled.
    sampler: Option<Sampler>,
    mode: Mode,
    pending: BTreeMap<u32, Pending>,
    /// The highest seq handed out so far.
    delivered: u32,
    guards: Guards,
    /// The skeleton that owns the programs, maps and the .bss the guards
    /// point into: declared last, so dropped after the links and the ring.
    _object: Box<dyn Any>,
}

/// A `Session` from a loaded skeleton (`$skel`, either object: their
/// programs and maps have the same names): attaches the iterators (the
/// task one is the program `$task_prog` points to, writing files with the
/// tasks if `$tasks_carry_files`) and, if `$attach`, the trigger.
macro_rules! session_of {
    ($skel:expr, $name:expr, $paths:expr, $report:expr, $walk:expr, $trig:expr, $attach:expr,
     $task_prog:expr, $tasks_carry_files:expr) => {{
        let mut skel = $skel;
        use libbpf_rs::AsRawLibbpf;
        let paths: $crate::backend::session::IterPaths = $paths;
        let file_prog = match ($walk.files, paths.files) {
            (false, _) => None,
            (true, true) => Some(skel.progs.dump_file.as_libbpf_object()),
            (true, false) => Some(skel.progs.dump_file_walk.as_libbpf_object()),
        };
        let completion = $crate::backend::completion::Completion::attach(
            $crate::backend::completion::IterPrograms {
                task: $task_prog,
                tasks_carry_files: $tasks_carry_files,
                file: file_prog,
                cmdline: $walk
                    .cmdlines
                    .then(|| skel.progs.dump_cmdline.as_libbpf_object()),
                maps: $walk.maps.then(|| skel.progs.dump_maps.as_libbpf_object()),
            },
            &$walk.pids,
            !$walk.comms.is_empty(),
        )?;
        let mut completion = completion;
        if !$walk.comms.is_empty() && $walk.threads {
            completion.set_named_threads(
                $crate::backend::completion::named_threads_of!(skel),
                !$walk.pids.is_empty(),
            );
        }
        if !$walk.targets.is_empty() {
            let bss = skel
                .maps
                .bss_data
                .as_deref_mut()
                .context("BPF object has no .bss")?;
            completion.set_holders_first($crate::backend::completion::HoldersFirst {
                targets: $walk.targets.clone(),
                pass: &mut bss.holders_pass_now,
            });
        }
        let guards = $crate::backend::session::guards_of!(skel);
        // Before the trigger is attached: its first event's paths need it.
        $crate::backend::session::learn_root_for_events(&guards, &completion, &$trig.spec)?;
        // Before the tick's event: each CPU is sampled at each tick.
        let sampler = match &$trig.spec {
            $crate::backend::TriggerSpec::Interval { period }
                if $crate::backend::sampler::wanted($walk, $trig) =>
            {
                Some($crate::backend::sampler::Sampler::attach(
                    &skel.progs.on_cpu_sample,
                    &skel.maps.oncpu_samples,
                    *period,
                )?)
            }
            _ => None,
        };
        let trigger = if $attach {
            $crate::backend::attach::attach_trigger(
                $crate::backend::attach::trigger_programs!(skel),
                $trig,
            )?
        } else {
            None
        };
        let events = $crate::backend::events::EventStream::new(&skel.maps.events)?;
        $crate::backend::session::Session::new(
            $crate::backend::session::Loaded {
                name: $name,
                paths: paths.describe(),
                load: $report,
                events,
                completion,
                trigger,
                sampler,
                guards,
                object: Box::new(skel),
            },
            &$trig.spec,
        )
    }};
}
pub(crate) use session_of;

/// Triggers capture in other tasks' contexts: their paths need itersnap's
/// root, which the iterators learn in its own (a one-shot and a tick
/// capture nothing in an event).
pub fn learn_root_for_events(
    guards: &Guards,
    completion: &Completion,
    spec: &TriggerSpec,
) -> Result<()> {
    if matches!(spec, TriggerSpec::OneShot | TriggerSpec::Interval { .. }) {
        return Ok(());
    }
    guards.set_learn_root_only(true);
    let learnt = completion.learn_root();
    guards.set_learn_root_only(false);
    learnt
}

/// What a backend's loader hands to `Session::new`.
pub struct Loaded {
    pub name: &'static str,
    pub paths: &'static str,
    pub load: super::programs::LoadReport,
    pub events: EventStream,
    pub completion: Completion,
    pub trigger: Option<AttachedTrigger>,
    pub sampler: Option<Sampler>,
    pub guards: Guards,
    pub object: Box<dyn Any>,
}

impl Session {
    pub fn new(loaded: Loaded, spec: &TriggerSpec) -> Result<Self> {
        let mode = match (spec, &loaded.trigger) {
            (TriggerSpec::OneShot, _) => Mode::OneShot { taken: false },
            (TriggerSpec::Interval { period }, None) => Mode::Timer {
                period: *period,
                // With samples, the first tick comes when every CPU has one,
                // just after (the samplers keep their phase).
                next: loaded
                    .sampler
                    .as_ref()
                    .map_or_else(Instant::now, |s| s.opened + *period + SAMPLE_LEAD),
                taken: 0,
            },
            _ => Mode::Events,
        };
        Ok(Session {
            name: loaded.name,
            paths: loaded.paths,
            load: loaded.load,
            events: loaded.events,
            completion: loaded.completion,
            trigger: loaded.trigger,
            sampler: loaded.sampler,
            mode,
            pending: BTreeMap::new(),
            delivered: 0,
            guards: loaded.guards,
            _object: loaded.object,
        })
    }

    /// A snapshot of the iterators alone: a one-shot or a user-space tick.
    fn walk_only(&self, seq: u32) -> Result<RawSnapshot> {
        let walked = self.completion.walk()?;
        Ok(RawSnapshot {
            seq,
            records: walked.records,
            decode_error: walked.error,
            ktime_ns: walked.start_ns,
            walk_ns: walked.end_ns.saturating_sub(walked.start_ns),
            after_event: true,
            ..RawSnapshot::default()
        })
    }

    /// The user-space timer: waits for the next tick (at most `timeout`),
    /// then walks. Ticks missed while a walk ran are skipped, as the
    /// kernel's single-flight guard would.
    fn tick(&mut self, timeout: Duration) -> Result<Vec<RawSnapshot>> {
        let Mode::Timer {
            period,
            next,
            taken,
        } = self.mode
        else {
            return Ok(Vec::new());
        };
        let now = Instant::now();
        if next > now {
            std::thread::sleep((next - now).min(timeout));
            if Instant::now() < next {
                return Ok(Vec::new());
            }
        }
        let seq = taken + 1;
        let mut snap = self.walk_only(seq)?;
        snap.begin = Some(BeginRec {
            seq,
            trigger: TRIGGER_TIMER,
            arg: 0,
            pid: std::process::id(),
            tid: std::process::id(),
            target_pid: 0,
            target_tid: 0,
            // SAFETY: sched_getcpu has no preconditions.
            cpu: unsafe { libc::sched_getcpu() }.max(0) as u32,
            ktime_ns: snap.ktime_ns,
            skipped_gap: 0,
            skipped_busy: 0,
            comm: b"itersnap".to_vec(),
            target_comm: Vec::new(),
        });
        snap.oncpu = self.samples();
        // The next tick keeps the phase (the samplers'); those the walk
        // overran are skipped.
        let mut next = next + period;
        let now = Instant::now();
        if next < now {
            let behind = (now - next).as_nanos() / period.as_nanos().max(1);
            next += period * (behind as u32 + 1);
        }
        self.mode = Mode::Timer {
            period,
            next,
            taken: seq,
        };
        Ok(vec![snap])
    }

    /// Each CPU's latest sample, with --interval and stacks.
    fn samples(&self) -> Vec<crate::kinds::oncpu::OnCpuSample> {
        self.sampler.as_ref().map_or_else(Vec::new, Sampler::read)
    }

    /// Routes decoded ring-buffer records to their snapshots.
    fn route(&mut self, bytes: &[u8]) {
        let (records, error) = record::decode_all(bytes);
        for rec in records {
            let snap = self.pending.entry(rec.seq()).or_default();
            match rec {
                Record::Begin(b) => snap.begin = Some(b),
                Record::End(e) => snap.end = Some(e),
                other => snap.records.push(other),
            }
        }
        if let Some(e) = error {
            // A malformed record spoils the rest of this batch: charge it to
            // the newest snapshot in flight, which it most likely belonged to.
            if let Some((_, snap)) = self.pending.iter_mut().next_back() {
                snap.decode_error = Some(e.to_string());
            }
        }
    }

    /// Is the in-event part of `seq` over (its end record in, or its slot
    /// done, or the slot long reused)?
    fn in_event_done(&self, seq: u32, p: &Pending) -> bool {
        p.end.is_some()
            || match self.guards.slot(seq) {
                Some(slot) => slot.0,
                None => self.guards.seq_next() >= seq.saturating_add(STATS_SLOTS),
            }
    }

    /// Completes one snapshot whose in-event part is over.
    fn finish(&self, seq: u32, p: Pending) -> Result<RawSnapshot> {
        let slot = self.guards.slot(seq);
        let end_flags = p.end.as_ref().map(|e| e.flags).or(slot.map(|s| s.4));
        let whole = end_flags.is_some_and(|f| f & END_ALL_TASKS != 0);
        // The event had every task: only command lines and mapped files,
        // which are never read in it, come after.
        let walked = if !whole {
            Some(self.completion.walk())
        } else if self.completion.has_late_views() {
            Some(self.completion.walk_late_views())
        } else {
            None
        };
        // Single flight: the kernel holds `busy` from the moment it gave the
        // snapshot a seq until now, whatever was lost on the way.
        self.guards.release();
        let walked = walked.transpose()?;

        let (emitted, dropped, in_event_ns) = match (&p.end, slot) {
            (Some(e), _) => (
                e.emitted + 1,
                e.dropped,
                p.begin
                    .as_ref()
                    .map_or(0, |b| e.ktime_ns.saturating_sub(b.ktime_ns)),
            ),
            (None, Some((_, emitted, dropped, walk_ns, _))) => (emitted, dropped, walk_ns),
            (None, None) => (p.records.len() as u64, 0, 0),
        };
        let ktime_ns = p
            .begin
            .as_ref()
            .map(|b| b.ktime_ns)
            .or(walked.as_ref().map(|w| w.start_ns))
            .unwrap_or(0);
        let in_event_end = ktime_ns.saturating_add(in_event_ns);
        // From the ring buffer: begin, the event's records, end.
        let received =
            p.records.len() as u64 + u64::from(p.begin.is_some()) + u64::from(p.end.is_some());
        let (records, after_records, walk_end, error) = match walked {
            Some(w) => {
                let n = w.records.len() as u64;
                (
                    merge(p.records, w.records, dropped > 0),
                    n,
                    w.end_ns,
                    p.decode_error.or(w.error),
                )
            }
            None => (p.records, 0, in_event_end, p.decode_error),
        };
        Ok(RawSnapshot {
            seq,
            oncpu: self.samples(),
            begin: p.begin,
            end: p.end,
            records,
            decode_error: error,
            ktime_ns,
            walk_ns: walk_end.saturating_sub(ktime_ns),
            in_event_ns,
            end_flags: end_flags.unwrap_or(0),
            dropped,
            emitted: Some(emitted),
            received: Some(received),
            completion_records: after_records,
            after_event: !whole,
            expects_end: true,
        })
    }

    fn poll_events(&mut self, timeout: Duration) -> Result<Vec<RawSnapshot>> {
        let bytes = self.events.poll(timeout)?;
        self.route(&bytes);
        // A snapshot whose every record was lost is known only from the
        // kernel's seq and its stats slot.
        let kernel_seq = self.guards.seq_next();
        for seq in self.delivered.saturating_add(1)..=kernel_seq {
            if !self.pending.contains_key(&seq) && self.guards.slot(seq).is_some_and(|s| s.0) {
                self.pending.insert(seq, Pending::default());
            }
        }
        let ready: Vec<u32> = self
            .pending
            .iter()
            .filter(|(&seq, p)| self.in_event_done(seq, p))
            .map(|(&seq, _)| seq)
            .collect();
        if ready.is_empty() {
            return Ok(Vec::new());
        }
        // Anything committed before `done` was set is visible now.
        let late = self.events.consume()?;
        self.route(&late);
        let mut done = Vec::with_capacity(ready.len());
        for seq in ready {
            if let Some(p) = self.pending.remove(&seq) {
                done.push(self.finish(seq, p)?);
                self.delivered = self.delivered.max(seq);
            }
        }
        Ok(done)
    }
}

impl Backend for Session {
    fn name(&self) -> &'static str {
        self.name
    }

    fn paths(&self) -> &'static str {
        self.paths
    }

    fn load_report(&self) -> Option<&super::programs::LoadReport> {
        Some(&self.load)
    }

    fn rewind(&mut self) {
        if let Mode::OneShot { .. } = self.mode {
            self.mode = Mode::OneShot { taken: false };
        }
    }

    fn bind_to(&mut self, pid: Option<u32>) -> Result<bool> {
        if self.completion.bound_to() == pid {
            return Ok(true);
        }
        Ok(match self.completion.rebound(pid)? {
            Some(bound) => {
                self.completion = bound;
                true
            }
            None => false,
        })
    }

    fn poll(&mut self, timeout: Duration) -> Result<Vec<RawSnapshot>> {
        match self.mode {
            Mode::OneShot { taken: false } => {
                self.mode = Mode::OneShot { taken: true };
                Ok(vec![self.walk_only(1)?])
            }
            Mode::OneShot { taken: true } => Ok(Vec::new()),
            Mode::Timer { .. } => self.tick(timeout),
            Mode::Events => self.poll_events(timeout),
        }
    }

    fn skipped(&self) -> (u64, u64) {
        self.guards.skipped()
    }

    fn missed(&self) -> u64 {
        self.trigger.as_ref().map_or(0, AttachedTrigger::missed)
    }

    fn sampler_runs(&self) -> Option<super::programs::ProgramRuns> {
        self.sampler.as_ref().map(Sampler::runs)
    }
}

/// Where the iterators take paths from (bpf/complete.bpf.h): the kernel's
/// d_path() for open files (`files`: dump_file, else dump_file_walk) and
/// for cwd, root and executable (`slots`), or else the walk's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IterPaths {
    pub files: bool,
    pub slots: bool,
}

impl IterPaths {
    pub const WALK: IterPaths = IterPaths {
        files: false,
        slots: false,
    };

    /// What to ask of the kernel, best first. Open files come from the
    /// iterator's own trusted `struct file`, which every kernel that lets
    /// iterators call d_path() accepts. Slots are reached through
    /// `task->fs` and `task->mm`, which newer verifiers call untrusted
    /// (6.18 refuses them): they are asked for only where `slots` may work
    /// (a kernel without open-coded iterators, whose seq object has no
    /// bpf_loop for a deep walk), so that a kernel that refuses them does
    /// not load everything twice.
    pub fn choices(files: bool, slots: bool) -> Vec<IterPaths> {
        let first = IterPaths { files, slots };
        if first == Self::WALK {
            vec![first]
        } else {
            vec![first, Self::WALK]
        }
    }

    /// Where file paths come from, for --verbose.
    pub fn describe(&self) -> &'static str {
        match (self.files, self.slots) {
            (true, true) => {
                "in the event built by the walk from dentries, after it from the kernel's d_path()"
            }
            (true, false) => {
                "in the event and for cwd, root and executable built by the walk from dentries, \
                 open files after it from the kernel's d_path()"
            }
            (false, _) => {
                "built by the walk from dentries (this kernel refuses bpf_d_path in iterators)"
            }
        }
    }
}

/// Loads an object with the first of `choices` its kernel accepts (see
/// `IterPaths::choices`). Returns the object, the choice, and how many
/// loads it took.
pub fn load_first<T>(
    choices: &[IterPaths],
    load: impl Fn(IterPaths) -> Result<T>,
) -> Result<(T, IterPaths, u32)> {
    let mut last = None;
    for (i, &paths) in choices.iter().enumerate() {
        match load(paths) {
            Ok(obj) => return Ok((obj, paths, i as u32 + 1)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no way to load the BPF object")))
}
