//! On-CPU samples (`--interval` with `--stacks` or `--ustacks`): a thread
//! running on another CPU has no stack a walk can read, so a CPU-clock
//! perf event on every CPU, in phase with the ticks, keeps the stacks of
//! what each CPU runs (`bpf/kinds/oncpu.h`, filled by
//! `bpf/kinds/oncpu.bpf.h`), one sample per CPU in a map, not a record of
//! the stream. Its layout and decoding (twice read: the kernel may be
//! writing it), and what a row says of the sample its stacks came from.

use serde::Serialize;

use super::stacks::StackRec;
use super::ustacks::UStackRec;
use crate::wire::Fields;

/// `struct oncpu_sample`'s size and offsets.
pub const ONCPU_SAMPLE_SIZE: usize = 1072;
const SEQ: usize = 0;
const TIME: usize = 8;
const TID: usize = 16;
const TGID: usize = 20;
const CPU: usize = 24;
const FLAGS: usize = 28;
const NR_KIPS: usize = 32;
const NR_UIPS: usize = 36;
const KIPS: usize = 40;
const UIPS: usize = KIPS + 8 * DEPTH;
const SEQ_END: usize = UIPS + 8 * DEPTH;
/// STACK_MAX_DEPTH and USTACK_MAX_DEPTH, the same.
const DEPTH: usize = 64;

/// enum oncpu_flags.
pub const ONCPU_KSTACK: u32 = 1 << 0;
pub const ONCPU_USTACK: u32 = 1 << 1;

/// One CPU's latest sample, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnCpuSample {
    pub cpu: u32,
    pub tid: u32,
    pub tgid: u32,
    /// CLOCK_MONOTONIC at the sample, ns.
    pub time_ns: u64,
    /// Kernel frames, innermost first (with --stacks).
    pub kips: Option<Vec<u64>>,
    /// User frames, innermost first (with --ustacks).
    pub uips: Option<Vec<u64>>,
}

fn frames(f: &Fields<'_>, at: usize, nr: u32) -> Vec<u64> {
    let mut ips: Vec<u64> = (0..(nr as usize).min(DEPTH))
        .map(|i| f.u64(at + 8 * i))
        .collect();
    // The kernel's unwinder may end its list with a zero (no frame).
    while ips.last() == Some(&0) {
        ips.pop();
    }
    ips
}

/// A sample from two copies of its map value read one after the other:
/// none when they differ or say the kernel was writing it (torn), when
/// the CPU has no sample yet, or when it was idle.
pub fn settled(first: &[u8], second: &[u8]) -> Option<OnCpuSample> {
    if first != second || first.len() < ONCPU_SAMPLE_SIZE {
        return None;
    }
    let f = Fields::new(first);
    let seq = f.u64(SEQ);
    if seq == 0 || seq != f.u64(SEQ_END) || f.u32(TID) == 0 {
        return None;
    }
    let flags = f.u32(FLAGS);
    Some(OnCpuSample {
        cpu: f.u32(CPU),
        tid: f.u32(TID),
        tgid: f.u32(TGID),
        time_ns: f.u64(TIME),
        kips: (flags & ONCPU_KSTACK != 0).then(|| frames(&f, KIPS, f.u32(NR_KIPS))),
        uips: (flags & ONCPU_USTACK != 0).then(|| frames(&f, UIPS, f.u32(NR_UIPS))),
    })
}

impl OnCpuSample {
    /// Its kernel stack as the walk's record of that thread would hold it.
    pub fn stack_rec(&self) -> Option<StackRec> {
        Some(StackRec {
            seq: 0,
            pid: self.tid,
            ips: self.kips.clone()?,
        })
    }

    /// Its user stack as a user stack record would hold it: whole, as the
    /// kernel's unwinder gave it.
    pub fn ustack_rec(&self) -> Option<UStackRec> {
        Some(UStackRec {
            seq: 0,
            pid: self.tid,
            flags: 0,
            ips: self.uips.clone()?,
        })
    }

    /// What a row whose stacks come from this sample says of it.
    pub fn note(&self, snapshot_ns: u64) -> OnCpu {
        OnCpu {
            cpu: self.cpu,
            offset_ns: self.time_ns as i64 - snapshot_ns as i64,
        }
    }
}

