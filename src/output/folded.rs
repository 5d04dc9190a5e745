//! Stacks for flame graphs (`--folded`, `--flamegraph`): every snapshot
//! of the run adds one sample per thread, its stack folded into one line
//! as flamegraph.pl, inferno and speedscope read them, outermost first:
//! `sleeping;bash;main;read_line;…;do_syscall_64_[k];…;schedule_[k] 12`.
//! The first frame groups the samples by the thread's state (`on-cpu`,
//! `runnable`, `sleeping`, `disk`, …), then its name, its user stack (`--ustacks`),
//! its kernel stack (frames marked `_[k]`, flamegraph.pl's convention).
//! Identical stacks are counted, not repeated: 10,000 threads sampled at
//! 10 Hz cost a map of the distinct stacks.

use std::collections::HashMap;
use std::io::{self, Write};

use crate::kinds::stacks::Frame;
use crate::kinds::ustacks::UStack;
use crate::snapshot::Snapshot;
use crate::text::printable;

/// Where the samples go at the end of the run: folded lines to stdout,
/// an SVG to a file, or both.
#[derive(Debug)]
pub struct FoldSink {
    pub folded: std::cell::RefCell<Folded>,
    pub print: bool,
    /// --flamegraph's file, created before the run.
    pub svg: Option<(std::path::PathBuf, std::fs::File)>,
}

/// The samples of a run, by folded stack.
#[derive(Debug, Default)]
pub struct Folded {
    counts: HashMap<String, u64>,
}

/// The group a thread's state puts it in: on a CPU (`on-cpu`: its
/// stacks from the CPU's sample), waiting for one (`runnable`), asleep
/// (`S`), in uninterruptible sleep, usually disk I/O (`D`).
fn group(state: char, on_cpu: bool) -> &'static str {
    match state {
        'R' if on_cpu => "on-cpu",
        'R' => "runnable",
        'S' => "sleeping",
        'D' => "disk",
        'T' | 't' => "stopped",
        'I' => "idle",
        'Z' | 'X' => "exiting",
        'P' => "parked",
        _ => "other",
    }
}

/// A frame's name as a folded line may hold it: no `;` (the separator), no
/// control characters (escaped).
fn frame_name(name: &str) -> String {
    printable(name.as_bytes()).replace(';', ":")
}

/// A kernel symbol without its offset and size: `do_sys_poll`.
fn kernel_frame(f: &Frame) -> String {
    match &f.symbol {
        Some(s) => {
            let name = s.split(['+', ' ']).next().unwrap_or(s);
            format!("{}_[k]", frame_name(name))
        }
        None => format!("{:#x}_[k]", f.addr),
    }
}

/// A user frame: its function, else the file it is in (`[libc.so.6]`),
/// else `[unknown]`.
fn user_frame(symbol: Option<&str>, module: Option<&str>) -> String {
    match (symbol, module) {
        (Some(s), _) => frame_name(s.split('+').next().unwrap_or(s)),
        (None, Some(m)) => format!("[{}]", frame_name(m.rsplit('/').next().unwrap_or(m))),
        (None, None) => "[unknown]".into(),
    }
}

/// One thread's folded stack, outermost first.
pub fn fold(
    (state, on_cpu): (char, bool),
    comm: &[u8],
    ustack: Option<&UStack>,
    stack: Option<&[Frame]>,
) -> String {
    let mut frames = vec![
        group(state, on_cpu).to_string(),
        printable(comm).replace(';', ":"),
    ];
    if let Some(u) = ustack {
        frames.extend(
            u.frames
                .iter()
                .rev()
                .map(|f| user_frame(f.symbol.as_deref(), f.module.as_deref())),
        );
    }
    if let Some(k) = stack {
        frames.extend(k.iter().rev().map(kernel_frame));
    }
    frames.join(";")
}

impl Folded {
    /// One sample per row (a thread, with --threads).
    pub fn add(&mut self, snap: &Snapshot) {
        for row in &snap.rows {
            let line = fold(
                (row.task.state, row.task.on_cpu),
                &row.task.comm,
                row.ustack.as_ref(),
                row.stack.as_deref(),
            );
            *self.counts.entry(line).or_default() += 1;
        }
    }

    /// The folded lines, sorted (as stackcollapse's output is).
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .counts
            .iter()
            .map(|(stack, n)| format!("{stack} {n}"))
            .collect();
        lines.sort();
        lines
    }

    pub fn write_folded(&self, w: &mut dyn Write) -> io::Result<()> {
        for line in self.lines() {
            writeln!(w, "{line}")?;
        }
        Ok(())
    }

    /// The flame graph, an SVG, as inferno draws it.
    pub fn write_svg(&self, w: &mut dyn Write, title: &str) -> anyhow::Result<()> {
        let mut options = inferno::flamegraph::Options::default();
        options.title = title.to_string();
        options.count_name = "samples".into();
        let lines = self.lines();
        inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), w)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::ustacks::UFrame;

    #[test]
    fn stacks_fold_outermost_first() {
        let ustack = UStack {
            frames: vec![
                UFrame {
                    addr: 1,
                    symbol: Some("isx_wait+0x19".into()),
                    module: Some("/tmp/fx".into()),
                },
                UFrame {
                    addr: 2,
                    symbol: None,
                    module: Some("/lib/libc.so.6".into()),
                },
                UFrame {
                    addr: 3,
                    symbol: None,
                    module: None,
                },
            ],
            partial: true,
            running: false,
            in_event: false,
        };
        let kernel = [
            Frame {
                addr: 4,
                symbol: Some("pipe_read+0x1f0/0x4a0".into()),
            },
            Frame {
                addr: 5,
                symbol: Some("ksys_read+0x6b/0xf0 [mod]".into()),
            },
        ];
        assert_eq!(
            fold(('S', false), b"a;b c", Some(&ustack), Some(&kernel)),
            "sleeping;a:b c;[unknown];[libc.so.6];isx_wait;ksys_read_[k];pipe_read_[k]"
        );
        assert_eq!(fold(('R', true), b"x\n", None, None), "on-cpu;x\\x0a");
        assert_eq!(fold(('R', false), b"x", None, None), "runnable;x");
    }
}
