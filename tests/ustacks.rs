//! User-space stacks (--ustacks): a fixture built with frame pointers,
//! waiting in a known function, is unwound through its callers by the
//! iterator after the event; the event's own task in its own context.
//! Symbols are its ELF symbols, as `nm` lists them.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use common::*;
use serde_json::Value;

/// Re-executed by `start_with_named_threads`; passes trivially in a normal run.
#[test]
fn fixture_process() {
    run_fixture_if_asked();
}

/// tests/fixtures/ustack.c, built with frame pointers under a name of its
/// own (its comm), waiting on its stdin.
struct Waiting {
    child: Child,
    path: PathBuf,
}

impl Waiting {
    fn start(tag: &str) -> Waiting {
        Waiting::start_with(tag, &[])
    }

    /// With `spin`, a second thread spins in isx_spin().
    fn start_with(tag: &str, args: &[&str]) -> Waiting {
        let name = unique_comm(tag);
        let path = std::env::temp_dir().join(&name);
        let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ustack.c");
        let built = Command::new("gcc")
            .args(["-O0", "-fno-omit-frame-pointer", "-pthread", "-o"])
            .arg(&path)
            .arg(source)
            .status()
            .expect("gcc");
        assert!(built.success());
        let child = Command::new(&path)
            .args(args)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        // Until it waits in read(0).
        for _ in 0..500 {
            let syscall = std::fs::read_to_string(format!("/proc/{}/syscall", child.id()))
                .unwrap_or_default();
            if syscall.starts_with("0 ") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Waiting { child, path }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.path);
    }
}

fn symbols(row: &Value) -> Vec<String> {
    row["ustack"]
        .as_array()
        .unwrap_or_else(|| panic!("no ustack: {row}"))
        .iter()
        .map(|f| {
            let s = f["symbol"].as_str().unwrap_or("?");
            s.split('+').next().unwrap_or(s).to_string()
        })
        .collect()
}

/// Another process's stack, walked by its frame pointers after the event.
#[test]
fn a_waiting_process_is_unwound_through_its_callers() {
    let fx = Waiting::start("us");
    for backend in backends_here() {
        let pid = fx.pid().to_string();
        let args = ["--backend", backend, "--ustacks", "--no-files", "-p", &pid];
        let snap = snapshot(&args);
        let rows = rows_of(&snap, fx.pid());
        assert_eq!(rows.len(), 1, "{snap}");
        let row = rows[0];
        assert_eq!(
            symbols(row)[..3],
            ["isx_wait", "isx_outer", "main"],
            "{backend}: {row}"
        );
        let module = row["ustack"][0]["module"].as_str().unwrap();
        assert_eq!(module, fx.path.to_str().unwrap(), "{backend}");
        // Its table shows the same under its row.
        let out = itersnap(&args);
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(
            table.contains("[u] isx_wait+0x") && table.contains(&format!("({module})")),
            "{table}"
        );
    }
}

/// The event's own task, unwound by the kernel in its own context: the
/// function that made the syscall, then its caller.
#[test]
fn the_events_own_task_is_unwound_in_the_event() {
    let mut fx = Waiting::start("ue");
    let pid = fx.pid().to_string();
    let armed = Armed::start(&[
        "-o",
        "json",
        "--count",
        "1",
        "--on-syscall",
        "getppid",
        "--caller-pid",
        &pid,
        "--ustacks",
        "--no-files",
        "-p",
        &pid,
    ]);
    // Kept open: the fixture waits on it again, alive to be symbolized.
    let mut stdin = fx.child.stdin.take().unwrap();
    stdin.write_all(b"x").unwrap();
    let (code, out, err) = armed.finish();
    assert_eq!(code, Some(0), "{err}");
    let snaps = parse_lines(&out);
    let rows = rows_of(&snaps[0], fx.pid());
    assert_eq!(rows[0]["in_event"], true, "{out}");
    assert_eq!(symbols(rows[0])[..2], ["isx_after", "main"], "{out}");
    drop(stdin);
}

