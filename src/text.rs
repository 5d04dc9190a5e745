//! Text helpers every layer may use: bytes shown safely, numbers written
//! by hand, durations as people write them. Below everything but the
//! standard library.

use std::borrow::Cow;
use std::time::Duration;

/// Writes the digits of `v` in `base` so that they end just before
/// `buf[end]`; returns where they start. By hand, not with the formatting
/// machinery: numbers like these are written for every file of a snapshot.
pub fn digits_before(buf: &mut [u8], end: usize, mut v: u64, base: u64) -> usize {
    let mut at = end;
    loop {
        at -= 1;
        buf[at] = b'0' + (v % base) as u8;
        v /= base;
        if v == 0 {
            return at;
        }
    }
}

/// Appends `v` in decimal (JSON numbers, by hand for the same reason).
pub fn push_decimal(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 20];
    let at = digits_before(&mut buf, 20, v, 10);
    out.extend_from_slice(&buf[at..]);
}

/// Appends `bytes` as a JSON string, exactly as serde_json writes
/// `String::from_utf8_lossy(bytes)`: invalid UTF-8 as U+FFFD, `"`, `\` and
/// control characters escaped, the rest as is.
pub fn push_json_string(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // from_utf8 first: its ASCII fast path is quicker than lossy's chunks.
    let lossy;
    let text = match std::str::from_utf8(bytes) {
        Ok(valid) => valid.as_bytes(),
        Err(_) => {
            lossy = String::from_utf8_lossy(bytes);
            lossy.as_bytes()
        }
    };
    out.reserve(text.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut unicode = *b"\\u0000";
    for (i, &b) in text.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => {
                unicode[4] = HEX[(b >> 4) as usize];
                unicode[5] = HEX[(b & 15) as usize];
                &unicode
            }
            _ => continue,
        };
        out.extend_from_slice(&text[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&text[start..]);
    out.push(b'"');
}

/// Levenshtein distance between two short strings (a typo's distance from a
/// word the user may have meant).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// Unicode's invisible format characters (category Cf) a terminal would
/// act on or hide: the bidirectional controls (U+202E reverses what
/// follows), zero-width spaces and joiners, the byte order mark, tags.
fn is_format_char(c: char) -> bool {
    matches!(
        c as u32,
        0xad | 0x600..=0x605
            | 0x61c
            | 0x6dd
            | 0x70f
            | 0x890..=0x891
            | 0x8e2
            | 0x180e
            | 0x200b..=0x200f
            | 0x202a..=0x202e
            | 0x2060..=0x2064
            | 0x2066..=0x206f
            | 0xfeff
            | 0xfff9..=0xfffb
            | 0x110bd
            | 0x110cd
            | 0x13430..=0x1343f
            | 0x1bca0..=0x1bca3
            | 0x1d173..=0x1d17a
            | 0xe0001
            | 0xe0020..=0xe007f
    )
}

/// Bytes from the kernel made safe for a terminal: invalid UTF-8 and control
/// characters (C0, DEL, C1) are escaped as \xNN, invisible format
/// characters (bidirectional controls, zero-width ones) as \uNNNN,
/// backslashes doubled.
pub fn printable(bytes: &[u8]) -> Cow<'_, str> {
    use std::fmt::Write as _;
    // Most names and paths are plain printable ASCII: nothing to escape.
    if bytes
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'\\')
    {
        return Cow::Borrowed(std::str::from_utf8(bytes).unwrap_or_default());
    }
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        let _ = write!(out, "\\x{b:02x}");
                    }
                }
                c if is_format_char(c) && (c as u32) < 0x10000 => {
                    let _ = write!(out, "\\u{:04X}", c as u32);
                }
                c if is_format_char(c) => {
                    let _ = write!(out, "\\U{:08X}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    Cow::Owned(out)
}

/// `shown` (text `printable` made) cut to `width` characters for a table
/// column, marked as ps marks a cut user name: `averyve+`. An escape
/// (`\x0a`, `\u202E`) is kept whole or left out, never split.
pub fn cut_marked(shown: &str, width: usize) -> Cow<'_, str> {
    if shown.chars().count() <= width {
        return Cow::Borrowed(shown);
    }
    let room = width.saturating_sub(1);
    let mut kept = 0; // characters
    let mut end = 0; // bytes
    let mut chars = shown.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        let len = match (c, chars.peek().map(|&(_, n)| n)) {
            ('\\', Some('x')) => 4,
            ('\\', Some('u')) => 6,
            ('\\', Some('U')) => 10,
            ('\\', Some('\\')) => 2,
            _ => 1,
        };
        if kept + len > room {
            break;
        }
        for _ in 1..len {
            chars.next();
        }
        kept += len;
        end = chars.peek().map_or(shown.len(), |&(next, _)| next);
    }
    Cow::Owned(format!("{}+", &shown[..end]))
}

