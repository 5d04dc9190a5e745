//! Kernel stacks: one record per thread (`bpf/kinds/stack.h`, filled by
//! `bpf/kinds/stack.bpf.h`), shown as `/proc/PID/stack` shows them: its
//! layout and decoding, symbols, its JSON and its table lines.

use std::io::{self, Write};

use serde::Serialize;

use crate::ksyms::Ksyms;
use crate::wire::Fields;

/// `struct stack_rec` up to its addresses.
pub const STACK_HDR_SIZE: usize = 16;
/// Frames kept per thread.
pub const STACK_MAX_DEPTH: usize = 64;

/// One `struct stack_rec`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackRec {
    pub seq: u32,
    pub pid: u32,
    pub ips: Vec<u64>,
}

/// A stack record within a record whose header was checked.
pub fn decode(f: &Fields<'_>, seq: u32) -> Result<StackRec, &'static str> {
    if f.len() < STACK_HDR_SIZE {
        return Err("stack record too short");
    }
    let nr = (f.u32(12) as usize).min(STACK_MAX_DEPTH);
    if STACK_HDR_SIZE + nr * 8 > f.len() {
        return Err("stack runs past its record");
    }
    Ok(StackRec {
        seq,
        pid: f.u32(8),
        ips: (0..nr).map(|i| f.u64(STACK_HDR_SIZE + i * 8)).collect(),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub addr: u64,
    /// `function+0xoff/0xsize [module]`, as /proc/PID/stack prints it.
    pub symbol: Option<String>,
}

/// The record's frames, symbolized, innermost first.
pub fn frames(rec: &StackRec, ksyms: Option<&Ksyms>) -> Vec<Frame> {
    let frames = rec
        .ips
        .iter()
        .map(|&addr| Frame {
            addr,
            symbol: ksyms.and_then(|k| k.describe(addr)),
        })
        .collect();
    trim_bpf_frames(frames)
}

/// What /proc/PID/wchan gives for a task in `state` with these frames:
/// the function it sleeps in. The kernel's stack of another task already
/// leaves out the scheduler's and the locks' functions, as get_wchan()
/// skips them, so that is its first frame's function; nothing for a task
/// that runs (ps shows `-`), or without a stack (a zombie's is gone).
pub fn wchan(frames: &[Frame], state: char) -> Option<String> {
    if state == 'R' {
        return None;
    }
    let symbol = frames.first()?.symbol.as_deref()?;
    // `function+0xoff/0xsize [module]`: the function.
    let function = symbol.split(['+', ' ']).next()?;
    (!function.is_empty()).then(|| function.to_string())
}

/// Functions through which a BPF program reaches bpf_get_task_stack().
const BPF_MACHINERY: &[&str] = &[
    "__bpf_get_stack",
    "__bpf_get_task_stack",
    "bpf_get_task_stack",
    "bpf_prog_",
    "bpf_trace_run",
    "__bpf_trace_",
    "__traceiter_",
    "trace_call_bpf",
    "bpf_dispatcher",
    "__uprobe_perf_func",
    "uprobe_dispatcher",
    "uprobe_prog_run",
    "bpf_prog_test_run",
    "bpf_overflow_handler",
];

/// The stack of the task a trigger fired in was captured from inside the
/// BPF program: drop those leading frames (and the program's own JIT code,
/// which has no symbol) so it starts where the event happened, like
/// /proc/PID/stack would.
fn trim_bpf_frames(frames: Vec<Frame>) -> Vec<Frame> {
    let is_machinery = |f: &Frame| match &f.symbol {
        Some(s) => BPF_MACHINERY.iter().any(|m| s.starts_with(m)),
        None => true,
    };
    if !frames.first().is_some_and(is_machinery) {
        return frames;
    }
    let Some(last) = frames.iter().rposition(is_machinery) else {
        return frames;
    };
    frames.into_iter().skip(last + 1).collect()
}

#[derive(Serialize)]
pub struct FrameJson<'a> {
    addr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    symbol: Option<&'a str>,
}

/// The stack's JSON list (docs/json.md).
pub fn json(frames: &[Frame]) -> Vec<FrameJson<'_>> {
    frames
        .iter()
        .map(|f| FrameJson {
            addr: format!("{:#x}", f.addr),
            symbol: f.symbol.as_deref(),
        })
        .collect()
}

/// The stack under its task, as /proc/PID/stack prints it.
pub fn write_lines(w: &mut dyn Write, indent: usize, frames: &[Frame]) -> io::Result<()> {
    for frame in frames {
        match &frame.symbol {
            Some(s) => writeln!(w, "{:indent$}[<0>] {s}", "")?,
            None => writeln!(w, "{:indent$}[<0>] {:#x}", "", frame.addr)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoder's offsets are those of the C struct the BPF compiler built.
    #[test]
    fn layout_matches_the_bpf_header() {
        use crate::bpf::seqiter::types::stack_rec;
        use std::mem::{offset_of, size_of};
        assert_eq!(offset_of!(stack_rec, pid), 8);
        assert_eq!(offset_of!(stack_rec, nr_ips), 12);
        assert_eq!(offset_of!(stack_rec, ips), STACK_HDR_SIZE);
        assert_eq!(size_of::<stack_rec>(), STACK_HDR_SIZE + 8 * STACK_MAX_DEPTH);
    }

    #[test]
    fn bpf_frames_are_trimmed() {
        let f = |s: Option<&str>| Frame {
            addr: 1,
            symbol: s.map(String::from),
        };
        let frames = vec![
            f(Some("__bpf_get_stack+0x48b/0x4d0")),
            f(None),
            f(Some("bpf_trace_run2+0xf2/0x1b0")),
            f(Some("__traceiter_sched_process_exit+0x30/0x50")),
            f(Some("do_exit+0x450/0xab0")),
            f(Some("do_group_exit+0x29/0xb0")),
        ];
        let kept: Vec<_> = trim_bpf_frames(frames)
            .into_iter()
            .map(|f| f.symbol.unwrap())
            .collect();
        assert_eq!(kept, ["do_exit+0x450/0xab0", "do_group_exit+0x29/0xb0"]);
        let plain = vec![f(Some("do_nanosleep+0x1/0x2")), f(None)];
        assert_eq!(trim_bpf_frames(plain.clone()), plain);
    }
}
