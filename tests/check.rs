//! `itersnap check`: the compatibility report, from the kernel itself.

mod common;

use std::process::Command;

use common::*;

/// Re-executed by `Fixture::start`; passes trivially in a normal run.
#[test]
fn fixture_process() {
    run_fixture_if_asked();
}

#[test]
fn check_reports_open_coded_for_every_mode_here() {
    // These machines run 6.18: everything is there.
    let out = itersnap(&["check", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["can_run"], true);
    let modes = report["modes"].as_array().unwrap();
    let names: Vec<&str> = modes.iter().map(|m| m["mode"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "one-shot",
            "--on-signal",
            "--on-syscall",
            "--on-tracepoint",
            "--on-uprobe",
            "--interval"
        ]
    );
    for m in modes {
        assert_eq!(m["backend"], "open-coded", "{m}");
        assert!(!m["in_event"].as_str().unwrap().is_empty(), "{m}");
        assert!(!m["completion"].as_str().unwrap().is_empty(), "{m}");
    }
    let features = report["features"].as_array().unwrap();
    let available = |group: &str, name: &str| {
        features
            .iter()
            .find(|f| f["group"] == group && f["name"].as_str().unwrap().starts_with(name))
            .unwrap_or_else(|| panic!("{group}/{name} reported"))["available"]
            == true
    };
    // What the embedded objects use, found in them rather than in a list.
    for kfunc in [
        "bpf_iter_task_new",
        "bpf_iter_task_next",
        "bpf_iter_num_new",
    ] {
        assert!(available("kfuncs", kfunc), "{kfunc}");
    }
    for helper in [
        "bpf_seq_write",
        "bpf_ringbuf_output",
        "bpf_get_task_stack",
        "bpf_probe_read_kernel",
    ] {
        assert!(available("helpers", helper), "{helper}");
    }
    assert!(available("iterator targets", "iter/task_file"));
    assert!(available("attach points", "tracepoint signal_generate"));
    assert!(available("maps", "ring buffer"));
}

#[test]
fn check_table_and_exit_status() {
    let out = itersnap(&["check"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("itersnap check: Linux "), "{text}");
    assert!(text.contains("backend chosen by --backend auto:"));
    assert!(text.trim_end().ends_with("itersnap can run here."));

    // Without privilege nothing can load: the report says so, exit 1.
    let out = Command::new("setpriv")
        .args(["--inh-caps=-all", "--bounding-set=-all", "--"])
        .args([ITERSNAP, "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("NO  privilege to load BPF"), "{text}");
    assert!(text.trim_end().ends_with("itersnap cannot run here."));
}

#[test]
fn forced_backends_run_every_mode_here() {
    let fx = Fixture::start("b");
    for backend in BACKENDS {
        let snap = snapshot(&["--backend", backend, "--pid", &fx.pid.to_string()]);
        assert_eq!(snap["backend"], backend);
        assert_eq!(snapshot_fds(rows_of(&snap, fx.pid)[0]), proc_fds(fx.pid));
    }
}

/// `check -o json` here, with the privilege to load BPF and without, is
/// what docs/check.schema.json says, and the schema refuses what the
/// report never holds.
#[test]
fn check_json_is_as_its_schema_says() {
    let out = itersnap(&["check", "-o", "json"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_valid_check(&report);

    // Without privilege every mode has no backend: null, and the schema's
    // `nothing`/`none`.
    let out = Command::new("setpriv")
        .args(["--inh-caps=-all", "--bounding-set=-all", "--"])
        .args([ITERSNAP, "check", "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let unprivileged: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_valid_check(&unprivileged);
    assert_eq!(unprivileged["can_run"], false);
    assert!(unprivileged["modes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["backend"].is_null()));

    let mut renamed = report.clone();
    let feature = renamed["features"][0].as_object_mut().unwrap();
    let ok = feature.remove("available").unwrap();
    feature.insert("ok".into(), ok);
    assert!(
        !check_schema_accepts(&renamed),
        "an unknown field is refused"
    );
    let mut wrong = report.clone();
    wrong["modes"][0]["backend"] = serde_json::json!("bpftrace");
    assert!(
        !check_schema_accepts(&wrong),
        "an unknown backend is refused"
    );
    let mut missing = report.clone();
    missing.as_object_mut().unwrap().remove("can_run");
    assert!(
        !check_schema_accepts(&missing),
        "a missing field is refused"
    );
    let mut no_backend = report;
    no_backend["modes"][0]["backend"] = serde_json::Value::Null;
    assert!(
        !check_schema_accepts(&no_backend),
        "without a backend, nothing is captured in the event"
    );
}
