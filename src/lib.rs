//! itersnap: snapshots of every task taken inside the kernel with BPF iterators.
//!
//! Data flows one way: arguments (cli) → kernel features (features) → backend
//! (backend) → kernel walk → records (record) → snapshot (snapshot) → output.
//! The command is src/main.rs; the library exists so that the record decoder
//! and snapshot assembly can be fuzzed on their own (fuzz/).

pub mod backend;
pub mod bpf;
pub mod check;
pub mod cli;
pub mod diff;
pub mod features;
pub mod kinds;
pub mod ksyms;
pub mod man;
pub mod model;
pub mod objinfo;
pub mod output;
pub mod record;
pub mod run;
pub mod serve;
pub mod signals;
pub mod snapshot;
pub mod syscalls;
pub mod text;
pub mod wire;

/// The path kernel bytes take through user space, for the fuzzer
/// (fuzz/fuzz_targets/records.rs): decode, assemble, diff, and render as a
/// table and as JSON. Must never panic, whatever the bytes.
pub fn decode_assemble_render(bytes: &[u8]) {
    thread_local! {
        // Made once: blazesym reads kallsyms from a file.
        static KSYMS: Option<ksyms::Ksyms> = ksyms::Ksyms::from_text(
            "ffffffff81000000 T _stext\nffffffff81000100 t f\nffffffffc0000000 t m\t[m]\n",
            "m 4096 0 - Live 0xffffffffc0000000\n",
        )
        .ok();
    }
    KSYMS.with(|ksyms| render(bytes, ksyms.as_ref(), &mut std::io::sink()));
}

fn render(bytes: &[u8], ksyms: Option<&ksyms::Ksyms>, sink: &mut dyn std::io::Write) {
    use backend::RawSnapshot;

    let specs = fuzz_specs();
    let printer_table = output::Printer {
        format: output::OutputFormat::Table,
        threads: true,
        activity: false,
        tree: true,
        columns: Some(vec![
            output::Column::Start,
            output::Column::Comm,
            output::Column::State,
        ]),
        targets: Vec::new(),
        color: true,
        fold: None,
    };
    let printer_json = output::Printer {
        format: output::OutputFormat::Json,
        threads: false,
        activity: false,
        tree: false,
        columns: None,
        targets: Vec::new(),
        color: false,
        fold: None,
    };
    // A tracefs record's fields: a pid and a name.
    let event_names = kinds::event::Names {
        args: Vec::new(),
        fields: kinds::event::parse_format(
            "\tfield:int pid;\toffset:0;\tsize:4;\tsigned:1;\n\
             \tfield:char comm[8];\toffset:4;\tsize:8;\tsigned:0;\n",
        ),
    };
    let mut previous = None;
    for (i, spec) in specs.iter().enumerate() {
        let (records, error) = record::decode_all(bytes);
        let begin = records.iter().find_map(|r| match r {
            record::Record::Begin(b) => Some(b.clone()),
            _ => None,
        });
        let end = records.iter().find_map(|r| match r {
            record::Record::End(e) => Some(e.clone()),
            _ => None,
        });
        let raw = RawSnapshot {
            seq: i as u32 + 1,
            begin,
            end,
            records,
            decode_error: error.map(|e| e.to_string()),
            ktime_ns: u64::MAX - 5,
            ..RawSnapshot::default()
        };
        let ctx = snapshot::Context {
            backend: "open-coded",
            spec,
            per_thread: i % 2 == 0,
            files: true,
            ksyms,
            wall_offset_ns: u64::MAX / 2,
            event_budget_ns: 1_000_000,
            socket_filter: i == 2,
            targets: &[],
            states: 0,
            stacks: true,
            thread_names: &[],
            boot_wall_ns: u64::MAX / 2 - 1_000_000_000,
            mem_total_kib: 1 << 20,
            reader_netns: 4026531840,
            cmdlines: true,
            maps: i % 2 == 1,
            user_names: false,
            usyms: None,
            event_names: &event_names,
        };
        let snap = snapshot::assemble(raw, &ctx, (1, 2, 3));
        let _ = printer_table.write(sink, &snap);
        let _ = printer_json.write(sink, &snap);
        if let Some(prev) = &previous {
            let d = diff::diff(prev, &snap, diff::SortKey::Cpu);
            let _ = printer_table.write_diff(sink, &snap, &d);
            let _ = printer_json.write_diff(sink, &snap, &d);
        }
        previous = Some(snap);
    }
}

/// The triggers the fuzzed bytes are rendered as: the same bytes as a
/// one-shot and as the open-coded stream of a trigger.
fn fuzz_specs() -> [backend::TriggerSpec; 4] {
    use backend::TriggerSpec;
    use std::time::Duration;
    [
        TriggerSpec::OneShot,
        TriggerSpec::Signal {
            signal: 10,
            target_pid: None,
            target_comm: None,
        },
        TriggerSpec::Interval {
            period: Duration::from_millis(100),
        },
        // The event's arguments by a signature: paths, argv, an address.
        TriggerSpec::Syscall {
            name: "execve".into(),
            nr: 59,
        },
    ]
}

/// A small deterministic random source (xorshift64) for the tests that
/// throw arbitrary bytes at the decoder.
#[cfg(test)]
pub(crate) fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

#[cfg(test)]
mod tests {
    /// The fuzz seeds rendered by the fuzzer's path (table, tree, JSON,
    /// diffs) read exactly as tests/golden/ holds them: refactors keep
    /// what users see. `ITERSNAP_BLESS=1 cargo test --lib` rewrites them
    /// after an intended change; review the diff.
    #[test]
    fn seed_renderings_are_stable() {
        // Start times are local: the goldens are UTC's (CI's, the VMs').
        if super::text::local_time(0).is_none_or(|t| t.hour != 0 || t.year != 1970) {
            eprintln!("seed_renderings_are_stable: skipped, the local time zone is not UTC");
            return;
        }
        let root = env!("CARGO_MANIFEST_DIR");
        let ksyms = super::ksyms::Ksyms::from_text(
            "ffffffff81000000 T _stext\nffffffff81000100 t f\nffffffffc0000000 t m\t[m]\n",
            "m 4096 0 - Live 0xffffffffc0000000\n",
        )
        .unwrap();
        for name in ["open-coded-snapshot", "seq-snapshot", "lost-end"] {
            let bytes = std::fs::read(format!("{root}/fuzz/seeds/records/{name}")).unwrap();
            let mut out = Vec::new();
            super::render(&bytes, Some(&ksyms), &mut out);
            let golden = format!("{root}/tests/golden/render-{name}.txt");
            if std::env::var_os("ITERSNAP_BLESS").is_some() {
                std::fs::write(&golden, &out).unwrap();
            }
            let want = std::fs::read(&golden).unwrap_or_default();
            assert!(
                out == want,
                "{name}: rendering differs from {golden} (ITERSNAP_BLESS=1 rewrites it)"
            );
        }
    }

    /// A quick, always-on stand-in for the fuzzer: random and mutated
    /// record streams through the whole user-space path.
    #[test]
    fn random_streams_never_panic() {
        let mut next = super::xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3_000 {
            let len = (next() % 1_200) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Plausible headers at 8-byte steps so that decoding goes deep.
            let mut at = 0;
            while at + 8 <= buf.len() {
                buf[at] = (1 + next() % 5) as u8;
                buf[at + 1] = 0;
                let size = (((next() % 160) + 8) & !7) as u16;
                buf[at + 2..at + 4].copy_from_slice(&size.to_ne_bytes());
                at += size as usize;
            }
            super::decode_assemble_render(&buf);
        }
    }
}
