//! Every error a user can cause: one clear line on stderr, a non-zero exit,
//! no panic, no libbpf dump, and nothing left loaded in the kernel.

mod common;

use std::process::{Command, Output};

use common::*;

/// Re-executed by `Fixture::start`; passes trivially in a normal run.
#[test]
fn fixture_process() {
    run_fixture_if_asked();
}

fn assert_one_line_error(out: &Output, expect: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "exactly one line: {stderr:?}");
    assert!(stderr.starts_with("itersnap: error: "), "{stderr}");
    assert!(stderr.contains(expect), "{stderr:?} should say {expect:?}");
    assert!(!stderr.contains("panicked") && !stderr.contains("libbpf"));
    assert!(out.stdout.is_empty(), "no output on error");
    assert_eq!(
        orphaned_programs(),
        Vec::<u32>::new(),
        "nothing left loaded"
    );
}

#[test]
fn comm_longer_than_15_bytes() {
    let out = itersnap(&["a-very-long-name"]);
    assert_one_line_error(&out, "at most 15 bytes");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_pids() {
    for bad in ["0", "abc", "-3", "1.5", "99999999999"] {
        let out = itersnap(&["--pid", bad]);
        assert_one_line_error(&out, "PID must be a positive number");
        assert_eq!(out.status.code(), Some(2), "--pid {bad}");
    }
}

#[test]
fn unknown_output_format() {
    let out = itersnap(&["--output", "xml"]);
    assert_one_line_error(&out, "invalid value 'xml'");
    assert!(String::from_utf8_lossy(&out.stderr).contains("table, json"));
}

#[test]
fn unknown_flag() {
    assert_one_line_error(&itersnap(&["--frobnicate"]), "unexpected argument");
}

#[test]
fn without_capabilities() {
    // Root with every capability dropped, and an ordinary user.
    for extra in [
        &[][..],
        &["--reuid=65534", "--regid=65534", "--clear-groups"][..],
    ] {
        let out = Command::new("setpriv")
            .args(["--inh-caps=-all", "--bounding-set=-all"])
            .args(extra)
            .arg("--")
            .arg(ITERSNAP)
            .output()
            .expect("setpriv (util-linux)");
        assert_one_line_error(
            &out,
            "needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)",
        );
        assert_eq!(out.status.code(), Some(1));
    }
}

#[test]
fn without_btf() {
    // Hide the kernel's BTF in a private mount namespace.
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs none /sys/kernel/btf && exec {ITERSNAP}"
        ))
        .output()
        .expect("unshare (util-linux)");
    assert_one_line_error(&out, "this kernel has no BTF");
}

#[test]
fn a_process_that_does_not_exist_is_an_empty_snapshot() {
    // Like `ps -p`: not an error to ask, but nothing to show.
    let snap = snapshot(&["--pid", "2147483647"]);
    assert_eq!(snap["tasks"].as_array().unwrap().len(), 0);
    assert_eq!(orphaned_programs(), Vec::<u32>::new());
}

#[test]
fn nothing_left_loaded_after_a_snapshot() {
    let fx = Fixture::start("n");
    let snap = snapshot(&["--stacks", "--threads", &fx.comm]);
    assert!(!rows_of(&snap, fx.pid).is_empty());
    assert_eq!(orphaned_programs(), Vec::<u32>::new());
}
