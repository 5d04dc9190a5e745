//! The seq backend: `iter/task` and `iter/task_file` programs read through
//! iterator fds (bpf_iter_create) from user space. Kernels 5.8 and later.

use std::io::Read;
use std::mem::MaybeUninit;
use std::time::SystemTime;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Iter, Link, OpenObject};

use super::{cfg_flags, monotonic_ns, Backend, Walk, WalkOptions};
use crate::bpf::seqiter::{SeqiterSkel, SeqiterSkelBuilder};

pub struct SeqBackend {
    skel: SeqiterSkel<'static>,
    task_link: Link,
    file_link: Option<Link>,
}

impl SeqBackend {
    pub fn new(opts: &WalkOptions) -> Result<Self> {
        // The skeleton borrows its object storage for its whole life; one
        // small allocation per run, freed at exit.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = SeqiterSkelBuilder::default()
            .open(storage)
            .context("opening the seq-iterator BPF object")?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .context("BPF object has no .rodata")?;
        rodata.cfg_flags = cfg_flags(opts);
        rodata.cfg_pid = opts.pid.unwrap_or(0);
        if let Some(comm) = &opts.comm {
            for (dst, &src) in rodata.cfg_comm.iter_mut().zip(comm.iter()) {
                *dst = src as i8;
            }
        }
        if !opts.files {
            open.progs.dump_file.set_autoload(false);
        }
        let skel = open
            .load()
            .context("loading the seq-iterator BPF programs (--verbose shows the verifier log)")?;
        let task_link = skel
            .progs
            .dump_task
            .attach()
            .context("attaching iter/task")?;
        let file_link = if opts.files {
            Some(
                skel.progs
                    .dump_file
                    .attach()
                    .context("attaching iter/task_file")?,
            )
        } else {
            None
        };
        Ok(SeqBackend {
            skel,
            task_link,
            file_link,
        })
    }
}

/// Reads one pass of an iterator: each read runs the program over more objects.
fn read_iter(link: &Link, what: &str, out: &mut Vec<u8>) -> Result<()> {
    let mut iter = Iter::new(link).with_context(|| format!("creating the {what} iterator"))?;
    iter.read_to_end(out)
        .with_context(|| format!("reading the {what} iterator"))?;
    Ok(())
}

impl Backend for SeqBackend {
    fn name(&self) -> &'static str {
        "seq"
    }

    fn walk(&mut self, seq: u32) -> Result<Walk> {
        if let Some(bss) = self.skel.maps.bss_data.as_deref_mut() {
            bss.snapshot_seq = seq;
        }
        let wall_time = SystemTime::now();
        let start = monotonic_ns();
        let mut records = Vec::with_capacity(1 << 20);
        read_iter(&self.task_link, "task", &mut records)?;
        if let Some(link) = &self.file_link {
            read_iter(link, "task_file", &mut records)?;
        }
        let walk_ns = monotonic_ns() - start;
        Ok(Walk {
            records,
            wall_time,
            ktime_ns: start,
            walk_ns,
            dropped: 0,
        })
    }
}
