//! The command line as a shell user meets it: completions generated from
//! the same definition as the parser (the man page: tests/man.rs).

mod common;

use std::process::Command;

use common::*;

/// Re-executed by `Fixture::start`; passes trivially in a normal run.
#[test]
fn fixture_process() {
    run_fixture_if_asked();
}

#[test]
fn bash_completion_script_is_valid_bash() {
    let out = itersnap(&["completions", "bash"]);
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("--on-signal") && script.contains("--interval"));
    let check = Command::new("bash")
        .args(["-n", "-c", &script])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    for shell in ["bash", "zsh", "fish"] {
        let out = itersnap(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        // What --on-signal, --on-syscall and --columns take is offered;
        // the hidden bench command is not.
        for offered in ["SIGUSR1", "openat", "lstart", "man"] {
            assert!(script.contains(offered), "{shell} without {offered}");
        }
        assert!(!script.contains("bare-walk"), "{shell} offers bare-walk");
    }
    // The man subcommand is in --help.
    let help = String::from_utf8(itersnap(&["--help"]).stdout).unwrap();
    assert!(help.contains("  man "), "{help}");
}

/// Where a PID goes (--pid, -p, --signal-target, --caller-pid), completion
/// offers the running processes' ids: bash from /proc, zsh and fish with
/// their own helpers.
#[test]
fn completions_offer_pids_where_a_pid_goes() {
    let script = String::from_utf8(itersnap(&["completions", "bash"]).stdout).unwrap();
    let me = std::process::id().to_string();
    for flag in ["--pid", "-p", "--signal-target", "--caller-pid"] {
        // bash-completion calls the function with the command, the word
        // under the cursor and the word before it.
        let probe = format!(
            "{script}\nCOMP_WORDS=(itersnap {flag} '')\nCOMP_CWORD=2\n\
             COMP_LINE='itersnap {flag} '\nCOMP_POINT=${{#COMP_LINE}}\n\
             _itersnap itersnap '' {flag}\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n"
        );
        let out = Command::new("bash").args(["-c", &probe]).output().unwrap();
        let offered = String::from_utf8_lossy(&out.stdout);
        assert!(offered.lines().any(|l| l == me), "bash, {flag}: {offered}");
        assert!(
            offered.lines().all(|l| l.parse::<u32>().is_ok()),
            "{flag}: {offered}"
        );
    }
    let zsh = String::from_utf8(itersnap(&["completions", "zsh"]).stdout).unwrap();
    let fish = String::from_utf8(itersnap(&["completions", "fish"]).stdout).unwrap();
    for long in ["pid", "signal-target", "caller-pid"] {
        let line = zsh
            .lines()
            .find(|l| l.contains(&format!("--{long}=[")))
            .unwrap_or_else(|| panic!("zsh: --{long}"));
        assert!(line.ends_with(":PID:_pids' \\"), "zsh: {line}");
        let line = fish
            .lines()
            .find(|l| l.contains(&format!(" -l {long} ")))
            .unwrap_or_else(|| panic!("fish: --{long}"));
        assert!(
            line.ends_with("-a \"(__fish_complete_pids)\""),
            "fish: {line}"
        );
    }
}

