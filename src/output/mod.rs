//! Snapshot → text: a table for people, JSON Lines for programs.

pub mod json;
pub mod table;

use std::borrow::Cow;
use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::ValueEnum;

use crate::diff::Diff;
pub use crate::text::{digits_before, printable};

/// How snapshots are written (--output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A readable table per snapshot
    Table,
    /// JSON Lines: one object per snapshot
    Json,
}

use crate::snapshot::Snapshot;

pub struct Printer {
    pub format: OutputFormat,
    pub threads: bool,
    /// Tasks under their parents, like `ps f` (table only).
    pub tree: bool,
    /// The table's task columns (`--columns`); None for the default set.
    pub columns: Option<Vec<Column>>,
    /// ANSI colour in the table: only on a terminal, never with NO_COLOR.
    pub color: bool,
}

/// A task column of the table, named as `ps -o` names it where it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Pid,
    Tid,
    Ppid,
    Uid,
    Euid,
    Gid,
    State,
    Nlwp,
    Time,
    Start,
    /// When the task was captured: in the event, or how long after it.
    Taken,
    Comm,
}

impl Column {
    pub const NAMES: &'static [(&'static str, Column)] = &[
        ("pid", Column::Pid),
        ("tid", Column::Tid),
        ("lwp", Column::Tid),
        ("ppid", Column::Ppid),
        ("uid", Column::Euid),
        ("euid", Column::Euid),
        ("ruid", Column::Uid),
        ("gid", Column::Gid),
        ("state", Column::State),
        ("s", Column::State),
        ("stat", Column::State),
        ("nlwp", Column::Nlwp),
        ("thcount", Column::Nlwp),
        ("time", Column::Time),
        ("start", Column::Start),
        ("stime", Column::Start),
        ("taken", Column::Taken),
        ("comm", Column::Comm),
        ("command", Column::Comm),
        ("cmd", Column::Comm),
    ];

    /// The default table: ps-like, with TID when there is a row per thread.
    pub fn defaults(threads: bool) -> Vec<Column> {
        let mut cols = vec![Column::Pid];
        if threads {
            cols.push(Column::Tid);
        }
        cols.extend([
            Column::Ppid,
            Column::Euid,
            Column::State,
            Column::Nlwp,
            Column::Time,
            Column::Comm,
        ]);
        cols
    }

    /// Header text and width (right-aligned; COMMAND is last and free).
    pub fn header(self) -> (&'static str, usize) {
        match self {
            Column::Pid => ("PID", 7),
            Column::Tid => ("TID", 7),
            Column::Ppid => ("PPID", 7),
            Column::Uid => ("RUID", 6),
            Column::Euid => ("UID", 6),
            Column::Gid => ("GID", 6),
            Column::State => ("S", 1),
            Column::Nlwp => ("NLWP", 4),
            Column::Time => ("TIME", 9),
            Column::Start => ("START", 8),
            Column::Taken => ("TAKEN", 8),
            Column::Comm => ("COMMAND", 0),
        }
    }
}

/// ANSI colours for the table, or nothing.
#[derive(Debug, Clone, Copy)]
pub struct Paint(pub bool);

impl Paint {
    pub fn paint(self, code: &str, text: &str) -> String {
        if self.0 && !code.is_empty() {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// ps state letters: running green, uninterruptible red, stopped or
    /// traced yellow, zombie or dead magenta.
    pub fn state(self, state: char) -> String {
        let code = match state {
            'R' => "32",
            'D' => "1;31",
            'T' | 't' => "33",
            'Z' | 'X' => "35",
            _ => "",
        };
        self.paint(code, &state.to_string())
    }
}

/// Colour on a terminal, unless NO_COLOR is set (no-color.org).
pub fn want_color() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && io::stdout().is_terminal()
}

impl Printer {
    pub fn write(&self, w: &mut dyn Write, snap: &Snapshot) -> io::Result<()> {
        match self.format {
            OutputFormat::Table => table::write(w, snap, self),
            OutputFormat::Json => json::write(w, snap, None),
        }
    }

    /// A snapshot shown as what changed since the previous one (`--diff`).
    pub fn write_diff(&self, w: &mut dyn Write, snap: &Snapshot, diff: &Diff) -> io::Result<()> {
        match self.format {
            OutputFormat::Table => table::write_diff(w, snap, diff, self),
            OutputFormat::Json => json::write(w, snap, Some(diff)),
        }
    }
}

/// RFC 3339 UTC with microseconds, e.g. 2026-11-22T01:02:03.123456Z.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_utc_times() {
        let t = UNIX_EPOCH + Duration::from_micros(1_795_308_123_456_789);
        assert_eq!(rfc3339(t), "2026-11-22T00:42:03.456789Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn escapes_odd_bytes() {
        assert_eq!(printable(b"a\nb\xffc\\"), "a\\x0ab\\xffc\\\\");
    }
}

