//! Bytes from the kernel → records: the framing every record shares
//! (`bpf/itersnap.h`), the begin and end records that frame a snapshot, and
//! the one registration of the kinds of data (`Record`), each decoded by
//! its own module under kinds/. The tests check the framing's offsets
//! against the C structs as the BPF compiler laid them out (through the
//! skeleton's generated types); each kind checks its own.
//!
//! Kernel bytes are untrusted input: every read is bounds-checked against the
//! record's own declared size and the buffer, lengths are clamped, and a
//! malformed stream ends decoding with an error instead of a panic.

use std::fmt;

use crate::kinds::activity::{self, ActivityRec};
use crate::kinds::cmdline::{self, CmdlineRec};
use crate::kinds::event::{self, EventRec};
use crate::kinds::files::{self, FileRec};
use crate::kinds::process::{self, ProcRec};
use crate::kinds::sockets::{self, SockRec};
use crate::kinds::stacks::{self, StackRec};
use crate::kinds::task::{self, TaskRec};
use crate::kinds::ustacks::{self, UStackRec};
use crate::wire::{Fields, COMM_LEN, HDR_SIZE};

/// enum rec_kind.
pub const REC_TASK: u16 = 1;
pub const REC_FILE: u16 = 2;
pub const REC_STACK: u16 = 3;
pub const REC_BEGIN: u16 = 4;
pub const REC_END: u16 = 5;
pub const REC_SOCKET: u16 = 6;
pub const REC_PROC: u16 = 7;
pub const REC_CMDLINE: u16 = 8;
pub const REC_ACTIVITY: u16 = 9;
pub const REC_EVENT: u16 = 10;
pub const REC_USTACK: u16 = 11;

pub const BEGIN_SIZE: usize = 96;
pub const END_SIZE: usize = 56;

/// enum end_flags: how the in-event part ended.
pub const END_BUDGET_HIT: u32 = 1 << 0;
pub const END_ALL_TASKS: u32 = 1 << 1;

/// A trigger fired: the first record of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeginRec {
    pub seq: u32,
    pub trigger: u32,
    pub arg: i32,
    pub pid: u32,
    pub tid: u32,
    pub target_pid: u32,
    pub target_tid: u32,
    pub cpu: u32,
    pub ktime_ns: u64,
    pub skipped_gap: u64,
    pub skipped_busy: u64,
    pub comm: Vec<u8>,
    pub target_comm: Vec<u8>,
}

/// The last record of a trigger program's run: what its in-event part emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndRec {
    pub seq: u32,
    pub tasks: u32,
    pub files: u32,
    pub stacks: u32,
    pub truncated_fds: u32,
    pub ktime_ns: u64,
    pub emitted: u64,
    pub dropped: u64,
    /// END_* flags.
    pub flags: u32,
}

/// Every kind of record: the kinds of data (kinds/), and the framing's
/// begin and end. A new kind is registered here and in `decode_one`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    // The large kinds boxed: a snapshot holds ~100,000 records, moved
    // between vectors several times, and each is as large as the largest
    // variant (216 bytes unboxed; the file record, the most frequent, 88).
    Task(Box<TaskRec>),
    File(FileRec),
    Stack(StackRec),
    Socket(Box<SockRec>),
    Proc(Box<ProcRec>),
    Cmdline(CmdlineRec),
    Activity(ActivityRec),
    /// The trigger's own details (kinds/event.rs).
    Event(Box<EventRec>),
    UStack(UStackRec),
    Begin(BeginRec),
    End(EndRec),
}

impl Record {
    pub fn seq(&self) -> u32 {
        match self {
            Record::Task(r) => r.seq,
            Record::File(r) => r.seq,
            Record::Stack(r) => r.seq,
            Record::Socket(r) => r.seq,
            Record::Proc(r) => r.seq,
            Record::Cmdline(r) => r.seq,
            Record::Activity(r) => r.seq,
            Record::Event(r) => r.seq,
            Record::UStack(r) => r.seq,
            Record::Begin(r) => r.seq,
            Record::End(r) => r.seq,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub offset: usize,
    pub reason: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed record at byte {}: {}",
            self.offset, self.reason
        )
    }
}

impl std::error::Error for DecodeError {}

/// Decodes one record at the start of `buf`; returns it and its size.
/// Unknown kinds are skipped (Ok(None)) so that newer BPF objects stay readable.
pub fn decode_one(buf: &[u8], offset: usize) -> Result<(Option<Record>, usize), DecodeError> {
    let err = |reason| DecodeError { offset, reason };
    if buf.len() < HDR_SIZE {
        return Err(err("truncated header"));
    }
    let hdr = Fields::new(buf);
    let kind = hdr.u16(0);
    let size = hdr.u16(2) as usize;
    let seq = hdr.u32(4);
    if size < HDR_SIZE || size % 8 != 0 {
        return Err(err("bad record size"));
    }
    if size > buf.len() {
        return Err(err("record runs past the end of the data"));
    }
    let f = Fields::new(&buf[..size]);
    let decoded = match kind {
        REC_TASK => task::decode(&f, seq).map(|t| Record::Task(Box::new(t))),
        REC_FILE => files::decode(&f, seq).map(Record::File),
        REC_STACK => stacks::decode(&f, seq).map(Record::Stack),
        REC_SOCKET => sockets::decode(&f, seq).map(|r| Record::Socket(Box::new(r))),
        REC_PROC => process::decode(&f, seq).map(|r| Record::Proc(Box::new(r))),
        REC_CMDLINE => cmdline::decode(&f, seq).map(Record::Cmdline),
        REC_ACTIVITY => activity::decode(&f, seq).map(Record::Activity),
        REC_EVENT => event::decode(&f, seq).map(|r| Record::Event(Box::new(r))),
        REC_USTACK => ustacks::decode(&f, seq).map(Record::UStack),
        REC_BEGIN => decode_begin(&f, seq),
        REC_END => decode_end(&f, seq),
        _ => return Ok((None, size)),
    };
    decoded.map(|rec| (Some(rec), size)).map_err(err)
}