/// --ustacks costs nothing when off: no user stack anywhere.
#[test]
fn without_the_flag_there_is_no_user_stack() {
    let fx = Waiting::start("un");
    let snap = snapshot(&["--no-files", "-p", &fx.pid().to_string()]);
    assert!(
        rows_of(&snap, fx.pid())[0].get("ustack").is_none(),
        "{snap}"
    );
}

/// --folded: one sample per thread per snapshot, each a folded line
/// (`state;comm;frames… count`): 5 snapshots of a process count 5 per
/// thread (this test binary's harness threads, and one named isfold).
#[test]
fn folded_stacks_count_every_thread_of_every_snapshot() {
    let fx = start_with_named_threads(&["isfold"]);
    let pid = fx.pid.to_string();
    let out = itersnap(&["--interval", "50ms", "--count", "5", "--folded", "-p", &pid]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut total = 0;
    for line in text.lines() {
        let (stack, count) = line.rsplit_once(' ').unwrap();
        let frames: Vec<&str> = stack.split(';').collect();
        assert!(
            ["sleeping", "on-cpu", "runnable"].contains(&frames[0]),
            "grouped by state first: {line}"
        );
        assert!(
            frames.iter().any(|f| f.ends_with("_[k]")),
            "kernel frames marked: {line}"
        );
        total += count.parse::<u64>().unwrap();
    }
    let threads = proc_tids(fx.pid).len() as u64;
    assert!(threads >= 2);
    assert_eq!(total, 5 * threads, "{text}");
    assert!(
        text.lines().any(|l| l.split(';').nth(1) == Some("isfold")),
        "{text}"
    );
}

/// The spinning thread's row in each snapshot of `out` (JSON lines).
fn spinner_rows(out: &str, fx: &Waiting) -> Vec<Value> {
    parse_lines(out)
        .iter()
        .map(|snap| {
            rows_of(snap, fx.pid())
                .into_iter()
                .find(|r| r["tid"] != r["pid"])
                .unwrap_or_else(|| panic!("no spinning thread: {snap}"))
                .clone()
        })
        .collect()
}

/// 8 snapshots of the spinning fixture at 100 ms with both stacks: the
/// spinning thread's rows checked, how many were sampled on its CPU, and
/// the output.
fn sample_spinner(fx: &Waiting, backend: &str) -> (usize, String) {
    let pid = fx.pid().to_string();
    let out = itersnap(&[
        "--backend",
        backend,
        "--interval",
        "100ms",
        "--count",
        "8",
        "--threads",
        "--stacks",
        "--ustacks",
        "--no-files",
        "-o",
        "json",
        "-p",
        &pid,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = spinner_rows(&text, fx);
    assert_eq!(rows.len(), 8, "{text}");
    let mut sampled = 0;
    for row in &rows {
        assert_eq!(row["state"], "R", "{backend}: {row}");
        // It got its CPU after that CPU's sample (of another task): no
        // user stack, and marked so.
        if row["ustack_running"] == true {
            assert!(row.get("oncpu_sample").is_none(), "{backend}: {row}");
            continue;
        }
        // Sampled on its CPU, or walked when it waited for one.
        assert_eq!(
            symbols(row)[..2],
            ["isx_spin", "isx_spin_outer"],
            "{backend}: {row}"
        );
        if let Some(sample) = row.get("oncpu_sample") {
            assert!(sample["cpu"].is_u64(), "{backend}: {row}");
            // Taken at a tick of this run, and not after the snapshot's
            // by more than a period (the CPUs' timers fire microseconds
            // apart, either side). Not within one period before it: a
            // loaded machine delays a CPU's timer (once -116 ms, seq).
            let offset = sample["offset_ns"].as_i64().unwrap();
            assert!(
                (-800_000_000..100_000_000).contains(&offset),
                "{backend}: {row}"
            );
            sampled += 1;
        }
    }
    (sampled, text)
}

/// A thread spinning on another CPU, whose stacks no walk can read, is
/// sampled on its CPU at each tick: its user stack names the
/// function it spins in, on both backends. (On a busy machine the walk may
/// find it waiting for a CPU every time: up to three runs.) The sleeping
/// thread's CPU is /proc's (its stat's `processor`).
#[test]
fn a_spinning_thread_is_sampled_on_its_cpu() {
    let fx = Waiting::start_with("usp", &["spin"]);
    let processor = |tid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{tid}/task/{tid}/stat")).unwrap();
        let after_comm = stat.rsplit_once(')').unwrap().1;
        after_comm
            .split_whitespace()
            .nth(36)
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    for backend in backends_here() {
        let (mut sampled, mut text) = (0, String::new());
        for _ in 0..3 {
            (sampled, text) = sample_spinner(&fx, backend);
            if sampled > 0 {
                break;
            }
        }
        assert!(sampled > 0, "{backend}: never seen on a CPU: {text}");
        let last = parse_lines(&text).pop().unwrap();
        let main = rows_of(&last, fx.pid())
            .into_iter()
            .find(|r| r["tid"] == r["pid"])
            .unwrap()
            .clone();
        assert_eq!(main["on_cpu"], false, "{main}");
        assert_eq!(main["cpu"], processor(fx.pid()), "{backend}: {main}");
        // The table's PSR column, as ps's.
        let pid = fx.pid().to_string();
        let out = itersnap(&[
            "--backend",
            backend,
            "-L",
            "--no-files",
            "--columns",
            "tid,psr",
            "-p",
            &pid,
        ]);
        let table = String::from_utf8_lossy(&out.stdout);
        let psr = table
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{pid} ")))
            .unwrap_or_else(|| panic!("{table}"));
        assert_eq!(psr.trim(), processor(fx.pid()).to_string(), "{table}");
    }
}

/// Folded stacks of a 2-thread process over 5 samples sum to 10: the
/// spinning thread's on-CPU, through its own function.
#[test]
fn folded_on_cpu_and_off_cpu_stacks_in_one_picture() {
    let fx = Waiting::start_with("ufo", &["spin"]);
    let pid = fx.pid().to_string();
    let out = itersnap(&[
        "--interval",
        "100ms",
        "--count",
        "5",
        "--folded",
        "-p",
        &pid,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts: Vec<(&str, u64)> = text
        .lines()
        .map(|l| {
            let (stack, n) = l.rsplit_once(' ').unwrap();
            (stack, n.parse().unwrap())
        })
        .collect();
    assert_eq!(counts.iter().map(|c| c.1).sum::<u64>(), 10, "{text}");
    let sleeping: u64 = counts
        .iter()
        .filter(|(s, _)| s.starts_with("sleeping;") && s.contains(";isx_outer;isx_wait;"))
        .map(|c| c.1)
        .sum();
    assert_eq!(sleeping, 5, "{text}");
    // On its CPU, or waiting for it (the walk itself may have taken it).
    let spinning: u64 = counts
        .iter()
        .filter(|(s, _)| {
            (s.starts_with("on-cpu;") || s.starts_with("runnable;"))
                && s.contains(";isx_spin_outer;isx_spin")
        })
        .map(|c| c.1)
        .sum();
    assert!(spinning > 0, "{text}");
}

/// --flamegraph: an SVG that parses, naming the fixture's own function.
#[test]
fn a_flamegraph_names_the_fixtures_function() {
    let fx = Waiting::start("uf");
    let svg = std::env::temp_dir().join(format!("itersnap-fg-{}.svg", fx.pid()));
    let out = itersnap(&[
        "--flamegraph",
        svg.to_str().unwrap(),
        "-p",
        &fx.pid().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "no snapshot printed");
    let parsed = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E\n\
             t = E.parse(sys.argv[1])\n\
             print('\\n'.join(e.text or '' for e in t.iter('{http://www.w3.org/2000/svg}title')))",
        ])
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let titles = String::from_utf8_lossy(&parsed.stdout);
    assert!(titles.contains("isx_wait"), "{titles}");
    let _ = std::fs::remove_file(&svg);
}
