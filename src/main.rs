//! The itersnap command: parses the command line and hands over to the
//! library (src/lib.rs), turning errors into one line and an exit status.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use clap::Parser;

use itersnap::cli::{self, Cli};
use itersnap::kinds::holds;
use itersnap::kinds::sockets::SocketFilter;
use itersnap::{backend, check, features, man, run};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    if let Some(conflict) = cli.inapplicable() {
        return usage_error(clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            conflict,
        ));
    }
    if cli.port.len() > SocketFilter::PORTS_MAX {
        return usage_error(clap::Error::raw(
            clap::error::ErrorKind::TooManyValues,
            format!(
                "--port is given {} times, at most {} are checked in the kernel",
                cli.port.len(),
                SocketFilter::PORTS_MAX
            ),
        ));
    }
    let targets = cli.file.len() + cli.mount.len();
    if targets > holds::TARGETS_MAX {
        return usage_error(clap::Error::raw(
            clap::error::ErrorKind::TooManyValues,
            format!(
                "--file and --mount name {targets} targets, at most {} are matched in the kernel",
                holds::TARGETS_MAX
            ),
        ));
    }
    configure_libbpf_log(cli.verbose);
    match cli.command {
        Some(cli::Command::Check) => return check(&cli),
        Some(cli::Command::BareWalk) => return bare_walk(),
        Some(cli::Command::Completions { shell }) => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "itersnap", &mut io::stdout());
            return ExitCode::SUCCESS;
        }
        Some(cli::Command::Man) => {
            return match man::write(&mut io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("itersnap: error: writing the man page: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        None => {}
    }
    let request = cli.request();
    match run::run(&request) {
        Ok(outcome) => exit_status(&request, outcome),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("itersnap: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `itersnap check`: the report, and an exit status that says whether
/// itersnap can run here at all.
/// A run's exit status, as pgrep's and lsof's: 0 when its snapshots hold a
/// match, 1 when the filters matched nothing in any of them; 3 when one
/// lost records (its answer may lack the match), unless --allow-incomplete.
fn exit_status(request: &run::Request, outcome: run::Outcome) -> ExitCode {
    if outcome.incomplete > 0 && !request.allow_incomplete {
        eprintln!(
            "itersnap: {} of {} incomplete: records were lost (see problems in the output; --allow-incomplete accepts it)",
            outcome.incomplete,
            if outcome.snapshots == 1 { "1 snapshot".to_string() } else { format!("{} snapshots", outcome.snapshots) },
        );
        return ExitCode::from(3);
    }
    if outcome.snapshots > 0 && outcome.matched == 0 {
        let filters = request.filters();
        let what = if filters.is_empty() {
            "no task".to_string()
        } else {
            format!("no process {}", filters.join(" and "))
        };
        let snapshots = match outcome.snapshots {
            1 => "the snapshot".to_string(),
            n => format!("any of {n} snapshots"),
        };
        // As pgrep warns: only a kernel thread's name is that long.
        let long = match &request.comm {
            Some(comm) if comm.len() > 15 => {
                " (a process's name is at most 15 bytes; only kernel threads have longer ones)"
            }
            _ => "",
        };
        // `itersnap chek`: a COMM a typo away from a subcommand.
        let typo = request
            .comm
            .as_deref()
            .and_then(|comm| std::str::from_utf8(comm).ok())
            .and_then(|comm| {
                ["check", "completions"]
                    .into_iter()
                    .find(|sub| comm != *sub && itersnap::text::edit_distance(comm, sub) <= 2)
            })
            .map(|sub| format!("; did you mean `itersnap {sub}`?"))
            .unwrap_or_default();
        // `itersnap /var/log/x.log`, as `lsof FILE` is used.
        let path_hint = request
            .comm
            .as_deref()
            .filter(|comm| comm.contains(&b'/'))
            .map(|comm| std::path::Path::new(std::ffi::OsStr::from_bytes(comm)))
            .filter(|path| path.exists())
            .map(|path| {
                format!(
                    "; to see who holds a file: itersnap --file {}",
                    path.display()
                )
            })
            .unwrap_or_default();
        eprintln!("itersnap: {what} in {snapshots}{long}{typo}{path_hint}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn check(cli: &Cli) -> ExitCode {
    let report = check::build();
    let mut out = io::stdout().lock();
    let written = match cli.output {
        cli::OutputFormat::Table => check::write_table(&mut out, &report),
        cli::OutputFormat::Json => check::write_json(&mut out, &report),
    };
    match written {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            eprintln!("itersnap: error: writing the report: {e}");
            ExitCode::FAILURE
        }
        _ if report.can_run => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// The hidden `bare-walk` command: one JSON line for scripts/bench.
fn bare_walk() -> ExitCode {
    let result = features::require_runnable().and_then(|()| backend::open_coded::bare_walk());
    match result {
        Ok((tasks, files, ns)) => {
            println!("{{\"tasks\":{tasks},\"files\":{files},\"walk_ns\":{ns}}}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("itersnap: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Help and version go to stdout as usual; a usage error is one line.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    // clap's message is its first paragraph (the "error:" line and hints
    // such as the possible values); the usage block after it is dropped.
    let rendered = e.render().to_string();
    let mut message = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    // clap's "did you mean": its tips come after a blank line.
    for tip in rendered
        .lines()
        .filter_map(|l| l.trim().strip_prefix("tip: "))
    {
        message = format!("{message}; {tip}");
    }
    // A second word where a COMM was given reads to clap as a subcommand.
    if e.kind() == ErrorKind::ArgumentConflict && message.contains("the subcommand '") {
        let word = message.split('\'').nth(1).unwrap_or_default().to_string();
        message = format!("one COMM at a time: '{word}' is a second one");
    }
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    eprintln!("itersnap: error: {message} (see itersnap --help)");
    ExitCode::from(2)
}

/// Output to a closed pipe (`itersnap | head`) ends quietly.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// libbpf's own messages only with --verbose: errors are reported as one line.
/// libbpf's log with --verbose: its warnings and notes, the verifier's log
/// of a program it refuses among them. Its debug level (every relocation,
/// thousands of lines) only with ITERSNAP_LIBBPF_DEBUG set: printing it
/// took longer than verifying the programs, which --verbose reports.
fn configure_libbpf_log(verbose: bool) {
    if verbose {
        let level = if std::env::var_os("ITERSNAP_LIBBPF_DEBUG").is_some() {
            libbpf_rs::PrintLevel::Debug
        } else {
            libbpf_rs::PrintLevel::Info
        };
        libbpf_rs::set_print(Some((level, |_, msg: String| eprint!("{msg}"))));
    } else {
        libbpf_rs::set_print(None);
    }
}