/// A row's stacks came from its CPU's sample, not the walk: which CPU, and
/// when, ns from the snapshot's time (negative: before it). JSON
/// `oncpu_sample`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OnCpu {
    pub cpu: u32,
    pub offset_ns: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_c_struct() {
        use crate::bpf::seqiter::types::oncpu_sample;
        use std::mem::{offset_of, size_of};
        assert_eq!(offset_of!(oncpu_sample, seq), SEQ);
        assert_eq!(offset_of!(oncpu_sample, time_ns), TIME);
        assert_eq!(offset_of!(oncpu_sample, tid), TID);
        assert_eq!(offset_of!(oncpu_sample, tgid), TGID);
        assert_eq!(offset_of!(oncpu_sample, cpu), CPU);
        assert_eq!(offset_of!(oncpu_sample, flags), FLAGS);
        assert_eq!(offset_of!(oncpu_sample, nr_kips), NR_KIPS);
        assert_eq!(offset_of!(oncpu_sample, nr_uips), NR_UIPS);
        assert_eq!(offset_of!(oncpu_sample, kips), KIPS);
        assert_eq!(offset_of!(oncpu_sample, uips), UIPS);
        assert_eq!(offset_of!(oncpu_sample, seq_end), SEQ_END);
        assert_eq!(size_of::<oncpu_sample>(), ONCPU_SAMPLE_SIZE);
    }

    fn sample(seq: u64, seq_end: u64, tid: u32, flags: u32) -> Vec<u8> {
        let mut b = vec![0u8; ONCPU_SAMPLE_SIZE];
        b[SEQ..SEQ + 8].copy_from_slice(&seq.to_ne_bytes());
        b[SEQ_END..SEQ_END + 8].copy_from_slice(&seq_end.to_ne_bytes());
        b[TID..TID + 4].copy_from_slice(&tid.to_ne_bytes());
        b[CPU..CPU + 4].copy_from_slice(&3u32.to_ne_bytes());
        b[FLAGS..FLAGS + 4].copy_from_slice(&flags.to_ne_bytes());
        // Two kernel frames and a terminating zero; a count past the depth.
        b[NR_KIPS..NR_KIPS + 4].copy_from_slice(&3u32.to_ne_bytes());
        b[KIPS..KIPS + 8].copy_from_slice(&7u64.to_ne_bytes());
        b[KIPS + 8..KIPS + 16].copy_from_slice(&8u64.to_ne_bytes());
        b[NR_UIPS..NR_UIPS + 4].copy_from_slice(&1000u32.to_ne_bytes());
        b
    }

    #[test]
    fn only_settled_samples_of_a_thread_count() {
        let both = ONCPU_KSTACK | ONCPU_USTACK;
        let s = settled(&sample(4, 4, 9, both), &sample(4, 4, 9, both)).unwrap();
        assert_eq!((s.cpu, s.tid), (3, 9));
        assert_eq!(s.kips, Some(vec![7, 8]));
        assert_eq!(s.uips.as_ref().map(Vec::len), Some(0));
        // Torn: being written, or changed between the two reads.
        assert_eq!(
            settled(&sample(5, 4, 9, both), &sample(5, 4, 9, both)),
            None
        );
        assert_eq!(
            settled(&sample(4, 4, 9, both), &sample(5, 5, 9, both)),
            None
        );
        // Never written, idle, short.
        assert_eq!(
            settled(&sample(0, 0, 9, both), &sample(0, 0, 9, both)),
            None
        );
        assert_eq!(
            settled(&sample(4, 4, 0, both), &sample(4, 4, 0, both)),
            None
        );
        assert_eq!(settled(&[0; 8], &[0; 8]), None);
        // Stacks not asked for are not empty stacks.
        let k = settled(
            &sample(4, 4, 9, ONCPU_KSTACK),
            &sample(4, 4, 9, ONCPU_KSTACK),
        )
        .unwrap();
        assert!(k.uips.is_none() && k.ustack_rec().is_none());
        assert_eq!(k.stack_rec().map(|r| r.ips), Some(vec![7, 8]));
        assert_eq!(k.note(1_000).offset_ns, -1_000);
    }
}
