//! Command lines: what `/proc/PID/cmdline` gives, in chunk records
//! (`bpf/kinds/cmdline.h`, read by the sleepable iterator of
//! `bpf/complete.bpf.h` through `bpf/kinds/cmdline.bpf.h`), joined here;
//! the argv array of JSON and ps's `args` text of the table.

use std::borrow::Cow;

use crate::text::printable;
use crate::wire::Fields;

/// `struct cmdline_rec` up to its data.
pub const CMDLINE_HDR_SIZE: usize = 32;
pub const CMDLINE_CHUNK: usize = 4096;

/// enum cmdline_flags.
pub const CMDLINE_PROCTITLE: u16 = 1 << 0;
pub const CMDLINE_FAULT: u16 = 1 << 1;
pub const CMDLINE_TRUNCATED: u16 = 1 << 2;
pub const CMDLINE_IN_EVENT: u16 = 1 << 3;

/// One `struct cmdline_rec`, decoded: a chunk of a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdlineRec {
    pub seq: u32,
    pub pid: u32,
    pub offset: u32,
    pub total: u32,
    pub flags: u16,
    pub taken_ns: u64,
    pub data: Vec<u8>,
}

/// A command-line record within a record whose header was checked.
pub fn decode(f: &Fields<'_>, seq: u32) -> Result<CmdlineRec, &'static str> {
    if f.len() < CMDLINE_HDR_SIZE {
        return Err("command-line record too short");
    }
    let len = (f.u16(20) as usize).min(CMDLINE_CHUNK);
    if CMDLINE_HDR_SIZE + len > f.len() {
        return Err("command line runs past its record");
    }
    Ok(CmdlineRec {
        seq,
        pid: f.u32(8),
        offset: f.u32(12),
        total: f.u32(16),
        flags: f.u16(22),
        taken_ns: f.u64(24),
        data: f.slice(CMDLINE_HDR_SIZE, len).to_vec(),
    })
}

/// A process's command line as `/proc/PID/cmdline` holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline {
    pub bytes: Vec<u8>,
    /// Longer than the records carry (bpf/kinds/cmdline.h): the rest is missing.
    pub truncated: bool,
    /// A read of the process's memory failed: what is here is what was read.
    pub fault: bool,
    /// Its length as /proc reads it (what `truncated` leaves out is the
    /// rest), 0 if unknown.
    pub total: usize,
    /// Read inside the event, from the event's own task: as it was then.
    pub in_event: bool,
}

impl Cmdline {
    /// One process's chunks, in any order, joined. With setproctitle()
    /// (`CMDLINE_PROCTITLE`) /proc stops after the first NUL, as here.
    pub fn join(mut chunks: Vec<CmdlineRec>) -> Cmdline {
        chunks.sort_by_key(|c| c.offset);
        chunks.dedup_by_key(|c| c.offset);
        let mut out = Cmdline::default();
        for c in &chunks {
            // A chunk that does not continue the bytes so far is junk.
            if c.offset as usize != out.bytes.len() {
                out.truncated = true;
                break;
            }
            out.bytes.extend_from_slice(&c.data);
            out.total = out.total.max(c.total as usize);
            out.truncated |= c.flags & CMDLINE_TRUNCATED != 0;
            out.fault |= c.flags & CMDLINE_FAULT != 0;
        }
        out.in_event = !chunks.is_empty() && chunks.iter().all(|c| c.flags & CMDLINE_IN_EVENT != 0);
        if chunks
            .first()
            .is_some_and(|c| c.flags & CMDLINE_PROCTITLE != 0)
        {
            if let Some(nul) = memchr::memchr(0, &out.bytes) {
                out.bytes.truncate(nul + 1);
            }
        }
        out
    }

    /// The argv array as /proc/PID/cmdline holds it: the bytes split at
    /// NULs, the last NUL ending the last argument ("a\0\0b\0" is "a", "",
    /// "b").
    pub fn raw_args(&self) -> Vec<&[u8]> {
        let bytes = self.bytes.strip_suffix(b"\0").unwrap_or(&self.bytes);
        if self.bytes.is_empty() {
            return Vec::new();
        }
        bytes.split(|&b| b == 0).collect()
    }

    /// The arguments as ps shows them: without the trailing empty ones that
    /// a process rewriting its title (setproctitle: redis, postgres, nginx)
    /// leaves as NUL padding, as procps skips trailing NULs.
    pub fn args(&self) -> Vec<&[u8]> {
        self.args_iter().collect()
    }

    /// args(), one at a time: the bytes without their trailing NULs,
    /// split at NULs (all NULs: one empty argument).
    pub fn args_iter(&self) -> impl Iterator<Item = &[u8]> + Clone {
        let end = self
            .bytes
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |i| i + 1);
        (!self.bytes.is_empty())
            .then(|| self.bytes[..end].split(|&b| b == 0))
            .into_iter()
            .flatten()
    }

    /// Whether the raw argv differs from what ps shows (title padding).
    pub fn padded(&self) -> bool {
        // args() drops the empty arguments that end raw_args(): there are
        // some when a NUL comes right before the final one.
        self.bytes.ends_with(b"\0\0")
    }

    /// JSON's `cmdline`: each argument as a string (bytes that are not
    /// UTF-8 as U+FFFD, as paths), as ps shows them.
    pub fn json(&self) -> ArgsJson<'_> {
        ArgsJson(self)
    }

    /// JSON's `cmdline_raw`: every argument, the trailing empty ones too.
    pub fn raw_json(&self) -> Vec<Cow<'_, str>> {
        self.raw_args()
            .into_iter()
            .map(String::from_utf8_lossy)
            .collect()
    }
}

