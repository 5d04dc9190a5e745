//! The itersnap command: parses the command line and hands over to the
//! library (src/lib.rs), turning errors into one line and an exit status.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

use itersnap::cli::{self, Cli};
use itersnap::serve::{self, Served};
use itersnap::{backend, check, features, man, output, run};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    if let Some(e) = cli.refusal() {
        return usage_error(e);
    }
    configure_libbpf_log(cli.verbose);
    match cli.command {
        Some(cli::Command::Check) => return check(&cli),
        Some(cli::Command::BareWalk) => return bare_walk(),
        Some(cli::Command::Serve {
            ref socket,
            ref socket_group,
            metrics,
            ref triggers,
            ref log,
            log_size,
        }) => {
            let opts = serve::ServeOptions {
                socket: socket.clone(),
                group: socket_group.clone(),
                metrics,
                triggers: triggers.clone(),
                log: log.clone(),
                log_size,
            };
            return match serve::serve(&opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("itersnap: error: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
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
    if let Some(code) = through_server(&cli, &request) {
        return code;
    }
    match run::run(&request) {
        Ok(outcome) => exit_status(&request, outcome),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("itersnap: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A one-shot answered by a running `itersnap serve`, when there is one
/// and the query is its kind (the same output and exit status, nothing
/// loaded here); None: the run goes on here.
fn through_server(cli: &Cli, request: &run::Request) -> Option<ExitCode> {
    let why_not = match serve::not_for_server(cli, request) {
        Some(why) => why.to_string(),
        None => {
            let path = serve::socket_path();
            let args: Vec<_> = std::env::args_os().skip(1).collect();
            match serve::query(&path, &args, output::want_color()) {
                Served::Answered(code) => return Some(ExitCode::from(code)),
                Served::No(why) => why,
            }
        }
    };
    if cli.verbose && !cli.no_server {
        eprintln!("itersnap: taken here, not by a server: {why_not}");
    }
    None
}

/// A run's exit status, with one line saying why when it is not 0.
fn exit_status(request: &run::Request, outcome: run::Outcome) -> ExitCode {
    let (code, line) = outcome.exit_status(request);
    if let Some(line) = line {
        eprintln!("itersnap: {line}");
    }
    ExitCode::from(code)
}

/// `itersnap check`: the report, and an exit status that says whether
/// itersnap can run here at all.
fn check(cli: &Cli) -> ExitCode {
    let mut report = check::build();
    let socket = serve::socket_path();
    report.server = Some(check::ServerStatus {
        socket: socket.display().to_string(),
        answer: serve::status(&socket),
    });
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
