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

/// tests/fixtures/ustack.c, built with frame pointers under a name of its
/// own (its comm), waiting on its stdin.
struct Waiting {
    child: Child,
    path: PathBuf,
}

impl Waiting {
    fn start(tag: &str) -> Waiting {
        let name = unique_comm(tag);
        let path = std::env::temp_dir().join(&name);
        let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ustack.c");
        let built = Command::new("gcc")
            .args(["-O0", "-fno-omit-frame-pointer", "-o"])
            .arg(&path)
            .arg(source)
            .status()
            .expect("gcc");
        assert!(built.success());
        let child = Command::new(&path).stdin(Stdio::piped()).spawn().unwrap();
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
        let snap = snapshot(&[
            "--backend",
            backend,
            "--ustacks",
            "--no-files",
            "-p",
            &fx.pid().to_string(),
        ]);
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
        let out = itersnap(&[
            "--backend",
            backend,
            "--ustacks",
            "--no-files",
            "-p",
            &fx.pid().to_string(),
        ]);
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
    fx.child.stdin.take().unwrap().write_all(b"x").unwrap();
    let (code, out, err) = armed.finish();
    assert_eq!(code, Some(0), "{err}");
    let snaps = parse_lines(&out);
    let rows = rows_of(&snaps[0], fx.pid());
    assert_eq!(rows[0]["in_event"], true, "{out}");
    assert_eq!(symbols(rows[0])[..2], ["isx_after", "main"], "{out}");
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
