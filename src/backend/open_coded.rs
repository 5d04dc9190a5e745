//! The open-coded backend (kernels with bpf_iter_task_new, 6.7+): the trigger
//! program walks every task inside the event and streams begin_rec, the
//! records and end_rec through the ring buffer. A one-shot runs the
//! never-attached `SEC("raw_tp")` program once with BPF_PROG_TEST_RUN.

use std::collections::BTreeMap;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{OpenObject, ProgramInput};

use super::attach::{
    attach_trigger, open_configured, read_skipped, select_trigger_program, trigger_programs,
    AttachedTrigger,
};
use super::events::EventStream;
use super::{ringbuf_bytes, Backend, RawSnapshot, TriggerOptions, WalkOptions};
use crate::bpf::opencoded::{OpencodedSkel, OpencodedSkelBuilder};
use crate::record::{self, Record};

const STATS_SLOTS: u32 = 16;

/// BPF_PROG_TEST_RUN of a program that takes no context, by fd (so that it can
/// run on another thread than the one holding the skeleton).
fn test_run(prog_fd: i32) -> std::io::Result<()> {
    let mut opts = libbpf_rs::libbpf_sys::bpf_test_run_opts {
        sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_test_run_opts>() as _,
        ..Default::default()
    };
    // SAFETY: opts is a valid, sized bpf_test_run_opts with no buffers; the
    // fd stays open: the skeleton outlives the thread (it is joined).
    let ret = unsafe { libbpf_rs::libbpf_sys::bpf_prog_test_run_opts(prog_fd, &mut opts) };
    if ret < 0 {
        return Err(std::io::Error::from_raw_os_error(-ret));
    }
    Ok(())
}

pub struct OpenCodedBackend {
    skel: OpencodedSkel<'static>,
    _trigger: Option<AttachedTrigger>,
    events: EventStream,
    oneshot_pending: bool,
    /// Snapshots whose end_rec has not arrived yet, by seq.
    pending: BTreeMap<u32, RawSnapshot>,
    /// The highest seq handed out so far.
    delivered: u32,
}

impl OpenCodedBackend {
    pub fn new(walk: &WalkOptions, trig: &TriggerOptions) -> Result<Self> {
        let mut open =
            open_configured!(OpencodedSkelBuilder, "opencoded", "open-coded", walk, trig);
        select_trigger_program!(open.progs, &trig.spec);
        let ring_bytes = ringbuf_bytes(trig.ringbuf_size);
        open.progs
            .snapshot_once
            .set_autoload(trig.spec.is_oneshot());
        open.progs.bare_walk.set_autoload(false);
        open.progs
            .learn_reader_root
            .set_autoload(!trig.spec.is_oneshot());
        open.maps
            .events
            .set_max_entries(ring_bytes)
            .context("sizing the ring buffer")?;
        if std::env::var_os("ITERSNAP_VSTATS").is_some() {
            open.progs.snapshot_once.set_log_level(4);
        }
        let skel = open
            .load()
            .context("loading the open-coded BPF programs (--verbose shows the verifier log)")?;
        let trigger = attach_trigger(trigger_programs!(skel), trig)?;
        // Paths end at itersnap's own root, as readlink's do: triggers fire
        // in other tasks' contexts, so learn it here (a one-shot learns it
        // itself: it runs in itersnap's thread).
        if !trig.spec.is_oneshot() {
            skel.progs
                .learn_reader_root
                .test_run(ProgramInput::default())
                .context("running the root-learning program")?;
        }
        let events = EventStream::new(&skel.maps.events)?;
        Ok(OpenCodedBackend {
            skel,
            _trigger: trigger,
            events,
            oneshot_pending: trig.spec.is_oneshot(),
            pending: BTreeMap::new(),
            delivered: 0,
        })
    }

    /// Runs the one-shot program on another thread while this one drains
    /// the ring buffer: decoding overlaps the walk, and the buffer need not
    /// hold the whole snapshot at once.
    fn run_oneshot(&mut self, done: &mut Vec<RawSnapshot>) -> Result<()> {
        let fd = self.skel.progs.snapshot_once.as_fd().as_raw_fd();
        let runner = std::thread::spawn(move || test_run(fd));
        // Until the end record is in (not until the thread is seen done:
        // the wait for that would be one more poll timeout).
        while done.is_empty() && !runner.is_finished() {
            let bytes = self.events.poll(Duration::from_millis(1))?;
            self.route(&bytes, done);
        }
        if !done.is_empty() {
            // The end record is the program's last act: the walk is whole,
            // and its thread returns on its own.
            return Ok(());
        }
        runner
            .join()
            .map_err(|_| anyhow::anyhow!("the one-shot snapshot thread panicked"))?
            .context("running the one-shot snapshot program")?;
        let bytes = self.events.consume()?;
        self.route(&bytes, done);
        Ok(())
    }

    /// The kernel's last snapshot number.
    fn kernel_seq(&self) -> u32 {
        self.skel
            .maps
            .bss_data
            .as_deref()
            // SAFETY: a plain integer in the mmapped .bss that BPF writes.
            .map_or(0, |bss| unsafe { std::ptr::read_volatile(&bss.seq_next) })
    }