/// The exact bytes of a kernel name that is not valid UTF-8, in base64
/// (RFC 4648, padded), for JSON's `<field>_base64`: its string has U+FFFD
/// for them, so two such names could read alike. None for valid UTF-8.
pub fn base64_if_not_utf8(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes).is_err().then(|| base64(bytes))
}

/// Bytes in base64 (RFC 4648, padded).
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// 0, 250us, 100ms, 1.5s, 2m
pub fn human_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    match ns {
        0 => "0".into(),
        n if n % 60_000_000_000 == 0 => format!("{}m", n / 60_000_000_000),
        n if n >= 1_000_000_000 => format!("{}s", d.as_secs_f64()),
        n if n >= 1_000_000 => format!("{}ms", n as f64 / 1e6),
        n if n >= 1_000 => format!("{}us", n as f64 / 1e3),
        n => format!("{n}ns"),
    }
}

/// 850us, 1.2ms, 35ms, 1.4s: two or three significant digits.
pub fn short_duration(ns: u64) -> String {
    let us = ns as f64 / 1e3;
    if us < 1000.0 {
        format!("{us:.0}us")
    } else if us < 10_000.0 {
        format!("{:.1}ms", us / 1e3)
    } else if us < 1_000_000.0 {
        format!("{:.0}ms", us / 1e3)
    } else {
        format!("{:.1}s", us / 1e6)
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

/// A time of day and date in the local time zone (`TZ` honoured, as ps
/// and date do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    pub year: i32,
    /// Day of the year, 0-365.
    pub yday: i32,
    /// 0-11.
    pub month: usize,
    pub mday: i32,
    /// 0 is Sunday.
    pub wday: usize,
    pub hour: i32,
    pub min: i32,
    pub sec: i32,
}

/// Seconds since the epoch in the local time zone.
pub fn local_time(secs: i64) -> Option<LocalTime> {
    let t = libc::time_t::try_from(secs).ok()?;
    // SAFETY: localtime_r only writes the tm we own; a zeroed tm is a valid
    // value of that plain C struct.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return None;
        }
        tm
    };
    Some(LocalTime {
        year: tm.tm_year + 1900,
        yday: tm.tm_yday,
        month: tm.tm_mon.clamp(0, 11) as usize,
        mday: tm.tm_mday,
        wday: tm.tm_wday.clamp(0, 6) as usize,
        hour: tm.tm_hour,
        min: tm.tm_min,
        sec: tm.tm_sec,
    })
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// How ps shows a task's start time, by the name of its column. `start`
/// and `now` are seconds since the epoch; local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFormat {
    /// `ps -o start` (STARTED): `21:04:05` within a day, else `  Nov 03`.
    Start,
    /// `ps -o stime`, `start_time` (STIME, START of `ps aux`): `21:04`
    /// today, `Nov30` this year, else `2025`.
    Stime,
    /// `ps -o bsdstart`: `21:04` within a day, else ` Nov 30`.
    BsdStart,
    /// `ps -o lstart`: `Tue Dec  1 21:04:05 2026`.
    Lstart,
}

pub fn ps_start_time(format: StartFormat, start: i64, now: i64) -> String {
    let Some(t) = local_time(start) else {
        return "-".into();
    };
    let within_a_day = start + 86_400 > now;
    let month = MONTHS[t.month];
    match format {
        StartFormat::Start if within_a_day => {
            format!("{:02}:{:02}:{:02}", t.hour, t.min, t.sec)
        }
        StartFormat::Start => format!("  {month} {:02}", t.mday),
        StartFormat::BsdStart if within_a_day => format!("{:02}:{:02}", t.hour, t.min),
        StartFormat::BsdStart => format!(" {month} {:02}", t.mday),
        StartFormat::Stime => match local_time(now) {
            Some(n) if n.year == t.year && n.yday == t.yday => {
                format!("{:02}:{:02}", t.hour, t.min)
            }
            Some(n) if n.year == t.year => format!("{month}{:02}", t.mday),
            _ => t.year.to_string(),
        },
        StartFormat::Lstart => format!(
            "{} {month} {:2} {:02}:{:02}:{:02} {}",
            DAYS[t.wday], t.mday, t.hour, t.min, t.sec, t.year
        ),
    }
}

#[cfg(test)]
mod time_tests {
    use super::*;

