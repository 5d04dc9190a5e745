//! `itersnap man`: the page scripts/install puts in man1, from the clap
//! definitions and the docs (src/man.rs). It must hold every option and the
//! docs' sections, and render without a single groff warning.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// The sections of the page, in order: clap's, then the docs'.
const SECTIONS: &[&str] = &[
    "NAME",
    "SYNOPSIS",
    "DESCRIPTION",
    "OPTIONS",
    "OUTPUT",
    "TRIGGERS",
    "SUBCOMMANDS",
    "COLUMNS",
    "TRIGGERED SNAPSHOTS",
    "BACKENDS",
    "JSON OUTPUT",
    "EXIT STATUS",
    "ENVIRONMENT",
    "FILES",
    "SAFETY",
    "PERFORMANCE",
    "EXAMPLES",
    "VERSION",
    "SEE ALSO",
];

fn page() -> Vec<u8> {
    let out = itersnap(&["man"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `program args` with `input` on stdin: (success, stdout, stderr).
fn pipe(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    input: &[u8],
) -> (bool, String, String) {
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program} (scripts/setup installs man-db and groff-base): {e}")
        });
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The page as `man` shows it: on an ASCII terminal, or a UTF-8 one.
fn rendered(page: &[u8], locale: &str) -> String {
    let env = [("LC_ALL", locale), ("MANWIDTH", "100"), ("MANPAGER", "cat")];
    let (ok, text, err) = pipe("man", &["--warnings", "-l", "-"], &env, page);
    assert!(ok && err.is_empty(), "man -l ({locale}): {err}");
    text
}

/// The rendered page's sections: header → text.
fn sections(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    // The first and last lines are the page's header and footer.
    for line in lines.iter().skip(1).take(lines.len().saturating_sub(2)) {
        if !line.is_empty() && !line.starts_with(' ') {
            out.push((line.to_string(), String::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

#[test]
fn man_page_renders_without_warnings() {
    let page = page();
    assert!(page.is_ascii(), "roff escapes for every other character");
    for locale in ["C", "C.UTF-8"] {
        let text = rendered(&page, locale);
        assert!(text.contains("itersnap"), "{text}");
    }
    for device in ["ascii", "utf8"] {
        let args = ["-man", "-ww", "-z", "-T", device];
        let (ok, _, err) = pipe("groff", &args, &[], &page);
        assert!(ok && err.is_empty(), "groff -T {device}: {err}");
    }
}

#[test]
fn man_page_holds_clap_and_the_docs_sections() {
    let page = page();
    let text = rendered(&page, "C");
    let found: Vec<String> = sections(&text).into_iter().map(|(h, _)| h).collect();
    assert_eq!(found, SECTIONS, "{text}");
    let section = |name: &str| -> String {
        sections(&text)
            .into_iter()
            .find(|(h, _)| h == name)
            .map(|(_, body)| body)
            .unwrap()
    };
    // A line of each, from the docs the section says it comes from.
    let from_docs = [
        ("DESCRIPTION", "walks the kernel's"),
        ("COLUMNS", "NLWP"),
        (
            "TRIGGERED SNAPSHOTS",
            "Guards: --count, --min-gap, single flight",
        ),
        ("BACKENDS", "Kernel requirements"),
        ("JSON OUTPUT", "since_event_ns"),
        ("JSON OUTPUT", "itersnap check -o json"),
        ("EXIT STATUS", "101"),
        ("FILES", "/sys/kernel/btf/vmlinux"),
        ("SAFETY", "Only reads."),
        ("EXAMPLES", "sudo itersnap --interval 1s --diff"),
        ("SEE ALSO", "lsof(8)"),
        ("SEE ALSO", "docs/json.md"),
    ];
    for (name, line) in from_docs {
        let body = section(name)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(body.contains(line), "{name} without {line:?}:\n{body}");
    }
    // The subcommands, without pages of their own that nothing installs.
    let subcommands = section("SUBCOMMANDS");
    assert!(subcommands.contains("itersnap check"), "{subcommands}");
    assert!(
        subcommands.contains("itersnap completions SHELL"),
        "{subcommands}"
    );
    assert!(!text.contains("itersnap-check(1)"));
    // The synopsis names each option's value.
    let synopsis = section("SYNOPSIS")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for shown in [
        "[-p|--pid PID]",
        "[--file PATH]",
        "[--on-signal SIG]",
        "[COMM...]",
    ] {
        assert!(synopsis.contains(shown), "{synopsis}");
    }
    assert!(!synopsis.contains("bare-walk"), "{synopsis}");
    // Each source says where in the docs it comes from.
    let source = String::from_utf8(page).unwrap();
    assert!(source.contains(".\\\" From docs/usage.md: ## What a snapshot shows."));
}

#[test]
fn man_page_has_every_long_option_of_help() {
    let help = itersnap(&["--help"]);
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    let options: BTreeSet<&str> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .collect();
    assert!(options.len() > 20, "{options:?}");
    let text = rendered(&page(), "C");
    let options_text: String = sections(&text)
        .into_iter()
        .filter(|(h, _)| ["OPTIONS", "OUTPUT", "TRIGGERS"].contains(&h.as_str()))
        .map(|(_, body)| body)
        .collect();
    for option in options {
        // As the tag of its own entry: `--pid <PID>`, `-p, --pid <PID>`.
        let listed = options_text.lines().any(|l| {
            let l = l.trim_start();
            l.starts_with(option) || l.contains(&format!(", {option}"))
        });
        assert!(listed, "{option} is not in the man page's options");
    }
}

/// Every environment variable the code reads is in ENVIRONMENT.
#[test]
fn man_page_lists_every_environment_variable() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut names = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for call in ["env::var_os(\"", "env::var(\""] {
            for (at, _) in text.match_indices(call) {
                let rest = &text[at + call.len()..];
                if let Some(end) = rest.find('"') {
                    names.insert(rest[..end].to_string());
                }
            }
        }
    }
    assert!(names.contains("ITERSNAP_CORE_BTF"), "{names:?}");
    let text = rendered(&page(), "C");
    let environment = sections(&text)
        .into_iter()
        .find(|(h, _)| h == "ENVIRONMENT")
        .map(|(_, body)| body)
        .unwrap();
    for name in names {
        assert!(
            environment.contains(&name),
            "{name} is not in ENVIRONMENT:\n{environment}"
        );
    }
}