/// libelf and zlib are linked in (Cargo.toml: libbpf-rs's `static`), so
/// the binary runs where neither library is installed.
#[test]
fn binary_links_no_libelf_or_zlib() {
    let out = Command::new("ldd")
        .arg(ITERSNAP)
        .output()
        .expect("running ldd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let libs = String::from_utf8_lossy(&out.stdout);
    assert!(libs.contains("libc.so"), "{libs}");
    for lib in ["libelf", "libz.", "libbpf"] {
        assert!(!libs.contains(lib), "{lib} is linked dynamically:\n{libs}");
    }
}

#[test]
fn help_carries_the_examples() {
    let out = itersnap(&["--help"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Examples:"));
    assert!(text.contains("sudo itersnap --on-signal SIGUSR1 bash"));
}

/// --tree: a child and a grandchild nested under the fixture, as `ps f`.
#[test]
fn tree_nests_children_under_parents() {
    let mut fx = Fixture::start_event("t", "tree");
    fx.go();
    let child = fx.child_pid();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let snap = snapshot(&[&fx.comm]);
    let rows = snap["tasks"].as_array().unwrap();
    let grandchild = rows
        .iter()
        .find(|r| r["ppid"] == child)
        .expect("the grandchild is in the snapshot")["pid"]
        .as_u64()
        .unwrap();
    let out = itersnap(&[
        "--tree",
        "--no-files",
        "--columns",
        "pid,ppid,comm",
        &fx.comm,
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    let line_of = |pid: u64| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(&pid.to_string()))
            .unwrap_or_else(|| panic!("{pid} in {text}"))
            .to_string()
    };
    let comm = &fx.comm;
    assert!(
        line_of(u64::from(fx.pid)).ends_with(&format!(" {comm}")),
        "{text}"
    );
    assert!(line_of(child).ends_with(&format!(" \\_ {comm}")), "{text}");
    assert!(
        line_of(grandchild).ends_with(&format!("     \\_ {comm}")),
        "{text}"
    );
    // Parents come before their children.
    let at = |pid: u64| text.find(&line_of(pid)).unwrap();
    assert!(at(u64::from(fx.pid)) < at(child) && at(child) < at(grandchild));
    fx.wait();
}

/// Runs itersnap on a pseudo-terminal (util-linux `script`), as a user would.
fn on_a_terminal(args: &str, env: &[(&str, &str)]) -> String {
    let out = Command::new("script")
        .args(["-qc", &format!("{ITERSNAP} {args}"), "/dev/null"])
        .envs(env.iter().copied())
        .output()
        .expect("script (util-linux)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Colour only on a terminal that has it, never with NO_COLOR, never on
/// TERM=dumb (or no TERM), never in a pipe.
#[test]
fn colour_on_terminals_only() {
    // itersnap's own walking thread is running: a green R.
    let args = "--threads --no-files itersnap";
    let xterm = ("TERM", "xterm");
    assert!(on_a_terminal(args, &[xterm]).contains("\u{1b}[32mR\u{1b}[0m"));
    assert!(!on_a_terminal(args, &[xterm, ("NO_COLOR", "1")]).contains('\u{1b}'));
    assert!(!on_a_terminal(args, &[("TERM", "dumb")]).contains('\u{1b}'));
    assert!(!on_a_terminal(args, &[("TERM", "")]).contains('\u{1b}'));
    let piped = itersnap(&["--threads", "--no-files", "itersnap"]);
    assert!(!String::from_utf8_lossy(&piped.stdout).contains('\u{1b}'));
}

#[test]
fn columns_pick_what_is_shown() {
    let fx = Fixture::start("c");
    let out = itersnap(&["--columns", "pid,comm", "--no-files", &fx.comm]);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["PID", "COMMAND"]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        [fx.pid.to_string().as_str(), fx.comm.as_str()]
    );
    assert_eq!(lines.len(), 3);
    let bad = itersnap(&["--columns", "pid,rsz"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown column 'rsz'"));
}

/// While a trigger is armed, a status line on a terminal's stderr; none in a
/// pipe (every other test reads stderr through one).
#[test]
fn status_line_on_terminals_only() {
    let comm = unique_comm("st");
    let args = format!("--on-signal USR2 --signal-target-comm {comm}");
    let out = Command::new("script")
        .args([
            "-qc",
            &format!("timeout -s INT 1 {ITERSNAP} {args}"),
            "/dev/null",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\r\u{1b}[Kitersnap: 0 snapshots, 0 triggers skipped, 0 records dropped, waiting for the first"),
        "{text:?}"
    );
    let piped = Command::new("timeout")
        .args(["-s", "INT", "1", ITERSNAP])
        .args(args.split(' '))
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&piped.stderr).contains('\u{1b}'));
}
