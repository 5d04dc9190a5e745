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

/// Bytes from the kernel made safe for a terminal: invalid UTF-8 and control
/// characters are escaped as \xNN, backslashes doubled.
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
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    Cow::Owned(out)
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
