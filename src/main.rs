//! The itersnap command: parses the command line and hands over to the
//! library (src/lib.rs), turning errors into one line and an exit status.

use std::io::{self, Write};
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
    for (given, most, what) in [
        (cli.comm.len(), backend::COMMS_MAX, "COMMs are"),
        (cli.pid.len(), backend::PIDS_MAX, "pids are"),
        (cli.user.len(), backend::UIDS_MAX, "users are"),
    ] {
        if given > most {
            return usage_error(clap::Error::raw(
                clap::error::ErrorKind::TooManyValues,
                format!("{given} {what} given, at most {most} are matched in the kernel"),
            ));
        }
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
            return match io::stdout().write_all(cli::completion_script(shell).as_bytes()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("itersnap: error: writing the completion script: {e}");
                    ExitCode::FAILURE
                }
            };
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

/// A run's exit status (docs/usage.md, "Errors and exit status"): 3 when a
/// snapshot lost records, unless --allow-incomplete; 1 when the filters
/// matched nothing, with one line saying so; else 0.
fn exit_status(request: &run::Request, outcome: run::Outcome) -> ExitCode {
    if let Some(line) = outcome.incomplete_line(request) {
        eprintln!("itersnap: {line}");
        return ExitCode::from(3);
    }
    if let Some(line) = outcome.no_match_line(request) {
        eprintln!("itersnap: {line}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// `itersnap check`: the report, and an exit status that says whether
/// itersnap can run here at all.
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
