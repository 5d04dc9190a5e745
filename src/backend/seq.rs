//! The seq backend: `iter/task` and `iter/task_file` programs read through
//! iterator fds (bpf_iter_create) from user space. Kernels 5.8 and later.
//! With a trigger, the trigger program only reports the event through the
//! ring buffer and the iterators are read right after it: such a snapshot
//! shows the state just *after* the event.

use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Iter, Link};

use super::attach::{
    attach_trigger, open_configured, read_skipped, select_trigger_program, trigger_programs,
    AttachedTrigger,
};
use super::events::EventStream;
use super::{
    monotonic_ns, ringbuf_bytes, Backend, RawSnapshot, TriggerOptions, TriggerSpec, WalkOptions,
    OPT_D_PATH,
};
use crate::bpf::seqiter::{SeqiterSkel, SeqiterSkelBuilder};
use crate::record::{self, BeginRec, Record};

/// The seq backend's ring buffer only carries begin records.
pub const SEQ_RINGBUF_BYTES: u32 = 64 * 1024;

/// enum trigger_kind in bpf/itersnap.h.
const TRIGGER_TIMER: u32 = 6;

pub struct SeqBackend {
    skel: SeqiterSkel<'static>,
    task_link: Link,
    file_link: Option<Link>,
    _trigger: Option<AttachedTrigger>,
    events: EventStream,
    oneshot_pending: bool,
    /// Paths come from bpf_d_path() (OPT_D_PATH was accepted).
    d_path: bool,
    /// --interval: a user-space timer (period, next tick, snapshots taken).
    timer: Option<(Duration, Instant, u32)>,
}

impl SeqBackend {
    pub fn new(walk: &WalkOptions, trig: &TriggerOptions) -> Result<Self> {
        // Paths come from the kernel's d_path() where iterator programs may
        // call it; a kernel whose verifier refuses it gets the walk's own
        // (bpf/walk.bpf.h): the programs are loaded again without it.
        let (skel, d_path) = match Self::load(walk, trig, walk.files) {
            Ok(skel) => (skel, walk.files),
            Err(_) if walk.files => (Self::load(walk, trig, false)?, false),
            Err(e) => return Err(e),
        };
        let timer = match trig.spec {
            TriggerSpec::Interval { period } => Some((period, Instant::now(), 0)),
            _ => None,
        };
        let task_link = skel
            .progs
            .dump_task
            .attach()
            .context("attaching iter/task")?;
        let file_link = if walk.files {
            Some(
                skel.progs
                    .dump_file
                    .attach()
                    .context("attaching iter/task_file")?,
            )
        } else {
            None
        };
        let trigger = if timer.is_some() {
            None
        } else {
            attach_trigger(trigger_programs!(skel), trig)?
        };
        let events = EventStream::new(&skel.maps.events)?;
        Ok(SeqBackend {
            skel,
            task_link,
            file_link,
            _trigger: trigger,
            events,
            oneshot_pending: trig.spec.is_oneshot(),
            d_path,
            timer,
        })
    }

