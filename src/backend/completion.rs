//! Completion: the seq iterators (iter/task, iter/task_file of
//! bpf/complete.bpf.h), read from itersnap's own process right after an
//! event (or for a one-shot or a tick), and merged with what the trigger
//! program captured inside the event. The kernel reschedules between the
//! objects an iterator visits, so a read holds no CPU for long.
//!
//! Filtered snapshots read less: with --pid, the iterators are bound to that
//! process in the kernel (Linux 6.1+); with a COMM filter, the open-coded
//! object's scan (find_comm) names the processes that may bear it, and the
//! task, file and command-line iterators are bound to each; without the
//! scan (seq object) the tasks are read first, then the files of just those
//! processes, one bound iterator each. Elsewhere, or for many processes,
//! the iterators visit every task.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::ptr::NonNull;

use anyhow::{Context, Result};
use libbpf_rs::libbpf_sys as sys;

use super::monotonic_ns;
use crate::kinds::cmdline::CMDLINE_IN_EVENT;
use crate::kinds::holds::Target;
use crate::kinds::process::FD_TXT;
use crate::kinds::task::{CAPTURE_FILES, FDS_ALL};
use crate::record::{self, Record};

/// More processes than this under a COMM filter: one pass over every file
/// costs less than a bound iterator per process (a link each).
const BOUND_FILE_ITERATORS_MAX: usize = 32;

/// An iterator link, bound to one process or not; detached when dropped.
pub struct IterLink(NonNull<sys::bpf_link>);

impl IterLink {
    /// Attaches an iterator program (`prog`, of a loaded object that
    /// outlives the link), bound to process `pid` if given.
    pub fn attach(prog: NonNull<sys::bpf_program>, pid: Option<u32>) -> Result<IterLink> {
        let mut info = sys::bpf_iter_link_info::default();
        let opts = sys::bpf_iter_attach_opts {
            sz: std::mem::size_of::<sys::bpf_iter_attach_opts>() as _,
            link_info: if pid.is_some() {
                info.task.pid = pid.unwrap_or(0);
                &mut info
            } else {
                std::ptr::null_mut()
            },
            link_info_len: if pid.is_some() {
                std::mem::size_of::<sys::bpf_iter_link_info>() as u32
            } else {
                0
            },
            ..Default::default()
        };
        // SAFETY: prog is a loaded program of a live object; opts and the
        // link info it points to outlive the call.
        let link = unsafe { sys::bpf_program__attach_iter(prog.as_ptr(), &opts) };
        // libbpf returns NULL with errno set on failure.
        NonNull::new(link)
            .map(IterLink)
            .ok_or_else(|| std::io::Error::last_os_error().into())
    }

