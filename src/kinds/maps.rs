//! Mapped files (--maps): the files a process maps, as lsof's `mem` and
//! `DEL` entries and `/proc/PID/maps`'s file column show them. Each is a
//! file record at fd FD_MEM (`bpf/kinds/file.h`), from the task_vma
//! iterator through `bpf/kinds/map.bpf.h`, which records a file once per
//! run of consecutive mappings; here each file is kept once, in address
//! order of its first mapping.

use serde::{Serialize, Serializer};

use crate::kinds::files::FileEntry;

/// One entry per mapped file: of the mappings of one file (same device,
/// inode and name) the first stays.
pub fn by_file(maps: &mut Vec<FileEntry>) {
    let mut seen = std::collections::HashSet::new();
    maps.retain(|m| seen.insert((m.dev, m.ino, m.desc.clone())));
}

/// The `maps` list of JSON, serialized straight from the snapshot.
pub struct MapsJson<'a>(pub &'a [FileEntry]);

#[derive(Serialize)]
struct MapJson<'a> {
    path: std::borrow::Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_base64: Option<String>,
    /// "major:minor", as files' `dev`.
    dev: String,
    ino: u64,
    deleted: bool,
}

impl Serialize for MapsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|m| MapJson {
            path: String::from_utf8_lossy(&m.desc),
            path_base64: crate::text::base64_if_not_utf8(&m.desc),
            dev: format!("{}:{}", m.dev >> 20, m.dev & 0xfffff),
            ino: m.ino,
            deleted: m.deleted,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(desc: &str, ino: u64) -> FileEntry {
        FileEntry {
            fd: -4,
            desc: desc.as_bytes().to_vec(),
            kind: "REG",
            f_flags: 0,
            f_mode: 0,
            i_mode: 0o100644,
            dev: 8 << 20 | 1,
            ino,
            pos: 0,
            size: 0,
            truncated: false,
            deleted: desc.ends_with(" (deleted)"),
            socket: None,
        }
    }

    #[test]
    fn each_file_once_in_first_mapping_order() {
        let mut m = vec![
            map("/lib/b.so", 2),
            map("/lib/a.so", 1),
            map("/lib/b.so", 2),
        ];
        by_file(&mut m);
        let names: Vec<_> = m
            .iter()
            .map(|m| String::from_utf8_lossy(&m.desc).into_owned())
            .collect();
        assert_eq!(names, ["/lib/b.so", "/lib/a.so"]);
        let json = serde_json::to_value(MapsJson(&[map("/x (deleted)", 9)])).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"path": "/x (deleted)", "dev": "8:1", "ino": 9, "deleted": true}])
        );
    }
}