    /// Opens, configures and loads the programs; `d_path` asks for paths
    /// from bpf_d_path().
    fn load(
        walk: &WalkOptions,
        trig: &TriggerOptions,
        d_path: bool,
    ) -> Result<SeqiterSkel<'static>> {
        let mut open = open_configured!(SeqiterSkelBuilder, "seqiter", "seq-iterator", walk, trig);
        if let Some(rodata) = open.maps.rodata_data.as_deref_mut() {
            rodata.cfg_ringbuf_bytes = u64::from(ringbuf_bytes(SEQ_RINGBUF_BYTES));
            if d_path {
                rodata.cfg_flags |= OPT_D_PATH;
            }
        }
        select_trigger_program!(open.progs, &trig.spec);
        // Old kernels get a user-space timer instead of a perf-event program.
        if let TriggerSpec::Interval { .. } = trig.spec {
            open.progs.on_timer.set_autoload(false);
        }
        if !walk.files {
            open.progs.dump_file.set_autoload(false);
        }
        // Only begin records travel through it: a few pages are plenty.
        open.maps
            .events
            .set_max_entries(ringbuf_bytes(SEQ_RINGBUF_BYTES))
            .context("sizing the ring buffer")?;
        open.load()
            .context("loading the seq-iterator BPF programs (--verbose shows the verifier log)")
    }

    /// The user-space timer: waits for the next tick (at most `timeout`),
    /// then walks. Ticks missed while a walk ran are skipped, as the
    /// kernel's single-flight guard would.
    fn tick(&mut self, timeout: Duration) -> Result<Vec<RawSnapshot>> {
        let Some((period, next, taken)) = self.timer else {
            return Ok(Vec::new());
        };
        let now = Instant::now();
        if next > now {
            std::thread::sleep((next - now).min(timeout));
            if Instant::now() < next {
                return Ok(Vec::new());
            }
        }
        let tick_time = Instant::now();
        let seq = taken + 1;
        let mut snap = self.walk(seq)?;
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
        // The next tick is a period after this one, unless the walk took longer.
        let next = (tick_time + period).max(Instant::now());
        self.timer = Some((period, next, seq));
        Ok(vec![snap])
    }

    /// Reads both iterators once: the walk, stamped with `seq`.
    fn walk(&mut self, seq: u32) -> Result<RawSnapshot> {
        if let Some(bss) = self.skel.maps.bss_data.as_deref_mut() {
            bss.snapshot_seq = seq;
        }
        let start = monotonic_ns();
        // Tasks and files are two iterators: read them at once, one per CPU,
        // each decoded as it is read.
        let (tasks, files) = std::thread::scope(|scope| -> Result<_> {
            let files = self
                .file_link
                .as_ref()
                .map(|link| scope.spawn(move || read_iter(link, "task_file")));
            let tasks = read_iter(&self.task_link, "task")?;
            let files = match files {
                Some(handle) => handle
                    .join()
                    .map_err(|_| anyhow::anyhow!("the file iterator thread panicked"))??,
                None => (Vec::new(), None),
            };
            Ok((tasks, files))
        })?;
        let walk_ns = monotonic_ns() - start;
        let (mut records, task_error) = tasks;
        records.extend(files.0);
        let error = task_error.or(files.1);
        Ok(RawSnapshot {
            seq,
            records,
            decode_error: error.map(|e| e.to_string()),
            ktime_ns: start,
            walk_ns,
            ..RawSnapshot::default()
        })
    }

    /// Lets the trigger program fire again (single flight across user space).
    fn release(&mut self) {
        if let Some(bss) = self.skel.maps.bss_data.as_deref_mut() {
            // SAFETY: a plain integer in the mmapped .bss that BPF also writes.
            unsafe { std::ptr::write_volatile(&mut bss.busy, 0) };
        }
    }
}

/// Reads one pass of an iterator (each read runs the program over more
/// objects) and decodes it on the way, through one fixed buffer.
fn read_iter(link: &Link, what: &str) -> Result<(Vec<Record>, Option<record::DecodeError>)> {
    let mut iter = Iter::new(link).with_context(|| format!("creating the {what} iterator"))?;
    let mut decoder = record::StreamDecoder::new(256 << 10);
    loop {
        match iter.read(decoder.spare()) {
            Ok(0) => break,
            Ok(n) => decoder.commit(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).with_context(|| format!("reading the {what} iterator")),
        }
    }
    Ok(decoder.finish())
}

impl Backend for SeqBackend {
    fn name(&self) -> &'static str {
        "seq"
    }

    fn paths(&self) -> &'static str {
        if self.d_path {
            "from the kernel's d_path()"
        } else {
            "built by the walk from dentries (this kernel refuses bpf_d_path in iterators)"
        }
    }

    fn poll(&mut self, timeout: Duration) -> Result<Vec<RawSnapshot>> {
        if self.oneshot_pending {
            self.oneshot_pending = false;
            return Ok(vec![self.walk(1)?]);
        }
        if self.timer.is_some() {
            return self.tick(timeout);
        }
        let bytes = self.events.poll(timeout)?;
        let (records, error) = record::decode_all(&bytes);
        let mut done = Vec::new();
        for rec in records {
            if let Record::Begin(begin) = rec {
                let walked = self.walk(begin.seq);
                self.release();
                let mut snap = walked?;
                snap.after_event = true;
                snap.begin = Some(begin);
                done.push(snap);
            }
        }
        if let (Some(e), Some(last)) = (error, done.last_mut()) {
            last.decode_error = Some(e.to_string());
        }
        Ok(done)
    }

    fn skipped(&self) -> (u64, u64) {
        read_skipped!(self.skel.maps.bss_data.as_deref())
    }

    fn missed(&self) -> u64 {
        self._trigger.as_ref().map_or(0, AttachedTrigger::missed)
    }
}
