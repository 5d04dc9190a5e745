//! itersnap: snapshots of every task taken inside the kernel with BPF iterators.
//!
//! Data flows one way: arguments (cli) → kernel features (features) → backend
//! (backend) → kernel walk → records (record) → snapshot (snapshot) → output.

mod backend;
mod bpf;
mod cli;
mod features;
mod ksyms;
mod output;
mod record;
mod snapshot;

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use backend::{seq::SeqBackend, Backend, WalkOptions};
use cli::Cli;
use snapshot::{Trigger, WalkInfo};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
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
    let message = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
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
fn configure_libbpf_log(verbose: bool) {
    if verbose {
        libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Debug, |_, msg: String| {
            eprint!("{msg}")
        })));
    } else {
        libbpf_rs::set_print(None);
    }
}

fn run(cli: &Cli) -> Result<()> {
    configure_libbpf_log(cli.verbose);
    features::require_runnable()?;

    let opts = WalkOptions {
        comm: cli.comm.as_ref().map(|c| c.0.clone()),
        pid: cli.pid,
        threads: cli.threads,
        files: !cli.no_files,
        stacks: cli.stacks,
    };
    let ksyms = if cli.stacks {
        Some(ksyms::Ksyms::load()?)
    } else {
        None
    };
    let mut backend = SeqBackend::new(&opts)?;
    if cli.verbose {
        eprintln!("itersnap: backend {}", backend.name());
    }

    let printer = output::Printer {
        format: cli.output,
        threads: cli.threads,
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());

    let seq = 1;
    let walk = backend.walk(seq)?;
    let (records, decode_error) = record::decode_all(&walk.records);
    let info = WalkInfo {
        seq,
        trigger: Trigger::OneShot,
        backend: backend.name(),
        wall_time: walk.wall_time,
        ktime_ns: walk.ktime_ns,
        walk_ns: walk.walk_ns,
        dropped: walk.dropped,
    };
    let snap = snapshot::assemble(
        info,
        records,
        decode_error.map(|e| e.to_string()),
        cli.threads,
        ksyms.as_ref(),
    );
    printer
        .write(&mut out, &snap)
        .context("writing the snapshot")?;
    out.flush().context("writing the snapshot")?;
    Ok(())
}