    /// In UTC (the test sets no TZ of its own: glibc reads TZ once, and
    /// tests run in one process): each format as procps writes it.
    #[test]
    fn start_times_read_as_ps_writes_them() {
        // Only meaningful where the local zone is UTC; CI and the VMs are.
        let utc = local_time(0).is_some_and(|t| t.hour == 0 && t.year == 1970);
        if !utc {
            return;
        }
        let start = 1_795_308_123; // 2026-11-22 00:42:03 UTC, a Sunday
        let fmt = |f, now| ps_start_time(f, start, now);
        assert_eq!(fmt(StartFormat::Start, start + 60), "00:42:03");
        assert_eq!(fmt(StartFormat::Start, start + 90_000), "  Nov 22");
        assert_eq!(fmt(StartFormat::BsdStart, start + 60), "00:42");
        assert_eq!(fmt(StartFormat::BsdStart, start + 90_000), " Nov 22");
        assert_eq!(fmt(StartFormat::Stime, start + 60), "00:42");
        assert_eq!(fmt(StartFormat::Stime, start + 90_000), "Nov22");
        assert_eq!(fmt(StartFormat::Stime, start + 86_400 * 60), "2026");
        assert_eq!(fmt(StartFormat::Lstart, start), "Sun Nov 22 00:42:03 2026");
        assert_eq!(
            ps_start_time(
                StartFormat::Start,
                1_772_409_600,
                1_772_409_600 + 86_400 * 2
            ),
            "  Mar 02"
        );
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;

    /// Every byte alone, in UTF-8 sequences and broken ones: what serde_json
    /// writes for the same text.
    #[test]
    fn json_strings_read_as_serde_json_writes_them() {
        let mut cases: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b'a', b, b'z']).collect();
        cases.extend(
            [
                &b""[..],
                b"\xc3\xa9t\xc3\xa9",
                b"\xe2\x80\xae bidi",
                b"\xf0\x9f\x98\x80",
                b"cut \xf0\x9f\x98",
                b"\xff\xfe\xfd",
                b"\\\"\\\"",
                b"\x00\x00",
            ]
            .map(<[u8]>::to_vec),
        );
        for bytes in cases {
            let mut ours = Vec::new();
            push_json_string(&mut ours, &bytes);
            let theirs = serde_json::to_vec(&String::from_utf8_lossy(&bytes)).unwrap();
            assert_eq!(ours, theirs, "{bytes:?}");
        }
    }

    /// The table shows no byte a terminal would act on: C0, DEL and C1 as
    /// \xNN, bidirectional and zero-width characters as \uNNNN; other text
    /// as it is.
    #[test]
    fn terminal_text_escapes_what_a_terminal_acts_on() {
        let cases: [(&[u8], &str); 8] = [
            (b"plain name", "plain name"),
            (b"a\nb\x7f\\", "a\\x0ab\\x7f\\\\"),
            ("c1\u{85}".as_bytes(), "c1\\xc2\\x85"),
            ("evil\u{202e}fdp.exe".as_bytes(), "evil\\u202Efdp.exe"),
            ("\u{2066}iso\u{2069}".as_bytes(), "\\u2066iso\\u2069"),
            (
                "zero\u{200b}width\u{feff}".as_bytes(),
                "zero\\u200Bwidth\\uFEFF",
            ),
            ("tag\u{e0041}".as_bytes(), "tag\\U000E0041"),
            ("été 日本 😀".as_bytes(), "été 日本 😀"),
        ];
        for (bytes, want) in cases {
            assert_eq!(printable(bytes), want, "{bytes:?}");
        }
        assert_eq!(printable(b"bad \xff"), "bad \\xff");
    }

    /// A cut name says it was cut, and never ends in half an escape.
    #[test]
    fn cut_names_are_marked_and_keep_escapes_whole() {
        assert_eq!(cut_marked("short", 8), "short");
        assert_eq!(cut_marked("exactly8", 8), "exactly8");
        assert_eq!(cut_marked("averyverylongname", 8), "averyve+");
        // `ab\x0acdef`: the escape would end past 7 characters: left out.
        assert_eq!(cut_marked("abcde\\x0acdef", 8), "abcde+");
        assert_eq!(cut_marked("ab\\x0acdefgh", 8), "ab\\x0ac+");
        assert_eq!(cut_marked("abcdef\\\\gh", 8), "abcdef+");
        assert_eq!(cut_marked("abcde\\\\gh", 8), "abcde\\\\+");
        assert_eq!(cut_marked("a\\u202Ebcdefgh", 8), "a\\u202E+");
        assert_eq!(cut_marked("日本語の名前です", 4), "日本語+");
        assert_eq!(cut_marked("toolong", 0), "+");
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("chek", "check"), 1);
        assert_eq!(edit_distance("check", "check"), 0);
        assert_eq!(edit_distance("", "man"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("nginx", "check"), 5);
    }

    #[test]
    fn decimals_read_as_format_writes_them() {
        for v in [0, 1, 9, 10, 99, 4096, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, v);
            assert_eq!(out, v.to_string().into_bytes());
        }
    }
}
