//! The command line as a shell user meets it: completions and the man page,
//! generated from the same definition as the parser.

mod common;

use std::process::Command;

use common::*;

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
    for shell in ["zsh", "fish"] {
        let out = itersnap(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        assert!(!out.stdout.is_empty());
    }
}

#[test]
fn man_page_renders() {
    let out = itersnap(&["man"]);
    assert!(out.status.success());
    let dir = std::env::temp_dir().join(unique_comm("man"));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("itersnap.1");
    std::fs::write(&page, &out.stdout).unwrap();
    let rendered = Command::new("man")
        .args(["-l", page.to_str().unwrap()])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .expect("man (man-db, installed by scripts/setup)");
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    assert!(
        text.contains("itersnap") && text.contains("--on-signal"),
        "{text}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn help_carries_the_examples() {
    let out = itersnap(&["--help"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Examples:"));
    assert!(text.contains("sudo itersnap --on-signal SIGUSR1 bash"));
}