/// The kernel's O_* bits, in /proc/PID/fdinfo's `flags` encoding. Not libc's:
/// glibc defines O_LARGEFILE as 0 on 64-bit targets, the kernel does not.
/// (name, lsof `+fg` abbreviation, bits); composite flags come first.
#[cfg(not(any(target_arch = "aarch64", target_arch = "arm")))]
const OPEN_FLAGS: &[(&str, &str, u32)] = &[
    ("O_TMPFILE", "TMPF", 0o20_200_000),
    ("O_SYNC", "SYN", 0o4_010_000),
    ("O_APPEND", "AP", 0o2_000),
    ("O_NONBLOCK", "NB", 0o4_000),
    ("O_DSYNC", "DSYN", 0o10_000),
    ("O_ASYNC", "ASYN", 0o20_000),
    ("O_DIRECT", "DIRECT", 0o40_000),
    ("O_LARGEFILE", "", 0o100_000),
    ("O_DIRECTORY", "DIR", 0o200_000),
    ("O_NOFOLLOW", "NOFL", 0o400_000),
    ("O_NOATIME", "NOATM", 0o1_000_000),
    ("O_CLOEXEC", "CX", 0o2_000_000),
    ("O_PATH", "PATH", 0o10_000_000),
];
#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
const OPEN_FLAGS: &[(&str, &str, u32)] = &[
    ("O_TMPFILE", "TMPF", 0o20_040_000),
    ("O_SYNC", "SYN", 0o4_010_000),
    ("O_APPEND", "AP", 0o2_000),
    ("O_NONBLOCK", "NB", 0o4_000),
    ("O_DSYNC", "DSYN", 0o10_000),
    ("O_ASYNC", "ASYN", 0o20_000),
    ("O_DIRECTORY", "DIR", 0o40_000),
    ("O_NOFOLLOW", "NOFL", 0o100_000),
    ("O_DIRECT", "DIRECT", 0o200_000),
    ("O_LARGEFILE", "", 0o400_000),
    ("O_NOATIME", "NOATM", 0o1_000_000),
    ("O_CLOEXEC", "CX", 0o2_000_000),
    ("O_PATH", "PATH", 0o10_000_000),
];

/// Names of the flags set in `f_flags`, access mode first ("O_RDWR", ...);
/// bits without a name are given in octal.
pub fn open_flag_names(f_flags: u32) -> Vec<Cow<'static, str>> {
    open_flag_names_iter(f_flags).collect()
}

/// The same names, one at a time (JSON writes them without a Vec per file).
pub fn open_flag_names_iter(f_flags: u32) -> impl Iterator<Item = Cow<'static, str>> {
    let access = match f_flags & 0o3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        _ => "O_RDWR",
    };
    // A flag's bits are taken once: O_SYNC includes O_DSYNC's bit.
    let mut rest = f_flags & !0o3;
    let mut table = OPEN_FLAGS.iter();
    let named = std::iter::from_fn(move || {
        for &(name, _, bits) in table.by_ref() {
            if rest & bits == bits {
                rest &= !bits;
                return Some(Cow::Borrowed(name));
            }
        }
        // Bits without a name, in octal, last.
        let unnamed = std::mem::take(&mut rest);
        (unnamed != 0).then(|| Cow::Owned(format!("0{unnamed:o}")))
    });
    std::iter::once(Cow::Borrowed(access)).chain(named)
}

/// lsof `+fg` style: "CX,NB"; the access mode is in the FD column already and
/// O_LARGEFILE (always set on 64-bit) is left out.
pub fn open_flags_short(f_flags: u32) -> Cow<'static, str> {
    let mut rest = f_flags & !0o3;
    let mut out: Vec<&'static str> = Vec::new();
    for &(_, short, bits) in OPEN_FLAGS {
        if rest & bits == bits {
            if !short.is_empty() {
                out.push(short);
            }
            rest &= !bits;
        }
    }
    match out.as_slice() {
        [] => Cow::Borrowed("-"),
        [one] => Cow::Borrowed(one),
        _ => Cow::Owned(out.join(",")),
    }
}

#[cfg(test)]
mod flag_tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn names_fdinfo_flags() {
        // fdinfo "flags: 02104002" of an O_RDWR|O_NONBLOCK|O_CLOEXEC file.
        assert_eq!(
            open_flag_names(0o2104002),
            ["O_RDWR", "O_NONBLOCK", "O_LARGEFILE", "O_CLOEXEC"]
        );
        assert_eq!(open_flags_short(0o2104002), "NB,CX");
        assert_eq!(open_flags_short(0o100000), "-");
        assert_eq!(open_flag_names(0o4010001), ["O_WRONLY", "O_SYNC"]);
        assert_eq!(open_flag_names(0o40000000), ["O_RDONLY", "040000000"]);
    }
}
