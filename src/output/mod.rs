//! Snapshot → text: a table for people, JSON Lines for programs.

pub mod folded;
pub mod json;
pub mod metrics;
pub mod table;

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::ValueEnum;

use crate::diff::Diff;
pub use crate::kinds::task::Column;
pub use crate::text::{printable, Paint};

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
    /// --activity: the default table shows WCHAN and SYSCALL.
    pub activity: bool,
    /// Tasks under their parents, like `ps f` (table only).
    pub tree: bool,
    /// The table's task columns (`--columns`); None for the default set.
    pub columns: Option<Vec<Column>>,
    /// --file's and --mount's targets: the table says who holds each, as
    /// `fuser -v` does.
    pub targets: Vec<Vec<u8>>,
    /// ANSI colour in the table: only on a terminal, never with NO_COLOR.
    pub color: bool,
    /// --folded, --flamegraph: snapshots are sampled into flame graphs
    /// written at the end, not printed.
    pub fold: Option<folded::FoldSink>,
}

/// Colour on a terminal, unless NO_COLOR is set (no-color.org) or the
/// terminal says it has none (TERM=dumb, or no TERM at all), as ls and
/// grep decide.
pub fn want_color() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = std::env::var_os("TERM").is_none_or(|t| t.is_empty() || t == "dumb");
    !no_color && !dumb && io::stdout().is_terminal()
}

impl Printer {
    pub fn write(&self, w: &mut dyn Write, snap: &Snapshot) -> io::Result<()> {
        if let Some(fold) = &self.fold {
            fold.folded.borrow_mut().add(snap);
            return Ok(());
        }
        match self.format {
            OutputFormat::Table => table::write(w, snap, self),
            OutputFormat::Json => json::write(w, snap, None),
        }
    }

    /// The end of the run: the flame graphs of its `samples` snapshots.
    pub fn finish(&self, w: &mut dyn Write, samples: u64) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let Some(fold) = &self.fold else {
            return Ok(());
        };
        let folded = fold.folded.borrow();
        if fold.print {
            folded
                .write_folded(w)
                .context("writing the folded stacks")?;
            w.flush().context("writing the folded stacks")?;
        }
        if let Some((path, file)) = &fold.svg {
            let mut svg = io::BufWriter::new(file);
            folded.write_svg(
                &mut svg,
                &format!("itersnap: {samples} snapshots, one sample per thread each"),
            )?;
            svg.flush()
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
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
