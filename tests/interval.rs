//! Periodic sampling (--interval) on both backends, and --diff.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

/// Re-executed by `Fixture::start`; passes trivially in a normal run.
#[test]
fn fixture_process() {
    run_fixture_if_asked();
}

/// Five snapshots whose kernel timestamps are 200 ms ± 20% apart (or whole
/// periods apart, each lost tick reported), from a perf-event program
/// (open-coded) or a user-space timer (seq).
#[test]
fn interval_ticks_are_evenly_spaced() {
    let fx = Fixture::start("i");
    for (backend, mechanism) in [
        ("open-coded", "a perf_event program on a CPU-clock event"),
        ("seq", "a user-space timer"),
    ] {
        let armed = Armed::start(&[
            "-o",
            "json",
            "--backend",
            backend,
            "--interval",
            "200ms",
            "--count",
            "5",
            &fx.comm,
        ]);
        let (code, out, err) = armed.finish();
        assert_eq!(code, Some(0), "{err}");
        assert!(err.contains(mechanism), "{backend}: {err}");
        let snaps = parse_lines(&out);
        assert_eq!(snaps.len(), 5, "{backend}");
        let times: Vec<u64> = snaps
            .iter()
            .map(|s| s["ktime_ns"].as_u64().unwrap())
            .collect();
        for (pair, later) in times.windows(2).zip(&snaps[1..]) {
            // A tick the kernel did not run (another BPF program was running
            // on that CPU, as when tests run in parallel) or a guard skipped
            // leaves a gap of whole periods, and the next snapshot says so.
            let gap = pair[1] - pair[0];
            let periods = (gap + 100_000_000) / 200_000_000;
            let skipped = &later["skipped"];
            let reported: u64 = ["missed", "busy", "min_gap"]
                .iter()
                .map(|k| skipped[k].as_u64().unwrap())
                .sum();
            assert!(
                periods >= 1 && gap.abs_diff(periods * 200_000_000) <= 40_000_000,
                "{backend}: ticks {gap} ns apart: {times:?}"
            );
            assert_eq!(
                reported,
                periods - 1,
                "{backend}: {gap} ns gap, skipped {skipped}: {times:?}"
            );
        }
        for s in &snaps {
            assert_eq!(s["trigger"]["type"], "interval");
            assert_eq!(s["trigger"]["interval_ns"], 200_000_000);
            assert_eq!(s["backend"], backend);
            // Every tick sees the fixture, with all its files.
            let row = rows_of(s, fx.pid)[0];
            assert_eq!(snapshot_fds(row), proc_fds(fx.pid));
            // A tick captures nothing inside an event: all after it.
            assert_eq!(row["in_event"], false, "{backend}");
            let capture = &s["capture"];
            assert_eq!(capture["in_event"], 0, "{backend}: {capture}");
            assert_eq!(capture["budget_ns"], 0, "{backend}: {capture}");
            assert_eq!(s["after_event"], true, "{backend}");
        }
    }
}

fn pids_in(diff: &Value) -> BTreeSet<u64> {
    let mut pids = BTreeSet::new();
    for key in [
        "appeared",
        "exited",
        "state_changes",
        "files_opened",
        "files_closed",
        "cpu",
    ] {
        for item in diff[key].as_array().unwrap() {
            pids.insert(item["pid"].as_u64().unwrap());
        }
    }
    pids
}

fn paths(diff: &Value, key: &str, pid: u32) -> Vec<String> {
    diff[key]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["pid"] == pid)
        .map(|c| c["file"]["path"].as_str().unwrap().to_string())
        .collect()
}

/// A fixture opens a file, forks a child, closes the file and lets the child
/// exit, each between ticks: the diffs show exactly that.
#[test]
fn diff_shows_exactly_what_changed() {
    for backend in BACKENDS {
        let mut fx = Fixture::start_event("d", "diff");
        let armed = Armed::start(&[
            "-o",
            "json",
            "--backend",
            backend,
            "--interval",
            "300ms",
            "--diff",
            &fx.comm,
        ]);
        // Let the first (whole) snapshot be taken before anything changes.
        std::thread::sleep(std::time::Duration::from_millis(350));
        fx.go();
        let child = fx.child_pid();
        fx.wait();
        std::thread::sleep(std::time::Duration::from_millis(400));
        let (code, out, err) = armed.stop(libc::SIGINT);
        assert_eq!(code, Some(0), "{err}");
        let snaps = parse_lines(&out);
        // ~3.2 s at 300 ms: about 10 ticks, counting those the kernel did
        // not run (each reported by the snapshot after it).
        let missed: u64 = snaps
            .iter()
            .map(|s| s["skipped"]["missed"].as_u64().unwrap())
            .sum();
        let ticks = snaps.len() as u64 + missed;
        assert!(ticks >= 8, "{backend}: {ticks} ticks");
        assert!(snaps[0]["tasks"].is_array(), "the first snapshot is whole");
        let diffs: Vec<&Value> = snaps[1..].iter().map(|s| &s["diff"]).collect();
        assert!(snaps[1..].iter().all(|s| s.get("tasks").is_none()));

        let me = u64::from(fx.pid);
        let moment = fx.dir.join("moment.txt").display().to_string();
        let file = fx.dir.join("diff-file.txt").display().to_string();
        let mut opened = Vec::new();
        let mut closed = Vec::new();
        let mut appeared = Vec::new();
        let mut exited = Vec::new();
        for d in &diffs {
            let pids = pids_in(d);
            assert!(
                pids.is_subset(&BTreeSet::from([me, child])),
                "{backend}: only the fixture and its child change: {d}"
            );
            opened.extend(paths(d, "files_opened", fx.pid));
            closed.extend(paths(d, "files_closed", fx.pid));
            appeared.extend(
                d["appeared"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["pid"].as_u64().unwrap()),
            );
            exited.extend(
                d["exited"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["pid"].as_u64().unwrap()),
            );
        }
        assert_eq!(opened, vec![moment.clone(), file.clone()], "{backend}");
        // moment.txt closes an instant before the fixture exits: its files go
        // with it, not as separate changes.
        assert_eq!(closed, vec![file.clone()], "{backend}");
        assert_eq!(appeared, vec![child], "{backend}");
        assert_eq!(
            exited.first(),
            Some(&child),
            "{backend}: the child exits first"
        );
        assert!(exited.contains(&me), "{backend}: then the fixture");
    }
}