// The framing's own records, within a record whose header was checked.
fn decode_begin(f: &Fields<'_>, seq: u32) -> Result<Record, &'static str> {
    if f.len() < BEGIN_SIZE {
        return Err("begin record too short");
    }
    Ok(Record::Begin(BeginRec {
        seq,
        trigger: f.u32(8),
        arg: f.u32(12) as i32,
        pid: f.u32(16),
        tid: f.u32(20),
        target_pid: f.u32(24),
        target_tid: f.u32(28),
        cpu: f.u32(32),
        ktime_ns: f.u64(40),
        skipped_gap: f.u64(48),
        skipped_busy: f.u64(56),
        comm: f.c_bytes(64, COMM_LEN),
        target_comm: f.c_bytes(80, COMM_LEN),
    }))
}

fn decode_end(f: &Fields<'_>, seq: u32) -> Result<Record, &'static str> {
    if f.len() < END_SIZE {
        return Err("end record too short");
    }
    Ok(Record::End(EndRec {
        seq,
        tasks: f.u32(8),
        files: f.u32(12),
        stacks: f.u32(16),
        truncated_fds: f.u32(20),
        ktime_ns: f.u64(24),
        emitted: f.u64(32),
        dropped: f.u64(40),
        flags: f.u32(48),
    }))
}

/// Decodes a whole stream of concatenated records.
/// On a malformed record, returns what was decoded before it and the error.
pub fn decode_all(buf: &[u8]) -> (Vec<Record>, Option<DecodeError>) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        match decode_one(&buf[at..], at) {
            Ok((rec, size)) => {
                out.extend(rec);
                at += size;
            }
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

/// Decodes a stream that arrives in pieces (an iterator's reads) through
/// one fixed buffer: whole records are decoded at once, a record cut by a
/// read waits for the rest. The stream never sits in memory whole.
pub struct StreamDecoder {
    buf: Vec<u8>,
    filled: usize,
    /// Stream offset of buf[0], for error messages.
    base: usize,
    records: Vec<Record>,
    error: Option<DecodeError>,
}

impl StreamDecoder {
    /// `capacity` must hold the largest record (u16 sizes: 64 KiB will do).
    pub fn new(capacity: usize) -> Self {
        StreamDecoder {
            buf: vec![0; capacity.max(1 << 16)],
            filled: 0,
            base: 0,
            records: Vec::new(),
            error: None,
        }
    }

    /// Where the next read goes.
    pub fn spare(&mut self) -> &mut [u8] {
        &mut self.buf[self.filled..]
    }

    /// `n` bytes were read into `spare()`: decode every whole record.
    pub fn commit(&mut self, n: usize) {
        self.filled = (self.filled + n).min(self.buf.len());
        let mut at = 0;
        while self.error.is_none() && self.filled - at >= HDR_SIZE {
            let size = u16::from_ne_bytes([self.buf[at + 2], self.buf[at + 3]]) as usize;
            if size >= HDR_SIZE && size > self.filled - at {
                break; // cut by the read: the rest comes next
            }
            match decode_one(&self.buf[at..self.filled], self.base + at) {
                Ok((rec, size)) => {
                    self.records.extend(rec);
                    at += size;
                }
                Err(e) => self.error = Some(e),
            }
        }
        self.buf.copy_within(at..self.filled, 0);
        self.filled -= at;
        self.base += at;
    }

    /// Decodes bytes that arrived elsewhere (another thread's read).
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let spare = self.spare();
            let n = spare.len().min(bytes.len());
            if n == 0 {
                // A record larger than the buffer: the header says so and
                // decoding stops with an error at finish().
                self.error.get_or_insert(DecodeError {
                    offset: self.base,
                    reason: "record larger than the decode buffer",
                });
                return;
            }
            spare[..n].copy_from_slice(&bytes[..n]);
            self.commit(n);
            bytes = &bytes[n..];
        }
    }

    /// The records, and the first error (a record cut by the end included).
    pub fn finish(mut self) -> (Vec<Record>, Option<DecodeError>) {
        if self.error.is_none() && self.filled > 0 {
            let rest = &self.buf[..self.filled];
            self.error = decode_one(rest, self.base).err();
        }
        (self.records, self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::seqiter::types;
    use crate::kinds::files::FILE_HDR_SIZE;
    use std::mem::{offset_of, size_of};

    /// The decoder's offsets are those of the C structs the BPF compiler built.
    #[test]
    fn layouts_match_the_bpf_header() {
        assert_eq!(size_of::<types::rec_hdr>(), HDR_SIZE);
        assert_eq!(size_of::<types::begin_rec>(), BEGIN_SIZE);
        assert_eq!(offset_of!(types::begin_rec, trigger), 8);
        assert_eq!(offset_of!(types::begin_rec, cpu), 32);
        assert_eq!(offset_of!(types::begin_rec, ktime_ns), 40);
        assert_eq!(offset_of!(types::begin_rec, skipped_busy), 56);
        assert_eq!(offset_of!(types::begin_rec, comm), 64);
        assert_eq!(offset_of!(types::begin_rec, target_comm), 80);
        assert_eq!(size_of::<types::end_rec>(), END_SIZE);
        assert_eq!(offset_of!(types::end_rec, truncated_fds), 20);
        assert_eq!(offset_of!(types::end_rec, ktime_ns), 24);
        assert_eq!(offset_of!(types::end_rec, dropped), 40);
        assert_eq!(offset_of!(types::end_rec, flags), 48);
    }

    fn file_record(path: &[u8], declared_len: u16) -> Vec<u8> {
        let size = (FILE_HDR_SIZE + path.len()).div_ceil(8) * 8;
        let mut b = vec![0u8; size];
        b[0..2].copy_from_slice(&REC_FILE.to_ne_bytes());
        b[2..4].copy_from_slice(&(size as u16).to_ne_bytes());
        b[12..16].copy_from_slice(&7i32.to_ne_bytes());
        b[36..38].copy_from_slice(&declared_len.to_ne_bytes());
        b[FILE_HDR_SIZE..FILE_HDR_SIZE + path.len()].copy_from_slice(path);
        b
    }

    #[test]
    fn decodes_a_file_record() {
        let b = file_record(b"a\0tmp\0", 6);
        let (recs, err) = decode_all(&b);
        assert!(err.is_none());
        match &recs[..] {
            [Record::File(f)] => {
                assert_eq!(f.fd, 7);
                assert_eq!(f.path, b"/tmp/a");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn rejects_lengths_past_the_record() {
        let b = file_record(b"abc\0", 200);
        let (recs, err) = decode_all(&b);
        assert!(recs.is_empty());
        assert_eq!(err.unwrap().reason, "file path runs past its record");
    }

    #[test]
    fn rejects_bad_sizes_without_panicking() {
        for bytes in [
            &[1u8, 0, 0, 0, 0, 0, 0, 0][..],  // size 0
            &[1u8, 0, 9, 0, 0, 0, 0, 0][..],  // not 8-aligned
            &[1u8, 0, 64, 0, 0, 0, 0, 0][..], // past the end
            &[3u8, 0, 8, 0, 0, 0, 0, 0][..],  // stack shorter than its header
            &[1u8, 0][..],                    // short header
        ] {
            let (recs, err) = decode_all(bytes);
            assert!(recs.is_empty());
            assert!(err.is_some());
        }
    }

    /// Arbitrary bytes never panic and never yield a record larger than its input.
    #[test]
    fn random_bytes_never_panic() {
        let mut next = crate::xorshift(0x2545_f491_4f6c_dd1d);
        for round in 0..20_000 {
            let len = (next() % 600) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Often give it a plausible header so decoding goes deep.
            if round % 2 == 0 && len >= 8 {
                buf[0] = (1 + next() % 5) as u8;
                buf[1] = 0;
                let size = ((next() % (len as u64 + 16)) & !7) as u16;
                buf[2..4].copy_from_slice(&size.to_ne_bytes());
            }
            let (recs, _) = decode_all(&buf);
            for rec in recs {
                if let Record::File(f) = rec {
                    // Its text: "/" for each component, "..." if cut,
                    // " (deleted)" if unlinked.
                    assert!(f.path.len() <= 2 * len + 14);
                }
            }
        }
    }

    /// Fed in pieces of any size, the stream decoder gives what decode_all
    /// gives for the whole: the same records, the same error at the same offset.
    #[test]
    fn stream_decoder_equals_decode_all() {
        let mut next = crate::xorshift(0x9e37_79b9_7f4a_7c15);
        for round in 0..300 {
            let mut stream = Vec::new();
            for i in 0..(next() % 40) {
                let path = vec![b'a' + (i % 26) as u8; (next() % 3000) as usize];
                stream.extend(file_record(
                    &[&path[..], b"\0"].concat(),
                    path.len() as u16 + 1,
                ));
            }
            if round % 3 == 0 {
                stream.extend([1u8, 0, 9, 0]); // a bad size, then the cut end
            }
            let (whole, whole_err) = decode_all(&stream);
            let mut dec = StreamDecoder::new(1 << 16);
            let mut at = 0;
            while at < stream.len() {
                let spare = dec.spare();
                let n = ((next() % 9000) as usize + 1)
                    .min(spare.len())
                    .min(stream.len() - at);
                if n == 0 {
                    break;
                }
                spare[..n].copy_from_slice(&stream[at..at + n]);
                dec.commit(n);
                at += n;
            }
            let (recs, err) = dec.finish();
            assert_eq!(recs, whole);
            assert_eq!(err.map(|e| e.offset), whole_err.map(|e| e.offset));
        }
    }

    #[test]
    fn skips_unknown_kinds() {
        let mut b = vec![0u8; 16];
        b[0] = 99;
        b[2] = 16;
        b.extend(file_record(b"x\0", 2));
        let (recs, err) = decode_all(&b);
        assert!(err.is_none());
        assert_eq!(recs.len(), 1);
    }
}

#[cfg(test)]
mod corpus_tests {
    use super::*;

    /// The fuzzer's seeds (fuzz/seeds/records) are well-formed streams
    /// of every record kind: they decode whole.
    #[test]
    fn fuzz_seeds_decode() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/records");
        for name in ["open-coded-snapshot", "seq-snapshot", "lost-end"] {
            let bytes = std::fs::read(format!("{dir}/{name}")).unwrap();
            let (records, err) = decode_all(&bytes);
            assert!(err.is_none(), "{name}: {err:?}");
            assert!(!records.is_empty(), "{name}");
        }
        let bytes = std::fs::read(format!("{dir}/open-coded-snapshot")).unwrap();
        let (records, _) = decode_all(&bytes);
        let kinds: Vec<u8> = records
            .iter()
            .map(|r| match r {
                Record::Begin(_) => b'B',
                Record::Task(_) => b'T',
                Record::File(_) => b'F',
                Record::Stack(_) => b'S',
                Record::Socket(_) => b'K',
                Record::Proc(_) => b'P',
                Record::Cmdline(_) => b'C',
                Record::Activity(_) => b'A',
                Record::Event(_) => b'V',
                Record::UStack(_) => b'U',
                Record::End(_) => b'E',
            })
            .collect();
        assert_eq!(kinds, b"BVTTTFFFKFFFFFKFKSSAAUUPFFFCCFFPE");
    }
}

/// The fuzzer's seeds (fuzz/seeds/records) are generated here from the
/// records below, encoded as the BPF side lays them out: after a layout
/// change, `ITERSNAP_WRITE_SEEDS=1 cargo test --lib fuzz_seeds_are_generated`
/// rewrites them, and `ITERSNAP_BLESS=1 cargo test --lib seed_renderings`
/// their renderings in tests/golden/ (review both diffs). Without the
/// variable the test checks that the files are what it would write.
#[cfg(test)]
mod seeds {
    use super::*;
    use crate::kinds::files::FILE_HDR_SIZE;
    use crate::kinds::task;

    fn put(b: &mut [u8], at: usize, bytes: &[u8]) {
        b[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn hdr(b: &mut [u8], kind: u16, seq: u32) {
        let size = b.len() as u16;
        put(b, 0, &kind.to_ne_bytes());
        put(b, 2, &size.to_ne_bytes());
        put(b, 4, &seq.to_ne_bytes());
    }

    fn comm(b: &mut [u8], at: usize, name: &[u8]) {
        put(b, at, &name[..name.len().min(COMM_LEN - 1)]);
    }

    fn begin(r: &BeginRec) -> Vec<u8> {
        let mut b = vec![0u8; BEGIN_SIZE];
        hdr(&mut b, REC_BEGIN, r.seq);
        put(&mut b, 8, &r.trigger.to_ne_bytes());
        put(&mut b, 12, &r.arg.to_ne_bytes());
        for (at, v) in [
            (16, r.pid),
            (20, r.tid),
            (24, r.target_pid),
            (28, r.target_tid),
            (32, r.cpu),
        ] {
            put(&mut b, at, &v.to_ne_bytes());
        }
        for (at, v) in [(40, r.ktime_ns), (48, r.skipped_gap), (56, r.skipped_busy)] {
            put(&mut b, at, &v.to_ne_bytes());
        }
        comm(&mut b, 64, &r.comm);
        comm(&mut b, 80, &r.target_comm);
        b
    }

    fn end(r: &EndRec) -> Vec<u8> {
        let mut b = vec![0u8; END_SIZE];
        hdr(&mut b, REC_END, r.seq);
        for (at, v) in [
            (8, r.tasks),
            (12, r.files),
            (16, r.stacks),
            (20, r.truncated_fds),
        ] {
            put(&mut b, at, &v.to_ne_bytes());
        }
        for (at, v) in [(24, r.ktime_ns), (32, r.emitted), (40, r.dropped)] {
            put(&mut b, at, &v.to_ne_bytes());
        }
        put(&mut b, 48, &r.flags.to_ne_bytes());
        b
    }

    /// `struct file_rec` (bpf/kinds/file.h); its decoder is kinds/files.rs.
    fn file(r: &FileRec) -> Vec<u8> {
        let mut b = vec![0u8; (FILE_HDR_SIZE + r.path.len()).div_ceil(8) * 8];
        hdr(&mut b, REC_FILE, r.seq);
        put(&mut b, 8, &r.pid.to_ne_bytes());
        put(&mut b, 12, &r.fd.to_ne_bytes());
        for (at, v) in [
            (16, r.f_flags),
            (20, r.f_mode),
            (24, r.i_mode),
            (28, r.magic),
            (32, r.dev),
        ] {
            put(&mut b, at, &v.to_ne_bytes());
        }
        put(&mut b, 36, &(r.path.len() as u16).to_ne_bytes());
        put(&mut b, 38, &r.path_flags.to_ne_bytes());
        for (at, v) in [(40, r.ino), (48, r.pos), (56, r.size)] {
            put(&mut b, at, &v.to_ne_bytes());
        }
        put(&mut b, FILE_HDR_SIZE, &r.path);
        b
    }

    /// `struct sock_rec` (bpf/kinds/socket.h), with only the used path.
    fn socket(r: &SockRec) -> Vec<u8> {
        use crate::kinds::sockets::SOCK_HDR_SIZE;
        let s = &r.socket;
        let mut b = vec![0u8; (SOCK_HDR_SIZE + s.path.len()).div_ceil(8) * 8];
        hdr(&mut b, REC_SOCKET, r.seq);
        put(&mut b, 8, &r.pid.to_ne_bytes());
        put(&mut b, 12, &r.fd.to_ne_bytes());
        for (at, v) in [(16, s.ino), (24, s.netns), (32, s.peer_ino)] {
            put(&mut b, at, &v.to_ne_bytes());
        }
        put(&mut b, 40, &s.rx_queue.to_ne_bytes());
        put(&mut b, 44, &s.tx_queue.to_ne_bytes());
        for (at, v) in [(48, s.family), (50, s.kind), (52, s.protocol)] {
            put(&mut b, at, &v.to_ne_bytes());
        }
        put(&mut b, 54, &[s.state, s.flags]);
        for (at, v) in [
            (56, s.local_port),
            (58, s.remote_port),
            (60, s.path.len() as u16),
        ] {
            put(&mut b, at, &v.to_ne_bytes());
        }
        put(&mut b, 64, &s.local_addr);
        put(&mut b, 80, &s.remote_addr);
        put(&mut b, SOCK_HDR_SIZE, &s.path);
        b
    }

    /// `struct stack_rec` (bpf/kinds/stack.h), with only the used frames.
    fn stack(r: &StackRec) -> Vec<u8> {
        let mut b = vec![0u8; 16 + 8 * r.ips.len()];
        hdr(&mut b, REC_STACK, r.seq);
        put(&mut b, 8, &r.pid.to_ne_bytes());
        put(&mut b, 12, &(r.ips.len() as u32).to_ne_bytes());
        for (i, ip) in r.ips.iter().enumerate() {
            put(&mut b, 16 + 8 * i, &ip.to_ne_bytes());
        }
        b
    }

    /// `struct proc_rec` (bpf/kinds/proc.h), with only the used cgroup path.
    fn proc(r: &ProcRec) -> Vec<u8> {
        use crate::kinds::process::PROC_HDR_SIZE;
        let mut b = vec![0u8; (PROC_HDR_SIZE + r.cgroup.len()).div_ceil(8) * 8];
        hdr(&mut b, REC_PROC, r.seq);
        put(&mut b, 8, &r.pid.to_ne_bytes());
        put(&mut b, 12, &r.flags.to_ne_bytes());
        for (at, v) in [
            (16, r.vsz_pages),
            (24, r.rss_file_pages),
            (32, r.rss_anon_pages),
            (40, r.rss_shmem_pages),
            (72, r.cgroup_id),
            (80, r.taken_ns),
        ] {
            put(&mut b, at, &v.to_ne_bytes());
        }
        for (at, v) in [
            (48, r.tty_major),
            (52, r.tty_minor),
            (56, r.pidns_ino),
            (60, r.ns_pid),
            (64, r.pidns_level),
        ] {
            put(&mut b, at, &v.to_ne_bytes());
        }
        put(&mut b, 68, &(r.cgroup.len() as u16).to_ne_bytes());
        put(&mut b, 88, &r.tty_name);
        put(&mut b, PROC_HDR_SIZE, &r.cgroup);
        b
    }

    /// `struct activity_rec` (bpf/kinds/activity.h).
    fn activity(r: &ActivityRec) -> Vec<u8> {
        let mut b = vec![0u8; crate::kinds::activity::ACTIVITY_SIZE];
        hdr(&mut b, REC_ACTIVITY, r.seq);
        put(&mut b, 8, &r.pid.to_ne_bytes());
        put(&mut b, 12, &r.nr.to_ne_bytes());
        for (i, arg) in r.args.iter().enumerate() {
            put(&mut b, 16 + 8 * i, &arg.to_ne_bytes());
        }
        put(&mut b, 64, &r.sp.to_ne_bytes());
        put(&mut b, 72, &r.pc.to_ne_bytes());
        put(&mut b, 80, &r.flags.to_ne_bytes());
        b
    }

    /// `struct ustack_rec` (bpf/kinds/ustack.h), with only the used addresses.
    fn ustack(r: &UStackRec) -> Vec<u8> {
        use crate::kinds::ustacks::USTACK_HDR_SIZE;
        let mut b = vec![0u8; USTACK_HDR_SIZE + 8 * r.ips.len()];
        hdr(&mut b, REC_USTACK, r.seq);
        put(&mut b, 8, &r.pid.to_ne_bytes());
        put(&mut b, 12, &(r.ips.len() as u32).to_ne_bytes());
        put(&mut b, 16, &r.flags.to_ne_bytes());
        for (i, ip) in r.ips.iter().enumerate() {
            put(&mut b, USTACK_HDR_SIZE + 8 * i, &ip.to_ne_bytes());
        }
        b
    }

    /// `struct event_rec` (bpf/kinds/event.h), with only the used bytes.
    fn event(r: &EventRec) -> Vec<u8> {
        use crate::kinds::event::EVENT_HDR_SIZE;
        let mut b = vec![0u8; (EVENT_HDR_SIZE + r.data.len()).div_ceil(8) * 8];
        hdr(&mut b, REC_EVENT, r.seq);
        put(&mut b, 8, &r.flags.to_ne_bytes());
        put(&mut b, 12, &(r.data.len() as u32).to_ne_bytes());
        for (i, arg) in r.args.iter().enumerate() {
            put(&mut b, 16 + 8 * i, &arg.to_ne_bytes());
        }
        put(&mut b, 64, &r.exit_code.to_ne_bytes());
        put(&mut b, 68, &r.si_errno.to_ne_bytes());
        put(&mut b, 72, &r.si_code.to_ne_bytes());
        put(&mut b, 76, &r.record_len.to_ne_bytes());
        put(&mut b, 80, &r.si_fields);
        put(&mut b, EVENT_HDR_SIZE, &r.data);
        b
    }

    /// `struct cmdline_rec` (bpf/kinds/cmdline.h), with only the used bytes.
    fn cmdline(r: &CmdlineRec) -> Vec<u8> {
        use crate::kinds::cmdline::CMDLINE_HDR_SIZE;
        let mut b = vec![0u8; (CMDLINE_HDR_SIZE + r.data.len()).div_ceil(8) * 8];
        hdr(&mut b, REC_CMDLINE, r.seq);
        for (at, v) in [(8, r.pid), (12, r.offset), (16, r.total)] {
            put(&mut b, at, &v.to_ne_bytes());
        }
        put(&mut b, 20, &(r.data.len() as u16).to_ne_bytes());
        put(&mut b, 22, &r.flags.to_ne_bytes());
        put(&mut b, 24, &r.taken_ns.to_ne_bytes());
        put(&mut b, CMDLINE_HDR_SIZE, &r.data);
        b
    }

    fn encode(r: &Record) -> Vec<u8> {
        match r {
            Record::Task(t) => {
                let mut b = task::encode(t);
                hdr(&mut b, REC_TASK, t.seq);
                b
            }
            Record::File(f) => file(f),
            Record::Stack(s) => stack(s),
            Record::Socket(s) => socket(s),
            Record::Proc(p) => proc(p),
            Record::Cmdline(c) => cmdline(c),
            Record::Activity(a) => activity(a),
            Record::Event(e) => event(e),
            Record::UStack(u) => ustack(u),
            Record::Begin(b) => begin(b),
            Record::End(e) => end(e),
        }
    }

    fn signal_begin(seq: u32) -> Record {
        Record::Begin(BeginRec {
            seq,
            trigger: 2,
            arg: 10,
            pid: 100,
            tid: 100,
            target_pid: 200,
            target_tid: 200,
            cpu: 1,
            ktime_ns: 5_000_000_000,
            skipped_gap: 3,
            skipped_busy: 1,
            comm: b"sender".to_vec(),
            target_comm: b"target".to_vec(),
        })
    }

    /// A sleeping task of one thread, root's, that never had its CPU time
    /// reported (prev_cputime zero).
    fn task(seq: u32, pid: u32, tgid: u32, comm: &[u8], taken_ns: u64) -> TaskRec {
        TaskRec {
            seq,
            pid,
            tgid,
            ppid: 1,
            state: 1,
            exit_state: 0,
            flags: 0,
            nr_threads: 1,
            ruid: 0,
            euid: 0,
            suid: 0,
            fsuid: 0,
            rgid: 0,
            egid: 0,
            sgid: 0,
            fsgid: 0,
            present: task::TASK_PREV_CPUTIME,
            utime_ns: 1000,
            stime_ns: 2000,
            runtime_ns: 3500,
            prev_utime_ns: 0,
            prev_stime_ns: 0,
            dead_utime_ns: 0,
            dead_stime_ns: 0,
            dead_runtime_ns: 0,
            group_prev_utime_ns: 0,
            group_prev_stime_ns: 0,
            start_ns: 123_456_789,
            // The boot clock is ahead of the monotonic one by a suspend.
            start_boottime_ns: 1_123_456_789,
            self_exec_id: 1,
            comm: comm.to_vec(),
            taken_ns,
            capture: 0,
            fds_upto: 0,
            // A session leader in its terminal's foreground group.
            stat: task::StatParts {
                nice: 0,
                sid: tgid,
                pgid: tgid,
                tpgid: tgid,
                locked_pages: 0,
            },
            cpu: 1,
            on_cpu: false,
        }
    }

    /// Process 100's files: one of each kind of description.
    fn files(seq: u32) -> Vec<Record> {
        let file = |fd: i32, magic: u32, path_flags: u16, path: &[u8]| {
            Record::File(FileRec {
                seq,
                pid: 100,
                fd,
                f_flags: 0o2100002,
                f_mode: 3,
                i_mode: 0o100644,
                magic,
                dev: 8 << 20 | 1,
                path_flags,
                ino: 42,
                pos: 17,
                size: 4096,
                path: path.to_vec(),
            })
        };
        const EXT4: u32 = 0xef53;
        const SOCKFS: u32 = 0x534f_434b;
        let socket = |fd: i32, s: crate::kinds::sockets::Socket| {
            Record::Socket(Box::new(SockRec {
                seq,
                pid: 100,
                fd,
                socket: s,
            }))
        };
        let inet = |family: u16, state: u8, local: &[u8], lport, remote: &[u8], rport, netns| {
            let mut s = crate::kinds::sockets::Socket {
                ino: 42,
                netns,
                peer_ino: 0,
                rx_queue: 3,
                tx_queue: 5,
                family,
                kind: 1,     // SOCK_STREAM
                protocol: 6, // TCP
                state,
                flags: 0,
                local_port: lport,
                remote_port: rport,
                local_addr: [0; 16],
                remote_addr: [0; 16],
                path: Vec::new(),
            };
            s.local_addr[..local.len()].copy_from_slice(local);
            s.remote_addr[..remote.len()].copy_from_slice(remote);
            s
        };
        let loopback6: [u8; 16] = std::net::Ipv6Addr::LOCALHOST.octets();
        vec![
            file(0, EXT4, 0, b"null\0dev\0"),
            file(1, EXT4, files::PATH_DELETED, b"file.txt\0tmp\0"),
            file(3, SOCKFS, files::PATH_DNAME, b"dentry\0"),
            socket(3, inet(2, 10, &[0; 4], 8080, &[], 0, 4026531840)),
            file(4, 0x0904_1934, files::PATH_DNAME, b"[eventfd]\0"),
            file(5, 0x6e73_6673, files::PATH_DNAME, b"net\0"),
            file(6, EXT4, files::PATH_TRUNCATED, &b"deep\0".repeat(10)),
            file(7, EXT4, 0, b"\xff\xfe\nodd\0tmp\0"),
            // A TCP connection in another network namespace, a UNIX one.
            file(8, SOCKFS, files::PATH_DNAME, b"dentry\0"),
            socket(
                8,
                inet(10, 1, &loopback6, 41234, &loopback6, 8080, 4026532000),
            ),
            file(9, SOCKFS, files::PATH_DNAME, b"dentry\0"),
            socket(
                9,
                crate::kinds::sockets::Socket {
                    family: 1, // AF_UNIX
                    protocol: 0,
                    peer_ino: 43,
                    path: b"/run/x\x1b\xe2\x80\xae.sock\xff\0".to_vec(),
                    ..inet(1, 1, &[], 0, &[], 0, 4026531840)
                },
            ),
        ]
    }

    /// The signal's own details: its siginfo (kill() from pid 7, uid
    /// 1000), six arguments, a tracefs record of 12 bytes, and items after
    /// it: a path (not UTF-8), two argv elements (one cut), a socket
    /// address (127.0.0.1:8080).
    fn event_details(seq: u32) -> Record {
        let mut data = vec![0u8; 12];
        data[..4].copy_from_slice(&7u32.to_ne_bytes());
        let mut item = |src: u8, flags: u8, bytes: &[u8]| {
            data.extend_from_slice(&(bytes.len() as u16).to_ne_bytes());
            data.extend_from_slice(&[src, flags]);
            data.extend_from_slice(bytes);
            data.resize(data.len().div_ceil(4) * 4, 0);
        };
        item(0, 0, b"/tmp/\xffodd\0");
        item(event::ITEM_ARGV, 0, b"cat\0");
        item(event::ITEM_ARGV, event::ITEM_CUT, b"long\0");
        item(event::ITEM_ADDR, 0, &[2, 0, 0x1f, 0x90, 127, 0, 0, 1]);
        let mut si_fields = [0u8; 16];
        si_fields[..4].copy_from_slice(&7i32.to_ne_bytes());
        si_fields[4..8].copy_from_slice(&1000u32.to_ne_bytes());
        Record::Event(Box::new(EventRec {
            seq,
            flags: event::EVENT_ARGS | event::EVENT_SIGINFO | event::EVENT_RECORD,
            args: [0xffff_ff9c, 0x7ffd_0000, 0x80000, 0, 1, 2],
            exit_code: 0,
            si_errno: 0,
            si_code: 0,
            record_len: 12,
            si_fields,
            data,
        }))
    }

    fn open_coded_snapshot() -> Vec<Record> {
        let mut recs = vec![signal_begin(1), event_details(1)];
        // Every id distinct, as after setresuid(1000, 0, 1001), setfsuid(1002).
        recs.push(Record::Task(Box::new(TaskRec {
            capture: CAPTURE_IN_EVENT_FILES,
            fds_upto: u32::MAX,
            ruid: 1000,
            euid: 0,
            suid: 1001,
            fsuid: 1002,
            rgid: 100,
            egid: 101,
            sgid: 102,
            fsgid: 103,
            ..task(1, 100, 100, b"fixture", 1000)
        })));
        recs.push(Record::Task(Box::new(TaskRec {
            capture: 1,
            ..task(1, 101, 100, b"work\x1b\xe2\x80\xaeer\n", 2000)
        })));
        recs.push(Record::Task(Box::new(task(1, 200, 200, b"\xffbad", 3000))));
        recs.extend(files(1));
        recs.push(Record::Stack(StackRec {
            seq: 1,
            pid: 100,
            ips: vec![0xffff_ffff_8100_0110, 0xffff_ffff_8100_0200],
        }));
        recs.push(Record::Stack(StackRec {
            seq: 1,
            pid: 101,
            ips: vec![],
        }));
        // In read(0) on the fixture's fd 0; its worker outside a syscall.
        recs.push(Record::Activity(ActivityRec {
            seq: 1,
            pid: 100,
            nr: 0,
            args: [0, 0x7ffd_1000, 4096, 0, 0, 0],
            sp: 0x7ffd_0ff0,
            pc: 0x7f00_0000_1234,
            flags: 0,
        }));
        recs.push(Record::Activity(ActivityRec {
            seq: 1,
            pid: 101,
            nr: -1,
            args: [0; 6],
            sp: 0x7ffd_2000,
            pc: 0x7f00_0000_5678,
            flags: 0,
        }));
        // The fixture's user stack, unwound in the event; its worker's,
        // partial (its frame-pointer chain broke).
        recs.push(Record::UStack(UStackRec {
            seq: 1,
            pid: 100,
            flags: ustacks::USTACK_IN_EVENT,
            ips: vec![0x5555_0000_1142, 0x5555_0000_1155],
        }));
        recs.push(Record::UStack(UStackRec {
            seq: 1,
            pid: 101,
            flags: ustacks::USTACK_PARTIAL,
            ips: vec![0x7f00_0000_1000],
        }));
        recs.extend(identity(1));
        recs.push(Record::End(EndRec {
            seq: 1,
            tasks: 3,
            files: 5,
            stacks: 2,
            truncated_fds: 0,
            ktime_ns: 5_000_100_000,
            emitted: 10,
            dropped: 0,
            flags: 0,
        }));
        recs
    }

    /// Process 100's identity: its process record (a terminal, a cgroup,
    /// a pid namespace of its own), cwd (named with U+202E and a byte that
    /// is not UTF-8), root, executable, a command line
    /// in two chunks (an empty argument, a space, a byte that is not
    /// UTF-8), a deleted mapped file; process 200 without an address space.
    fn identity(seq: u32) -> Vec<Record> {
        use crate::kinds::process::{FD_CWD, FD_MEM, FD_RTD, FD_TXT, PROC_CGROUP, PROC_MM};
        use crate::kinds::process::{PROC_PIDNS, PROC_RSS_SUMMED, PROC_TTY};
        let slot = |fd: i32, i_mode: u32, path_flags: u16, path: &[u8]| {
            Record::File(FileRec {
                seq,
                pid: 100,
                fd,
                f_flags: 0,
                f_mode: 0,
                i_mode,
                magic: 0xef53,
                dev: 8 << 20 | 1,
                path_flags,
                ino: 77,
                pos: 0,
                size: 4096,
                path: path.to_vec(),
            })
        };
        let chunk = |offset: u32, data: &[u8]| {
            Record::Cmdline(CmdlineRec {
                seq,
                pid: 100,
                offset,
                total: 24,
                flags: 0,
                taken_ns: 9000,
                data: data.to_vec(),
            })
        };
        let proc = ProcRec {
            seq,
            pid: 100,
            flags: PROC_MM | PROC_RSS_SUMMED | PROC_TTY | PROC_CGROUP | PROC_PIDNS,
            vsz_pages: 2048,
            rss_file_pages: 100,
            rss_anon_pages: 200,
            rss_shmem_pages: 12,
            tty_major: 136,
            tty_minor: 3,
            pidns_ino: 4026532001,
            ns_pid: 1,
            pidns_level: 1,
            cgroup_id: 5555,
            taken_ns: 1000,
            tty_name: b"pts3".to_vec(),
            cgroup: b"x.scope\0user.slice\0".to_vec(),
        };
        vec![
            Record::Proc(Box::new(proc.clone())),
            slot(FD_CWD, 0o40755, 0, b"w\xe2\x80\xaeork\xfe\0home\0"),
            slot(FD_RTD, 0o40755, 0, b""),
            slot(FD_TXT, 0o100755, 0, b"fixture\0bin\0usr\0"),
            chunk(0, b"/usr/bin/fix"),
            chunk(12, b"ture\0\0a b\0\xff\0"),
            slot(FD_MEM, 0o100755, 0, b"fixture\0bin\0usr\0"),
            Record::File(FileRec {
                ino: 78,
                ..match slot(FD_MEM, 0o100644, files::PATH_DELETED, b"old.so\0lib\0") {
                    Record::File(f) => f,
                    _ => unreachable!(),
                }
            }),
            Record::Proc(Box::new(ProcRec {
                pid: 200,
                flags: 0,
                tty_name: Vec::new(),
                cgroup: Vec::new(),
                ..proc
            })),
        ]
    }

    fn seq_snapshot() -> Vec<Record> {
        let mut recs = vec![Record::Task(Box::new(task(0, 100, 100, b"fixture", 1000)))];
        recs.extend(files(1));
        // A busy workqueue worker: kernel thread, name longer than comm.
        recs.push(Record::Task(Box::new(TaskRec {
            state: 0x402,
            flags: 0x0020_0020, // PF_KTHREAD | PF_WQ_WORKER
            ppid: 2,
            comm: b"kworker/u8:2-ext4-rsv-conversion".to_vec(),
            ..task(0, 5, 5, b"", 2000)
        })));
        recs
    }

    fn lost_end() -> Vec<Record> {
        vec![
            signal_begin(7),
            Record::Task(Box::new(task(7, 1, 1, b"x", 1000))),
        ]
    }

    const CAPTURE_IN_EVENT_FILES: u32 = task::CAPTURE_IN_EVENT | task::CAPTURE_FILES;

    #[test]
    fn fuzz_seeds_are_generated() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/records");
        for (name, records) in [
            ("open-coded-snapshot", open_coded_snapshot()),
            ("seq-snapshot", seq_snapshot()),
            ("lost-end", lost_end()),
        ] {
            let bytes: Vec<u8> = records.iter().flat_map(encode).collect();
            // What is written decodes back to the very records, file
            // paths turned into their text.
            let decoded: Vec<Record> = records
                .into_iter()
                .map(|r| match r {
                    Record::File(f) => Record::File(crate::kinds::files::as_decoded(f)),
                    other => other,
                })
                .collect();
            assert_eq!(decode_all(&bytes), (decoded, None), "{name}");
            let path = format!("{dir}/{name}");
            if std::env::var_os("ITERSNAP_WRITE_SEEDS").is_some() {
                std::fs::write(&path, &bytes).unwrap();
            }
            let on_disk = std::fs::read(&path).unwrap_or_default();
            assert!(
                on_disk == bytes,
                "{path} is not what the generator writes (ITERSNAP_WRITE_SEEDS=1 rewrites it)"
            );
        }
    }
}
