//! Command line: clap definitions and validation of every value a user types.

use clap::{Parser, ValueEnum};

pub const EXAMPLES: &str = "\
Examples:
  sudo itersnap                      every process, its open files
  sudo itersnap bash                 only processes named exactly `bash`
  sudo itersnap --pid 1234 --threads one process, a row per thread
  sudo itersnap --stacks --no-files  kernel stacks of every process
  sudo itersnap -o json | jq .       JSON Lines, one object per snapshot";

/// Snapshots of every task (identity, state, open files, kernel stack),
/// taken inside the kernel with BPF iterators.
#[derive(Debug, Parser)]
#[command(name = "itersnap", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Only processes whose name is exactly COMM (like `pgrep -x`), at most 15 bytes
    #[arg(value_parser = parse_comm)]
    pub comm: Option<Comm>,

    /// Only the process with this PID (thread-group id)
    #[arg(short, long, value_parser = parse_pid, allow_hyphen_values = true)]
    pub pid: Option<u32>,

    /// One row per thread instead of per process (like `ps -L`)
    #[arg(short = 'L', long)]
    pub threads: bool,

    /// Do not list open files
    #[arg(long)]
    pub no_files: bool,

    /// Show each task's kernel stack, symbolized
    #[arg(short = 'k', long)]
    pub stacks: bool,

    /// Output format
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Show libbpf's log (verifier output) and backend choices on stderr
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A readable table per snapshot
    Table,
    /// JSON Lines: one object per snapshot
    Json,
}

/// A task name as the kernel stores it (a newtype so clap sees one value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comm(pub Vec<u8>);

/// Task names (comm) are at most 15 bytes: the kernel keeps 16 with the NUL.
pub fn parse_comm(s: &str) -> Result<Comm, String> {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err("COMM must not be empty".into());
    }
    if bytes.len() > 15 {
        return Err(format!(
            "COMM is {} bytes long, but task names are at most 15 bytes (the kernel truncates longer names)",
            bytes.len()
        ));
    }
    Ok(Comm(bytes.to_vec()))
}

pub fn parse_pid(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(0) => Err("PID must be a positive number (0 is not a process)".into()),
        Ok(pid) if pid <= i32::MAX as u32 => Ok(pid),
        _ => Err("PID must be a positive number".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_limits() {
        assert_eq!(parse_comm("bash").unwrap().0, b"bash");
        assert!(parse_comm("exactly15bytes!").is_ok());
        assert!(parse_comm("sixteen-bytes-xx").is_err());
        assert!(parse_comm("").is_err());
    }

    #[test]
    fn pid_limits() {
        assert_eq!(parse_pid("42"), Ok(42));
        for bad in ["0", "-1", "x", "99999999999", "2147483648"] {
            assert!(parse_pid(bad).is_err(), "{bad}");
        }
    }
}
