//! Every value as ps, lsof and /proc show it: whole-system comparisons with
//! the tools users check itersnap against, on both backends. A process that
//! changed while it was read is left out (compared before and after).

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::*;

#[test]
fn fixture_process() {
    run_fixture_if_asked();
}

/// `pid → rest of the line` of a ps or itersnap table, first column the pid.
fn by_pid(text: &str) -> BTreeMap<u32, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let (pid, rest) = line.split_once(' ').unwrap_or((line, ""));
            Some((pid.parse().ok()?, rest.trim().to_string()))
        })
        .collect()
}

fn ps_columns(tz: &str, format: &str) -> BTreeMap<u32, String> {
    let out = Command::new("ps")
        .env("TZ", tz)
        .args(["-e", "-o", &format!("pid=,{format}=")])
        .output()
        .expect("running ps");
    assert!(out.status.success());
    by_pid(&String::from_utf8_lossy(&out.stdout))
}

fn itersnap_columns(tz: &str, backend: &str, format: &str) -> BTreeMap<u32, String> {
    let out = Command::new(ITERSNAP)
        .env("TZ", tz)
        .args([
            "--no-files",
            "--backend",
            backend,
            "--columns",
            &format!("pid,{format}"),
        ])
        .output()
        .expect("running itersnap");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // The header line and the column headings are not rows.
    by_pid(&text.lines().skip(2).collect::<Vec<_>>().join("\n"))
}

/// Start times in every format ps has, in the local time zone as TZ says,
/// equal ps's for every process that lived through both reads.
#[test]
fn start_times_read_as_ps_shows_them() {
    for tz in ["UTC", "UTC-9", "EST5EDT"] {
        for format in ["start", "stime", "start_time", "bsdstart", "lstart"] {
            for backend in BACKENDS {
                let before = ps_columns(tz, format);
                let ours = itersnap_columns(tz, backend, format);
                let after = ps_columns(tz, format);
                let mut compared = 0;
                for (pid, want) in &before {
                    if *pid == 1 || after.get(pid) != Some(want) {
                        continue;
                    }
                    let Some(got) = ours.get(pid) else {
                        continue; // exited in between
                    };
                    assert_eq!(got, want, "pid {pid}, {format}, TZ={tz}, {backend}");
                    compared += 1;
                }
                assert!(
                    compared > 10,
                    "only {compared} compared ({format}, TZ={tz})"
                );
            }
        }
    }
}

/// Long FLAGS widen their column: every DESCRIPTION starts where its
/// heading does.
#[test]
fn descriptions_stay_in_line_with_long_flags() {
    use std::os::unix::fs::OpenOptionsExt;
    let path = std::env::temp_dir().join(unique_comm("flags"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_DSYNC | libc::O_NOATIME)
        .open(&path)
        .unwrap();
    let me = std::process::id().to_string();
    let out = itersnap(&["--pid", &me]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let heading = text.lines().find(|l| l.ends_with("DESCRIPTION")).unwrap();
    let column = heading.find("DESCRIPTION").unwrap();
    let long = text
        .lines()
        .find(|l| l.ends_with(path.to_str().unwrap()))
        .expect("the file is listed");
    assert!(long.contains("AP,NB,DSYN,NOATM,CX"), "{long}");
    for line in text
        .lines()
        .filter(|l| l.contains(" REG ") || l.contains(" FIFO "))
    {
        assert_eq!(
            line.find('/').or(line.find("pipe:")),
            Some(column),
            "{line}\n{heading}"
        );
    }
    drop(file);
    std::fs::remove_file(path).unwrap();
}
