//! The short version of scripts/stress: snapshots in a loop while processes
//! come and go by the hundred and files open and close. itersnap never
//! crashes or hangs, every snapshot is complete or says exactly what it
//! lost, the kernel logs no BPF warning, and nothing stays loaded.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Re-executed by `Fixture::start`; passes trivially in a normal run.
#[test]
fn fixture_process() {
    run_fixture_if_asked();
}

/// Kernel log lines that speak of BPF trouble.
fn bpf_warnings() -> Vec<String> {
    let out = Command::new("dmesg").output().expect("dmesg");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            (l.contains("bpf") && (l.contains("warn") || l.contains("bug") || l.contains("leak")))
                || l.contains("rcu_sched self-detected stall")
                || l.contains("soft lockup")
        })
        .map(String::from)
        .collect()
}

/// Short-lived children and files opened and closed, until stopped.
fn churn(stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<u64>> {
    let forker = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let _ = Command::new("sh")
                    .args(["-c", "exec 3>/dev/null; :"])
                    .stdout(Stdio::null())
                    .status();
                n += 1;
            }
            n
        })
    };
    let opener = std::thread::spawn(move || {
        let dir = std::env::temp_dir().join(unique_comm("churn"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let files: Vec<_> = (0..50)
                .map(|i| std::fs::File::create(dir.join(format!("f{i}"))).unwrap())
                .collect();
            drop(files);
            n += 1;
        }
        let _ = std::fs::remove_dir_all(dir);
        n
    });
    vec![forker, opener]
}

fn check_snapshots(out: &str, what: &str) -> usize {
    let snaps: Vec<Value> = parse_lines(out);
    for s in &snaps {
        let c = &s["counts"];
        if s["complete"] == false {
            // Incomplete is allowed under churn only with a stated reason.
            assert!(!s["problems"].as_array().unwrap().is_empty(), "{what}: {s}");
        } else {
            assert_eq!(c["dropped"], 0, "{what}");
        }
        assert_eq!(
            c["processes"],
            s["tasks"]
                .as_array()
                .map_or(c["processes"].clone(), |t| t.len().into())
        );
    }
    snaps.len()
}

#[test]
fn snapshots_under_process_churn() {
    let warnings_before = bpf_warnings();
    let stop = Arc::new(AtomicBool::new(false));
    let workers = churn(Arc::clone(&stop));
    let deadline = Instant::now() + Duration::from_secs(6);

    // One-shots on both backends, back to back. Incomplete snapshots are
    // accepted here (exit 0) and checked for their reason below.
    let mut oneshots = 0;
    while Instant::now() < deadline - Duration::from_secs(3) {
        for backend in BACKENDS {
            let out = itersnap(&["-o", "json", "--allow-incomplete", "--backend", backend]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            oneshots += check_snapshots(&String::from_utf8_lossy(&out.stdout), backend);
        }
    }
    // Periodic sampling at 50 ms, and a signal trigger fired repeatedly.
    let interval = Armed::start(&[
        "-o",
        "json",
        "--allow-incomplete",
        "--interval",
        "50ms",
        "--count",
        "20",
    ]);
    let fx = Fixture::start("s");
    let pid = fx.pid.to_string();
    let signals = Armed::start(&[
        "-o",
        "json",
        "--allow-incomplete",
        "--on-signal",
        "WINCH",
        "--signal-target",
        &pid,
        "--min-gap",
        "0",
    ]);
    for _ in 0..20 {
        // SAFETY: kill(2) to our own fixture; SIGWINCH is ignored by default
        // but still generated, which is what the trigger sees.
        unsafe { libc::kill(fx.pid as i32, libc::SIGWINCH) };
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, out, err) = interval.finish();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(check_snapshots(&out, "interval"), 20);
    let (code, out, err) = signals.stop(libc::SIGINT);
    assert_eq!(code, Some(0), "{err}");
    let taken = check_snapshots(&out, "on-signal");
    assert!(taken >= 10, "{taken} snapshots of 20 signals: {err}");

    stop.store(true, Ordering::Relaxed);
    let churned: Vec<u64> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(churned[0] > 50, "the churn forked {} processes", churned[0]);
    assert!(oneshots >= 4);
    drop(fx);
    assert_eq!(
        orphaned_programs(),
        Vec::<u32>::new(),
        "nothing stays loaded"
    );
    let new_warnings: Vec<String> = bpf_warnings()
        .into_iter()
        .filter(|w| !warnings_before.contains(w))
        .collect();
    assert!(new_warnings.is_empty(), "kernel log: {new_warnings:?}");
}