/// Cmdline::json(): written as the arguments are split, never collected
/// (a snapshot writes one per process, every tick).
pub struct ArgsJson<'a>(&'a Cmdline);

impl serde::Serialize for ArgsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.args_iter().map(String::from_utf8_lossy))
    }
}

/// ps's `args`: the arguments joined with spaces; a process without a
/// command line (a kernel thread, a zombie) as `[name]`, a zombie with
/// ` <defunct>`.
pub fn ps_args<'a>(cmdline: Option<&'a Cmdline>, comm: &'a [u8], zombie: bool) -> Cow<'a, str> {
    match cmdline.filter(|c| !c.bytes.is_empty()) {
        Some(c) => {
            let joined = c.args().join(&b' ');
            let mut shown = printable(&joined).into_owned();
            // Cut: say so, and how much is missing, rather than pass the
            // first part off as the whole.
            if c.truncated {
                match c.total.checked_sub(c.bytes.len()).filter(|&n| n > 0) {
                    Some(missing) => shown.push_str(&format!(" [… {missing} more bytes not read]")),
                    None => shown.push_str(" [… cut]"),
                }
            }
            Cow::Owned(shown)
        }
        None if zombie => Cow::Owned(format!("[{}] <defunct>", printable(comm))),
        None => Cow::Owned(format!("[{}]", printable(comm))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_drop_the_empty_arguments_that_pad() {
        for bytes in [
            &b""[..],
            b"\0",
            b"\0\0",
            b"a",
            b"a\0",
            b"a\0\0",
            b"a\0\0\0",
            b"a\0\0b",
            b"a\0\0b\0",
            b"a\0b\0\0",
        ] {
            let c = Cmdline {
                bytes: bytes.to_vec(),
                ..Cmdline::default()
            };
            let dropped = c.raw_args().len() != c.args().len();
            assert_eq!(c.padded(), dropped, "{bytes:?}");
            // args(): raw_args() without the trailing empty arguments,
            // one kept.
            let mut expected = c.raw_args();
            while expected.len() > 1 && expected.last().is_some_and(|a| a.is_empty()) {
                expected.pop();
            }
            assert_eq!(c.args(), expected, "{bytes:?}");
        }
    }

    fn chunk(offset: u32, flags: u16, data: &[u8]) -> CmdlineRec {
        CmdlineRec {
            seq: 1,
            pid: 7,
            offset,
            total: 0,
            flags,
            taken_ns: 0,
            data: data.to_vec(),
        }
    }

    #[test]
    fn record_layout_matches_the_c_struct() {
        use crate::bpf::seqiter::types::cmdline_rec;
        use std::mem::{offset_of, size_of};
        assert_eq!(offset_of!(cmdline_rec, pid), 8);
        assert_eq!(offset_of!(cmdline_rec, offset), 12);
        assert_eq!(offset_of!(cmdline_rec, total), 16);
        assert_eq!(offset_of!(cmdline_rec, len), 20);
        assert_eq!(offset_of!(cmdline_rec, flags), 22);
        assert_eq!(offset_of!(cmdline_rec, taken_ns), 24);
        assert_eq!(offset_of!(cmdline_rec, data), CMDLINE_HDR_SIZE);
        assert_eq!(size_of::<cmdline_rec>(), CMDLINE_HDR_SIZE + CMDLINE_CHUNK);
    }

    #[test]
    fn arguments_split_as_proc_holds_them() {
        let c = Cmdline::join(vec![chunk(0, 0, b"a\0\0b c\0")]);
        assert_eq!(c.args(), vec![&b"a"[..], b"", b"b c"]);
        assert_eq!(ps_args(Some(&c), b"x", false), "a  b c");
        assert!(Cmdline::join(vec![chunk(0, 0, b"")]).args().is_empty());
    }

    #[test]
    fn chunks_join_in_order_and_a_gap_truncates() {
        let c = Cmdline::join(vec![chunk(2, 0, b"cd\0"), chunk(0, 0, b"ab")]);
        assert_eq!(c.bytes, b"abcd\0");
        assert!(!c.truncated);
        let c = Cmdline::join(vec![chunk(0, 0, b"ab"), chunk(9, 0, b"zz")]);
        assert_eq!(c.bytes, b"ab");
        assert!(c.truncated);
        // The table says it is cut, and how much is missing when known.
        assert_eq!(ps_args(Some(&c), b"x", false), "ab [… cut]");
        let mut long = chunk(0, CMDLINE_TRUNCATED, b"abc\0de");
        long.total = 1000;
        let c = Cmdline::join(vec![long]);
        assert_eq!(
            ps_args(Some(&c), b"x", false),
            "abc de [… 994 more bytes not read]"
        );
    }

    #[test]
    fn a_proctitle_stops_at_its_first_nul() {
        let c = Cmdline::join(vec![chunk(
            0,
            CMDLINE_PROCTITLE,
            b"nginx: worker\0PATH=/bin\0",
        )]);
        assert_eq!(c.args(), vec![&b"nginx: worker"[..]]);
        let c = Cmdline::join(vec![chunk(0, CMDLINE_PROCTITLE, b"no nul at all")]);
        assert_eq!(c.args(), vec![&b"no nul at all"[..]]);
    }

    #[test]
    fn processes_without_one_show_as_ps_shows_them() {
        assert_eq!(ps_args(None, b"kthreadd", false), "[kthreadd]");
        assert_eq!(ps_args(None, b"sh", true), "[sh] <defunct>");
    }
}
