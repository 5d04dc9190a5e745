//! On-CPU samples for `--interval` with stacks: a thread running on
//! another CPU when the snapshot is taken has no stack the walk can read
//! (the kernel's unwinder refuses a running task), so the `on_cpu_sample`
//! program (bpf/trigger.bpf.h) runs from a CPU-clock perf event on every
//! online CPU, one period apart, and keeps each CPU's latest stacks
//! (kinds/oncpu.rs). Its events are opened just before the tick's, so
//! that each CPU is sampled at each tick, microseconds either side: the
//! kernel keeps every event's phase.

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::{Link, MapCore, MapFlags, MapHandle, ProgramMut};

use super::attach::{attach_to_perf_event, open_clock_event};
use super::programs::ProgramRuns;
use super::{TriggerOptions, TriggerSpec, WalkOptions};
use crate::kinds::oncpu::{self, OnCpuSample};

/// Does this run sample the threads found on a CPU? Only sampling with
/// stacks asks (`--interval` with `--stacks` or `--ustacks`).
pub fn wanted(walk: &WalkOptions, trig: &TriggerOptions) -> bool {
    matches!(trig.spec, TriggerSpec::Interval { .. }) && (walk.stacks || walk.ustacks)
}

/// The CPUs a perf event can be opened on (/sys/devices/system/cpu/online:
/// `0-3,6`).
fn online_cpus() -> Result<Vec<u32>> {
    let list = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .context("reading /sys/devices/system/cpu/online")?;
    parse_cpu_list(list.trim()).context("parsing /sys/devices/system/cpu/online")
}

fn parse_cpu_list(list: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let (lo, hi): (u32, u32) = match part.split_once('-') {
            Some((lo, hi)) => (lo.parse().ok()?, hi.parse().ok()?),
            None => {
                let n = part.parse().ok()?;
                (n, n)
            }
        };
        if hi < lo || hi - lo > 1 << 16 {
            return None;
        }
        cpus.extend(lo..=hi);
    }
    Some(cpus)
}

/// The attached samplers and the map they write.
pub struct Sampler {
    _links: Vec<Link>,
    /// The sampler program, for its run counts.
    prog: std::os::fd::OwnedFd,
    samples: MapHandle,
    cpus: Vec<u32>,
    /// When the events were opened: every CPU has a sample a period later.
    pub opened: Instant,
}

impl Sampler {
    /// Attaches `prog` to a CPU-clock event of `period` on every online CPU.
    pub fn attach<T: std::fmt::Debug>(
        prog: &ProgramMut<'_>,
        map: &libbpf_rs::MapImpl<'_, T>,
        period: Duration,
    ) -> Result<Self> {
        let samples = MapHandle::try_from(map).context("the on-CPU samples map")?;
        let cpus = online_cpus()?;
        let opened = Instant::now();
        let links = cpus
            .iter()
            .map(|&cpu| attach_to_perf_event(prog, open_clock_event(period, cpu)?))
            .collect::<Result<Vec<Link>>>()?;
        Ok(Sampler {
            _links: links,
            prog: prog
                .as_fd()
                .try_clone_to_owned()
                .context("the on-CPU sampler's fd")?,
            samples,
            cpus,
            opened,
        })
    }

    /// How often the samplers ran, and for how long.
    pub fn runs(&self) -> ProgramRuns {
        ProgramRuns::of(self.prog.as_raw_fd())
    }

    /// Every CPU's latest sample of a thread (not of an idle CPU), each read
    /// until two copies agree (the kernel may be writing it; a CPU written
    /// to three times in a row is left out).
    pub fn read(&self) -> Vec<OnCpuSample> {
        let read = |key: &[u8; 4]| self.samples.lookup(key, MapFlags::ANY).ok().flatten();
        self.cpus
            .iter()
            .filter_map(|cpu| {
                let key = cpu.to_ne_bytes();
                let mut last = read(&key)?;
                for _ in 0..3 {
                    let next = read(&key)?;
                    if let Some(s) = oncpu::settled(&last, &next) {
                        return Some(s);
                    }
                    last = next;
                }
                None
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_read_as_sysfs_writes_them() {
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list("0-3,6,8-9"), Some(vec![0, 1, 2, 3, 6, 8, 9]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(parse_cpu_list(""), Some(vec![]));
    }
}