    /// (done, emitted, dropped, walk_ns) of a snapshot's stats slot, if the
    /// slot still belongs to `seq`.
    fn slot(&self, seq: u32) -> Option<(bool, u64, u64, u64)> {
        let bss = self.skel.maps.bss_data.as_deref()?;
        let st = &bss.stats[(seq % STATS_SLOTS) as usize];
        // SAFETY: plain integers in the mmapped .bss, written by BPF
        // concurrently: read each one once, volatile.
        unsafe {
            if std::ptr::read_volatile(&st.seq) != seq {
                return None;
            }
            Some((
                std::ptr::read_volatile(&st.done) != 0,
                std::ptr::read_volatile(&st.emitted),
                std::ptr::read_volatile(&st.dropped),
                std::ptr::read_volatile(&st.walk_ns),
            ))
        }
    }

    /// Routes decoded records to their snapshots; returns the completed ones.
    fn route(&mut self, bytes: &[u8], done: &mut Vec<RawSnapshot>) {
        let (records, error) = record::decode_all(bytes);
        for rec in records {
            let seq = rec.seq();
            let slot_walk_ns = self.slot(seq).map_or(0, |s| s.3);
            let snap = self.pending.entry(seq).or_insert_with(|| RawSnapshot {
                seq,
                ..RawSnapshot::default()
            });
            match rec {
                Record::Begin(b) => {
                    snap.ktime_ns = b.ktime_ns;
                    snap.begin = Some(b);
                }
                Record::End(e) => {
                    snap.walk_ns = match (&snap.begin, slot_walk_ns) {
                        (Some(_), _) => e.ktime_ns.saturating_sub(snap.ktime_ns),
                        // Without its begin record, the start is in the slot.
                        (None, walk_ns) => {
                            snap.ktime_ns = e.ktime_ns.saturating_sub(walk_ns);
                            walk_ns
                        }
                    };
                    snap.dropped = e.dropped;
                    snap.emitted = Some(e.emitted + 1);
                    snap.end = Some(e);
                    if let Some(s) = self.pending.remove(&seq) {
                        done.push(s);
                    }
                }
                Record::File(mut f) => {
                    crate::snapshot::settle_path(&mut f);
                    snap.records.push(Record::File(f));
                }
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
}

impl Backend for OpenCodedBackend {
    fn name(&self) -> &'static str {
        "open-coded"
    }

    fn poll(&mut self, timeout: Duration) -> Result<Vec<RawSnapshot>> {
        let mut done = Vec::new();
        if self.oneshot_pending {
            self.oneshot_pending = false;
            self.run_oneshot(&mut done)?;
        } else {
            let bytes = self.events.poll(timeout)?;
            self.route(&bytes, &mut done);
        }

        // Snapshots whose walk finished but whose end_rec never came: it was
        // dropped. The stats slot has the authoritative counts. A snapshot
        // whose every record was lost is known only from the kernel's seq.
        let kernel_seq = self.kernel_seq();
        let first_unseen = self
            .delivered
            .max(done.iter().map(|s| s.seq).max().unwrap_or(0))
            + 1;
        for seq in first_unseen..=kernel_seq {
            if !self.pending.contains_key(&seq)
                && !done.iter().any(|s| s.seq == seq)
                && self.slot(seq).is_some_and(|s| s.0)
            {
                self.pending.insert(
                    seq,
                    RawSnapshot {
                        seq,
                        ..RawSnapshot::default()
                    },
                );
            }
        }
        let finished: Vec<u32> = self
            .pending
            .keys()
            .copied()
            .filter(|&seq| self.slot(seq).is_some_and(|s| s.0))
            .collect();
        if !finished.is_empty() {
            // Anything committed before `done` was set is visible now.
            let late = self.events.consume()?;
            self.route(&late, &mut done);
            for seq in finished {
                if let (Some(mut snap), Some((_, emitted, dropped, walk_ns))) =
                    (self.pending.remove(&seq), self.slot(seq))
                {
                    snap.dropped = dropped;
                    snap.emitted = Some(emitted);
                    snap.walk_ns = walk_ns;
                    if snap.begin.is_none() {
                        snap.ktime_ns = 0;
                    }
                    done.push(snap);
                }
            }
        }
        done.sort_by_key(|s| s.seq);
        if let Some(last) = done.last() {
            self.delivered = self.delivered.max(last.seq);
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

/// The bare walk (scripts/bench): (tasks, fds, ns) of the same loops as a
/// snapshot, counting only. The kernel's own limit, to compare against.
pub fn bare_walk() -> Result<(u64, u64, u64)> {
    let storage: &'static mut MaybeUninit<OpenObject> = Box::leak(Box::new(MaybeUninit::uninit()));
    let mut open = OpencodedSkelBuilder::default()
        .open(storage)
        .context("opening the open-coded BPF object")?;
    open.progs.on_signal.set_autoload(false);
    open.progs.on_syscall.set_autoload(false);
    open.progs.on_tracepoint.set_autoload(false);
    open.progs.on_uprobe.set_autoload(false);
    open.progs.on_timer.set_autoload(false);
    open.progs.snapshot_once.set_autoload(false);
    open.progs.learn_reader_root.set_autoload(false);
    let skel = open.load().context("loading the bare-walk program")?;
    test_run(skel.progs.bare_walk.as_fd().as_raw_fd()).context("running the bare walk")?;
    let bss = skel.maps.bss_data.as_deref().context("no .bss")?;
    Ok((bss.bare.tasks, bss.bare.files, bss.bare.ns))
}