    /// A new pass of the iterator, as a file to read.
    fn open(&self, what: &str) -> Result<File> {
        // SAFETY: the link is valid while self lives.
        let fd = unsafe { sys::bpf_iter_create(sys::bpf_link__fd(self.0.as_ptr())) };
        if fd < 0 {
            return Err(std::io::Error::from_raw_os_error(-fd))
                .with_context(|| format!("creating the {what} iterator"));
        }
        // SAFETY: the kernel just gave us this fd and nothing else owns it.
        Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// One pass, read on this thread and decoded on another (paths
    /// turned into their text there too): the kernel's walk (inside read()) and user space's work
    /// overlap, as two CPUs can.
    fn read_pipelined(&self, what: &str) -> Result<(Vec<Record>, Option<record::DecodeError>)> {
        const CHUNK: usize = 64 << 10;
        let mut iter = self.open(what)?;
        // (buffer, bytes read into it). A read returns what the kernel's
        // seq buffer held (32 KiB or less), so a buffer of 64 KiB is never
        // short. Buffers go back to the reader once decoded, whole: a pass
        // zeroes and allocates only the few it has in flight, not one per
        // read.
        let (chunks, arrived) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(8);
        let (emptied, reusable) = std::sync::mpsc::channel::<Vec<u8>>();
        std::thread::scope(|scope| {
            let decoder = scope.spawn(move || {
                let mut decoder = record::StreamDecoder::new(CHUNK);
                for (chunk, n) in arrived {
                    decoder.feed(&chunk[..n]);
                    let _ = emptied.send(chunk);
                }
                decoder.finish()
            });
            let read = (|| -> Result<()> {
                loop {
                    let mut chunk = reusable.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
                    match iter.read(&mut chunk) {
                        Ok(0) => return Ok(()),
                        Ok(n) => {
                            if chunks.send((chunk, n)).is_err() {
                                return Ok(()); // the decoder stopped
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            return Err(e).with_context(|| format!("reading the {what} iterator"))
                        }
                    }
                }
            })();
            drop(chunks);
            let decoded = decoder
                .join()
                .map_err(|_| anyhow::anyhow!("the {what} decoder thread panicked"))?;
            read.map(|()| decoded)
        })
    }

    /// One pass of the iterator (each read runs the program over more
    /// objects), decoded on the way through one fixed buffer.
    fn read(&self, what: &str) -> Result<(Vec<Record>, Option<record::DecodeError>)> {
        let mut iter = self.open(what)?;
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
}

impl Drop for IterLink {
    fn drop(&mut self) {
        // SAFETY: the link came from libbpf and is destroyed once, here.
        unsafe { sys::bpf_link__destroy(self.0.as_ptr()) };
    }
}

// SAFETY: a bpf_link is a kernel fd and libbpf's bookkeeping of it; reading
// an iterator from another thread touches only the fd.
unsafe impl Send for IterLink {}
unsafe impl Sync for IterLink {}

/// How a pass reads the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilePass {
    /// iter/task, then iter/task_file over every process.
    AfterTasks,
    /// iter/task first, then iter/task_file bound to each selected process.
    ByProcess,
    /// The task iterator writes each process's files with it
    /// (dump_task_files, 6.7+); iter/task_file only for what it left.
    WithTasks,
    /// No files.
    None,
}

/// The iterators of a loaded object.
pub struct Completion {
    task: IterLink,
    /// The iter/task program, for links bound to one process each.
    task_prog: NonNull<sys::bpf_program>,
    /// The command-line program, likewise.
    cmdline_prog: Option<NonNull<sys::bpf_program>>,
    /// The processes a filter names before the walk: a COMM query's scan
    /// (where the object has one), or several --pid.
    comm_scan: Option<CommScan>,
    /// The sleepable iter/task of command lines, where the kernel has it.
    cmdline: Option<IterLink>,
    /// iter/task_vma, with --maps.
    maps: Option<IterLink>,
    /// Its program, likewise.
    maps_prog: Option<NonNull<sys::bpf_program>>,
    /// The one process every link is bound to, if they are.
    bound_to: Option<u32>,
    /// --threads with a COMM: the list of processes whose main threads the
    /// walk needs (select.bpf.h), which each walk finds first.
    named_threads: Option<NamedThreads>,
    /// --file, --mount: the holders first (walk_holders_first).
    holders_first: Option<HoldersFirst>,
    /// The kernel binds iterators to one process (6.1+).
    binds: bool,
    /// iter/task_file over every process; attached when a pass may need it.
    file: Option<IterLink>,
    /// The iter/task_file program, for links bound to one process each.
    file_prog: Option<NonNull<sys::bpf_program>>,
    pass: FilePass,
}

// SAFETY: file_prog is only used to attach links, from the thread that
// polls; the object it belongs to outlives the Completion (Session).
unsafe impl Send for Completion {}

/// One pass of both iterators.
pub struct Walked {
    pub records: Vec<Record>,
    pub error: Option<String>,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// The iterator programs of a loaded object that a Completion reads.
pub struct IterPrograms {
    /// iter/task: dump_task, or dump_task_files when `tasks_carry_files`.
    pub task: NonNull<sys::bpf_program>,
    pub tasks_carry_files: bool,
    /// iter/task_file, when files are wanted.
    pub file: Option<NonNull<sys::bpf_program>>,
    /// iter.s/task of command lines, where loaded (5.18+).
    pub cmdline: Option<NonNull<sys::bpf_program>>,
    /// iter/task_vma, with --maps.
    pub maps: Option<NonNull<sys::bpf_program>>,
}

impl Completion {
    /// Attaches the iterators. One --pid binds them to that process where
    /// the kernel can (6.1+), several are read one by one through links
    /// bound to each; under a COMM filter files are read process by
    /// process.
    pub fn attach(progs: IterPrograms, pids: &[u32], comm_filter: bool) -> Result<Completion> {
        // Older kernels refuse the binding: then every task is visited
        // and the programs' own filter keeps the processes.
        let bound = match pids {
            [one] => IterLink::attach(progs.task, Some(*one)).ok(),
            _ => None,
        };
        let pid = bound.is_some().then(|| pids[0]);
        let task = match bound {
            Some(link) => link,
            None => IterLink::attach(progs.task, None).context("attaching iter/task")?,
        };
        // Asked of itersnap's own process, where it matters.
        let binds = pid.is_some()
            || ((pids.len() > 1 || comm_filter)
                && IterLink::attach(progs.task, Some(std::process::id())).is_ok());
        // Several pids: their processes are known before the walk.
        let several = pids.len() > 1 && binds;
        let pass = match progs.file {
            None => FilePass::None,
            Some(_) if progs.tasks_carry_files => FilePass::WithTasks,
            Some(_) if (comm_filter || several) && pid.is_none() => FilePass::ByProcess,
            Some(_) => FilePass::AfterTasks,
        };
        // The task iterator carrying files needs iter/task_file only for
        // what it leaves, through links bound to those processes.
        let file = match (progs.file, pass) {
            (Some(prog), FilePass::AfterTasks | FilePass::ByProcess) => {
                Some(IterLink::attach(prog, pid).context("attaching iter/task_file")?)
            }
            _ => None,
        };
        // Bound to --pid's process where the task iterator could be.
        let cmdline = progs
            .cmdline
            .map(|prog| IterLink::attach(prog, pid))
            .transpose()
            .context("attaching the command-line iterator")?;
        let maps = progs
            .maps
            .map(|prog| IterLink::attach(prog, pid))
            .transpose()
            .context("attaching iter/task_vma")?;
        Ok(Completion {
            task,
            task_prog: progs.task,
            cmdline_prog: progs.cmdline,
            comm_scan: several.then(|| CommScan::known(pids.to_vec())),
            named_threads: None,
            holders_first: None,
            binds,
            cmdline,
            maps,
            maps_prog: progs.maps,
            bound_to: pid,
            file,
            file_prog: progs.file,
            pass,
        })
    }

    /// The same iterators attached afresh, bound to one process (where the
    /// kernel binds them: None where it does not) or to none: what a server
    /// does to ask `--pid P` of programs loaded without a pid filter.
    pub fn rebound(&self, pid: Option<u32>) -> Result<Option<Completion>> {
        let progs = IterPrograms {
            task: self.task_prog,
            tasks_carry_files: self.pass == FilePass::WithTasks,
            file: self.file_prog,
            cmdline: self.cmdline_prog,
            maps: self.maps_prog,
        };
        let pids: Vec<u32> = pid.into_iter().collect();
        let fresh = Completion::attach(progs, &pids, false)?;
        Ok((fresh.bound_to == pid).then_some(fresh))
    }

    /// The one process the iterators are bound to, if they are.
    pub fn bound_to(&self) -> Option<u32> {
        self.bound_to
    }

    /// Reads the iterators once: command lines on a thread of their own,
    /// beside the pass over tasks and files, then mapped files.
    ///
    /// Only the command-line iterator runs beside another: its record is
    /// its own. The others share a per-CPU scratch record, and iterator
    /// programs run preemptibly (with migration disabled): on a kernel that
    /// preempts (PREEMPT, PREEMPT_LAZY, PREEMPT_RT), one preempted while it
    /// fills the record could find it overwritten by another on its CPU.
    pub fn walk(&self) -> Result<Walked> {
        let start_ns = monotonic_ns();
        let done = |(mut records, error): (Vec<Record>, Option<String>)| -> Result<Walked> {
            whole_slot_paths(&mut records);
            Ok(Walked {
                records,
                error,
                start_ns,
                end_ns: monotonic_ns(),
            })
        };
        if let Some(holders) = &self.holders_first {
            let found = self.walk_holders_first(holders);
            holders.set(HOLDERS_ALL);
            return done(found?);
        }
        let scanned = match &self.named_threads {
            Some(named) => self.find_named_threads(named)?,
            None => self.scanned_processes()?,
        };
        if let Some(tgids) = scanned {
            return done(self.walk_processes(&tgids)?);
        }
        let (mut records, error, late) = std::thread::scope(|scope| -> Result<_> {
            let cmdline = &self.cmdline;
            let late = scope.spawn(move || read_view(cmdline, "command-line"));
            let (records, error) = match self.pass {
                FilePass::AfterTasks | FilePass::None => self.walk_tasks_then_files()?,
                FilePass::ByProcess => self.walk_by_process()?,
                FilePass::WithTasks => self.walk_with_tasks()?,
            };
            let late = late
                .join()
                .map_err(|_| anyhow::anyhow!("the command-line and task_vma thread panicked"))??;
            Ok((records, error, late))
        })?;
        records.extend(late.0);
        let (maps, maps_error) = read_view(&self.maps, "task_vma")?;
        records.extend(maps);
        let late_error = late.1.or(maps_error);
        done((records, error.or(late_error)))
    }

    /// Whether a pass reads views that are never taken in the event
    /// (command lines, mapped files).
    pub fn has_late_views(&self) -> bool {
        self.cmdline.is_some() || self.maps.is_some()
    }

    /// Only the views never taken in the event: for a snapshot whose event
    /// captured every selected task, which needs no other completion.
    pub fn walk_late_views(&self) -> Result<Walked> {
        let start_ns = monotonic_ns();
        let (records, error) = read_late_views(&self.cmdline, &self.maps)?;
        Ok(Walked {
            records,
            error,
            start_ns,
            end_ns: monotonic_ns(),
        })
    }

    /// Tasks, then files: one after the other, never side by side (they
    /// share the per-CPU scratch record: see walk()).
    fn walk_tasks_then_files(&self) -> Result<(Vec<Record>, Option<String>)> {
        let (mut records, task_error) = self.task.read("task")?;
        let (files, file_error) = match &self.file {
            Some(link) => link.read("task_file")?,
            None => (Vec::new(), None),
        };
        records.extend(files);
        Ok((records, task_error.or(file_error).map(|e| e.to_string())))
    }

    /// Gives the completion a COMM query's scan (see CommScan).
    pub fn set_comm_scan(&mut self, scan: CommScan) {
        self.comm_scan = Some(scan);
    }

    /// The processes a COMM query's scan found, when it has one that ran
    /// to its end; `None`: walk every task. Not with --maps, whose iterator
    /// is not bound here.
    fn scanned_processes(&self) -> Result<Option<Vec<u32>>> {
        match &self.comm_scan {
            Some(scan) if self.pass == FilePass::ByProcess || self.pass == FilePass::None => {
                if self.maps.is_some() {
                    return Ok(None);
                }
                (scan.run)()
            }
            _ => Ok(None),
        }
    }

    /// --file, --mount: walks look for the holders first.
    pub fn set_holders_first(&mut self, holders: HoldersFirst) {
        self.holders_first = Some(holders);
        // Asked of itersnap's own process, for the identity pass.
        self.binds =
            self.binds || IterLink::attach(self.task_prog, Some(std::process::id())).is_ok();
    }

    /// --file, --mount: a first pass reads only the files held (fds, cwd,
    /// root, executable, mappings: bpf/kinds/file.bpf.h's HOLDERS_FILES),
    /// then a second only the identity and command lines of the processes
    /// that hold one, through iterators bound to each where the kernel
    /// allows: no other process's records are built, read or decoded.
    fn walk_holders_first(&self, h: &HoldersFirst) -> Result<(Vec<Record>, Option<String>)> {
        h.set(HOLDERS_FILES);
        let (mut records, files_error) = match self.pass {
            FilePass::WithTasks => self.walk_with_tasks()?,
            _ => self.walk_tasks_then_files()?,
        };
        let (maps, maps_error) = read_view(&self.maps, "task_vma")?;
        records.extend(maps);
        let mut holders: Vec<u32> = records
            .iter()
            .filter_map(|r| match r {
                Record::File(f) if h.targets.iter().any(|t| t.holds(f.dev, f.ino)) => Some(f.pid),
                _ => None,
            })
            .collect();
        holders.sort_unstable();
        holders.dedup();
        // Their files, but the executable, which the identity pass reads
        // whatever it is; the task records said which fds were left.
        records.retain(|r| match r {
            Record::File(f) => holders.binary_search(&f.pid).is_ok() && f.fd != FD_TXT,
            Record::Socket(s) => holders.binary_search(&s.pid).is_ok(),
            _ => false,
        });
        let mut error = files_error.or(maps_error);
        if holders.is_empty() {
            return Ok((records, error));
        }
        h.set(HOLDERS_IDENTITY);
        let links: Vec<(IterLink, Option<IterLink>)> =
            if self.binds && holders.len() <= BOUND_FILE_ITERATORS_MAX {
                holders
                    .iter()
                    .filter_map(|&tgid| {
                        let task = IterLink::attach(self.task_prog, Some(tgid)).ok()?;
                        let cmdline = self
                            .cmdline_prog
                            .and_then(|prog| IterLink::attach(prog, Some(tgid)).ok());
                        Some((task, cmdline))
                    })
                    .collect()
            } else {
                vec![(
                    IterLink::attach(self.task_prog, None).context("attaching iter/task")?,
                    self.cmdline_prog
                        .map(|prog| IterLink::attach(prog, None))
                        .transpose()
                        .context("attaching the command-line iterator")?,
                )]
            };
        for (task, cmdline) in &links {
            let (more, e) = task.read("task")?;
            records.extend(more);
            error = error.or(e.map(|e| e.to_string()));
            let (more, e) = read_view(cmdline, "command-line")?;
            records.extend(more);
            error = error.or(e);
        }
        Ok((records, error))
    }

    /// Gives the completion the .bss list of processes with named threads
    /// (--threads with a COMM); with --pid, whose processes are bound
    /// already, every main thread of theirs is let through instead.
    pub fn set_named_threads(&mut self, named: NamedThreads, pids: bool) {
        if pids {
            named.set(None);
            return;
        }
        self.named_threads = Some(named);
    }

    /// Before a walk, --threads with a COMM: the processes with a thread of
    /// that name, listed in the .bss for the programs' filter. The open-coded
    /// object's scan (find_comm) lists them itself; else a first pass of
    /// the task iterator, which selects threads by their own names, finds
    /// them. Returns the processes to walk through iterators bound to each,
    /// as scanned_processes() does; `None`: walk every task.
    fn find_named_threads(&self, named: &NamedThreads) -> Result<Option<Vec<u32>>> {
        let bindable = matches!(self.pass, FilePass::ByProcess | FilePass::None)
            && self.maps.is_none()
            && self.binds;
        if let Some(scan) = &self.comm_scan {
            let found = (scan.run)()?;
            return Ok(found.filter(|_| bindable));
        }
        named.set(Some(&[]));
        let (records, _) = self.task.read("task")?;
        // The processes with a thread of that name but not of that name
        // themselves (those select every thread already): no main thread.
        let mains: HashSet<u32> = records
            .iter()
            .filter_map(|r| match r {
                Record::Task(t) if t.pid == t.tgid => Some(t.tgid),
                _ => None,
            })
            .collect();
        let mut others: Vec<u32> = records
            .iter()
            .filter_map(|r| match r {
                Record::Task(t) if !mains.contains(&t.tgid) => Some(t.tgid),
                _ => None,
            })
            .collect();
        others.sort_unstable();
        others.dedup();
        named.set((others.len() <= NAMED_THREADS_PROCS_MAX).then_some(&others[..]));
        // Every process with a task of that name (a main thread's own
        // included), for bound iterators.
        Ok(bindable.then(|| task_tgids(&records)))
    }

    /// The tasks, files and command lines of the processes `tgids`, through
    /// iterators bound to each (the programs keep applying the filter). A
    /// process gone since the scan has nothing to read.
    fn walk_processes(&self, tgids: &[u32]) -> Result<(Vec<Record>, Option<String>)> {
        let mut records = Vec::new();
        let mut error = None;
        for &tgid in tgids {
            if let Ok(link) = IterLink::attach(self.task_prog, Some(tgid)) {
                let (more, e) = link.read("task")?;
                records.extend(more);
                error = error.or(e.map(|e| e.to_string()));
            }
        }
        let selected = task_tgids(&records);
        if self.pass == FilePass::ByProcess {
            let wanted: Vec<(u32, u32)> = selected.iter().map(|&tgid| (tgid, 0)).collect();
            let (files, file_error) = self.files_of(&wanted)?;
            records.extend(files);
            error = error.or(file_error);
        }
        if let Some(prog) = self.cmdline_prog {
            for &tgid in &selected {
                if let Ok(link) = IterLink::attach(prog, Some(tgid)) {
                    let (more, e) = link.read("command-line")?;
                    records.extend(more);
                    error = error.or(e.map(|e| e.to_string()));
                }
            }
        }
        Ok((records, error))
    }

    /// The tasks a COMM filter selects, then each one's files.
    fn walk_by_process(&self) -> Result<(Vec<Record>, Option<String>)> {
        let (mut records, error) = self.task.read("task")?;
        let wanted: Vec<(u32, u32)> = task_tgids(&records)
            .into_iter()
            .map(|tgid| (tgid, 0))
            .collect();
        let (files, file_error) = self.files_of(&wanted)?;
        records.extend(files);
        Ok((records, error.map(|e| e.to_string()).or(file_error)))
    }

    /// Tasks with their files; then the fds they left, from iter/task_file.
    fn walk_with_tasks(&self) -> Result<(Vec<Record>, Option<String>)> {
        let (mut records, error) = self.task.read_pipelined("task")?;
        let left: Vec<(u32, u32)> = records
            .iter()
            .filter_map(|r| match r {
                Record::Task(t)
                    if t.pid == t.tgid
                        && t.capture & CAPTURE_FILES != 0
                        && t.fds_upto != FDS_ALL =>
                {
                    Some((t.tgid, t.fds_upto))
                }
                _ => None,
            })
            .collect();
        let (files, file_error) = self.files_of(&left)?;
        records.extend(files);
        Ok((records, error.map(|e| e.to_string()).or(file_error)))
    }

    /// The files of the processes `wanted` (tgid, from which fd) through
    /// iterators bound to each; one pass over every file when they are
    /// many, or when the kernel cannot bind (before 6.1).
    fn files_of(&self, wanted: &[(u32, u32)]) -> Result<(Vec<Record>, Option<String>)> {
        let Some(prog) = self.file_prog else {
            return Ok((Vec::new(), None));
        };
        if wanted.is_empty() {
            return Ok((Vec::new(), None));
        }
        let bound: Option<Vec<IterLink>> = (wanted.len() <= BOUND_FILE_ITERATORS_MAX)
            .then(|| {
                wanted
                    .iter()
                    .map(|&(tgid, _)| IterLink::attach(prog, Some(tgid)).ok())
                    .collect()
            })
            .flatten();
        let every;
        let links: Vec<&IterLink> = match (&bound, &self.file) {
            (Some(links), _) => links.iter().collect(),
            (None, Some(all)) => vec![all],
            (None, None) => {
                every = IterLink::attach(prog, None).context("attaching iter/task_file")?;
                vec![&every]
            }
        };
        let from: HashMap<u32, u32> = wanted.iter().copied().collect();
        let mut out = Vec::new();
        let mut error = None;
        for link in links {
            let (files, e) = link.read("task_file")?;
            out.extend(files.into_iter().filter(|r| {
                let (pid, fd) = match r {
                    Record::File(f) => (f.pid, f.fd),
                    Record::Socket(s) => (s.pid, s.fd),
                    _ => return false,
                };
                from.get(&pid)
                    .is_some_and(|&upto| u32::try_from(fd).is_ok_and(|fd| fd >= upto))
            }));
            error = error.or(e.map(|e| e.to_string()));
        }
        Ok((out, error))
    }

    /// Reads the task iterator once, for its programs to learn itersnap's
    /// root (iterators run in the reader's context; triggers do not). The
    /// caller sets the object's `learn_root_only` flag around it.
    pub fn learn_root(&self) -> Result<()> {
        self.task
            .read("task")
            .map(|_| ())
            .context("learning itersnap's root")
    }
}

/// The processes of the task records, each once, in order.
fn task_tgids(records: &[Record]) -> Vec<u32> {
    let mut tgids: Vec<u32> = records
        .iter()
        .filter_map(|r| match r {
            Record::Task(t) => Some(t.tgid),
            _ => None,
        })
        .collect();
    tgids.sort_unstable();
    tgids.dedup();
    tgids
}

/// bpf/kinds/file.bpf.h's `enum holders_pass`.
const HOLDERS_ALL: u32 = 0;
const HOLDERS_FILES: u32 = 1;
const HOLDERS_IDENTITY: u32 = 2;

/// --file, --mount: the targets, and where a loaded object's
/// `holders_pass_now` is (its mmapped .bss, valid while the Session
/// holds the object).
pub struct HoldersFirst {
    pub targets: Vec<Target>,
    pub pass: *mut u32,
}

impl HoldersFirst {
    fn set(&self, pass: u32) {
        // SAFETY: a plain integer in the live .bss mapping (see above);
        // the iterators read it only while user space reads them.
        unsafe { std::ptr::write_volatile(self.pass, pass) }
    }
}

/// Processes with a named thread that the .bss list holds (select.bpf.h's
/// NAMED_THREADS_PROCS_MAX).
pub const NAMED_THREADS_PROCS_MAX: usize = 32;

/// select.bpf.h's `struct named_threads_procs`, in a loaded object's .bss.
#[repr(C)]
pub struct NamedThreadsProcs {
    pub all: u32,
    pub n: u32,
    pub tgids: [u32; NAMED_THREADS_PROCS_MAX],
}

/// Where the list is, in a loaded object's mmapped .bss (`named_threads_of!`).
pub struct NamedThreads(pub *mut NamedThreadsProcs);

impl NamedThreads {
    /// Lists `tgids` for the programs' filter; `None`: every main thread.
    fn set(&self, tgids: Option<&[u32]>) {
        let list = self.0;
        let all = tgids.is_none_or(|t| t.len() > NAMED_THREADS_PROCS_MAX);
        let tgids = tgids.unwrap_or_default();
        let n = tgids.len().min(NAMED_THREADS_PROCS_MAX);
        // SAFETY: the list is in the .bss mapping, valid while the object
        // lives (the Session owns both); the programs only read it here,
        // between walks (a trigger reading it meanwhile lets at worst one
        // main thread too many through, which user space does not show).
        unsafe {
            for (i, &tgid) in tgids[..n].iter().enumerate() {
                std::ptr::write_volatile(&mut (*list).tgids[i], tgid);
            }
            std::ptr::write_volatile(&mut (*list).n, n as u32);
            std::ptr::write_volatile(&mut (*list).all, u32::from(all));
        }
    }
}

/// The `NamedThreads` of a loaded skeleton (both objects have the list).
macro_rules! named_threads_of {
    ($skel:expr) => {{
        let bss = $skel
            .maps
            .bss_data
            .as_deref_mut()
            .context("BPF object has no .bss")?;
        let list = &mut bss.named_threads_procs;
        anyhow::ensure!(
            std::mem::size_of_val(list)
                == std::mem::size_of::<$crate::backend::completion::NamedThreadsProcs>(),
            "struct named_threads_procs differs between bpf/select.bpf.h and completion.rs"
        );
        $crate::backend::completion::NamedThreads(
            std::ptr::from_mut(list).cast::<$crate::backend::completion::NamedThreadsProcs>(),
        )
    }};
}
pub(crate) use named_threads_of;

/// A COMM query's first step where the object has it (find_comm, open-coded
/// object): the processes that may bear the name, from one run of a program
/// over the kernel's process list; `None` when the scan stopped early (too
/// many candidates, or its time budget).
pub struct CommScan {
    pub run: Box<dyn Fn() -> Result<Option<Vec<u32>>> + Send>,
}

impl CommScan {
    /// Processes named before the walk (several --pid): no scan needed.
    fn known(tgids: Vec<u32>) -> CommScan {
        CommScan {
            run: Box::new(move || Ok(Some(tgids.clone()))),
        }
    }
}

/// A process's cwd, root or executable that the walk could not give whole
/// (deeper than the seq object's bounded walk, where the kernel lets no
/// iterator pass them to d_path(): 6.18's verifier calls task->fs
/// untrusted) is taken from the kernel's own d_path() through /proc, as
/// readlink shows it, if it is still the same inode; else it stays marked
/// truncated. Only ever after the event, as the iterators are.
fn whole_slot_paths(records: &mut [Record]) {
    use crate::kinds::files::{PATH_TEXT, PATH_TRUNCATED};
    use crate::kinds::process::{FD_CWD, FD_RTD, FD_TXT};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    for rec in records {
        let Record::File(f) = rec else { continue };
        let link = match f.fd {
            FD_CWD => "cwd",
            FD_RTD => "root",
            FD_TXT => "exe",
            _ => continue,
        };
        if f.path_flags & PATH_TRUNCATED == 0 {
            continue;
        }
        let at = format!("/proc/{}/{link}", f.pid);
        let same = std::fs::metadata(&at).is_ok_and(|m| m.ino() == f.ino);
        if let (true, Ok(path)) = (same, std::fs::read_link(&at)) {
            f.path = path.as_os_str().as_bytes().to_vec();
            f.path_flags = PATH_TEXT;
        }
    }
}

/// The command-line and task_vma iterators, where attached.
fn read_late_views(
    cmdline: &Option<IterLink>,
    maps: &Option<IterLink>,
) -> Result<(Vec<Record>, Option<String>)> {
    let (mut records, error) = read_view(cmdline, "command-line")?;
    let (more, maps_error) = read_view(maps, "task_vma")?;
    records.extend(more);
    Ok((records, error.or(maps_error)))
}

/// One pass of an iterator the request may not have (nothing then).
fn read_view(link: &Option<IterLink>, what: &str) -> Result<(Vec<Record>, Option<String>)> {
    match link {
        Some(link) => {
            let (records, e) = link.read(what)?;
            Ok((records, e.map(|e| e.to_string())))
        }
        None => Ok((Vec::new(), None)),
    }
}

/// The event's records first; the completion adds every task, stack and fd
/// that the event did not capture. A leader whose fd table the event walked
/// up to fd N (CAPTURE_FILES) takes only fds from N on from the completion;
/// when records were `lost` on the way, any fd the event's records lack.
pub fn merge(in_event: Vec<Record>, mut after: Vec<Record>, lost: bool) -> Vec<Record> {
    // A one-shot or a tick: every record is the completion's, kept in its
    // own vector (a copy would double the snapshot's peak memory).
    if in_event.is_empty() {
        after.retain(|r| !matches!(r, Record::Begin(_) | Record::End(_)));
        return after;
    }
    let mut tids = HashSet::new();
    let mut stack_tids = HashSet::new();
    let mut activity_tids = HashSet::new();
    let mut ustack_tids = HashSet::new();
    let mut fds_upto = HashMap::new();
    let mut fds = HashSet::new();
    let mut sockets = HashSet::new();
    let mut procs = HashSet::new();
    let mut cmdlines = HashSet::new();
    for rec in &in_event {
        match rec {
            // The event's own task's command line, read whole in the event.
            Record::Cmdline(c) if c.flags & CMDLINE_IN_EVENT != 0 => {
                cmdlines.insert(c.pid);
            }
            Record::Proc(p) => {
                procs.insert(p.pid);
            }
            Record::Task(t) => {
                tids.insert(t.pid);
                if t.capture & CAPTURE_FILES != 0 && !lost {
                    fds_upto.insert(t.tgid, t.fds_upto);
                }
            }
            Record::File(f) => {
                fds.insert((f.pid, f.fd));
            }
            Record::Socket(s) => {
                sockets.insert((s.pid, s.fd));
            }
            Record::Stack(s) => {
                stack_tids.insert(s.pid);
            }
            Record::Activity(a) => {
                activity_tids.insert(a.pid);
            }
            Record::UStack(u) => {
                ustack_tids.insert(u.pid);
            }
            _ => {}
        }
    }
    let mut out = in_event;
    out.reserve(after.len());
    for rec in after {
        let keep = match &rec {
            Record::Task(t) => !tids.contains(&t.pid),
            // The event's stack if it has one; else the completion's, even
            // for a task the event captured (its stack record was lost).
            Record::Stack(s) => !stack_tids.contains(&s.pid),
            // Likewise what a thread was doing.
            Record::Activity(a) => !activity_tids.contains(&a.pid),
            // The user stack unwound in the event's own context first.
            Record::UStack(u) => !ustack_tids.contains(&u.pid),
            // A negative fd is untrusted junk: kept for assembly to show, as
            // any record the kernel sent.
            // A process's cwd, root, executable (negative fds): the event's
            // when it has them; mapped files come only after the event.
            Record::File(f) if f.fd < 0 => !fds.contains(&(f.pid, f.fd)),
            Record::File(f) => {
                !fds.contains(&(f.pid, f.fd))
                    && fds_upto
                        .get(&f.pid)
                        .is_none_or(|&upto| u32::try_from(f.fd).is_ok_and(|fd| fd >= upto))
            }
            // A socket goes as its file: the event's when it has one.
            Record::Socket(s) => {
                !sockets.contains(&(s.pid, s.fd))
                    && fds_upto
                        .get(&s.pid)
                        .is_none_or(|&upto| u32::try_from(s.fd).is_ok_and(|fd| fd >= upto))
            }
            Record::Proc(p) => !procs.contains(&p.pid),
            Record::Cmdline(c) => !cmdlines.contains(&c.pid),
            Record::Event(_) | Record::Begin(_) | Record::End(_) => false,
        };
        if keep {
            out.push(rec);
        }
    }
    out
}
