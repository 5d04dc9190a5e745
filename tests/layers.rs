//! The layers of src/ only look down: every `crate::` reference goes to a
//! module of the same layer or a lower one, and no modules reference each
//! other in a circle. A new module must be given its layer here, where
//! docs/architecture.md draws the same picture.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::rust_files;

/// Top to bottom; a module may use its own layer and those below.
const LAYERS: &[&[&str]] = &[
    &["serve"],
    &["cli", "man"],
    &["run", "check"],
    &["backend", "diff", "output"],
    &["snapshot"],
    &["model", "features", "signals", "syscalls"],
    &["record"],
    &["kinds"],
    &["ksyms", "objinfo", "wire"],
    &["bpf", "text"],
];

/// The crate root's own files: above every layer.
const ROOT: &[&str] = &["lib", "main"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The top-level module a file under src/ belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The top-level modules a file names as `crate::x`, `$crate::x` or
/// `crate::{x, y::z}`.
fn references(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(found) = text[at..].find("crate::") {
        let start = at + found;
        let before = start.checked_sub(1).map(|i| bytes[i]);
        at = start + "crate::".len();
        // `$crate::` counts; `foo_crate::` does not.
        if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        let rest = &text[at..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out
}

/// module → the modules it references.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let refs: Vec<String> = references(&text)
            .into_iter()
            // Items of the crate root (test helpers) are not modules.
            .filter(|r| *r != module && modules.contains(r))
            .collect();
        graph.entry(module).or_default().extend(refs);
    }
    graph
}

#[test]
fn every_module_has_a_layer() {
    for module in module_graph().keys() {
        assert!(
            ROOT.contains(&module.as_str()) || layer_of(module).is_some(),
            "src/{module}: give it a layer in tests/layers.rs (and docs/architecture.md)"
        );
    }
}

#[test]
fn layers_only_look_down() {
    let mut upward = Vec::new();
    for (module, refs) in module_graph() {
        let Some(mine) = layer_of(&module) else {
            continue; // the crate root, or reported by every_module_has_a_layer
        };
        for r in refs {
            if layer_of(&r).is_some_and(|theirs| theirs < mine) || ROOT.contains(&r.as_str()) {
                upward.push(format!("{module} -> {r}"));
            }
        }
    }
    assert!(upward.is_empty(), "references up the layers: {upward:?}");
}

#[test]
fn no_import_cycles() {
    let graph = module_graph();
    // Depth-first search; a module met again on the current path closes a cycle.
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut cycle = path[at..].to_vec();
            cycle.push(module.to_string());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_string());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(module.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            panic!("an import cycle: {}", cycle.join(" -> "));
        }
    }
}

/// The checker itself sees each way of naming a module.
#[test]
fn references_are_found_in_every_form() {
    let text = "use crate::a::B;\nuse crate::{c, d::E};\n$crate::f::g!();\nmy_crate::h;";
    let found: Vec<String> = references(text).into_iter().collect();
    assert_eq!(found, ["a", "c", "d", "f"]);
}

/// No function in src/ runs over 100 lines: past that, a function does
/// several things that want names of their own.
#[test]
fn no_function_over_100_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut long = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let body = line.trim_start();
            let indent = &line[..line.len() - body.len()];
            let is_fn = [
                "fn ",
                "pub fn ",
                "pub(crate) fn ",
                "unsafe fn ",
                "pub unsafe fn ",
            ]
            .iter()
            .any(|p| body.starts_with(p));
            if !is_fn || body.ends_with(';') {
                continue;
            }
            // rustfmt closes a function at its own indentation.
            let close = format!("{indent}}}");
            if let Some(end) = lines[i + 1..].iter().position(|l| *l == close) {
                if end + 2 > 100 {
                    long.push(format!("{}:{} ({} lines)", file.display(), i + 1, end + 2));
                }
            }
        }
    }
    assert!(long.is_empty(), "functions over 100 lines: {long:?}");
}

/// docs/architecture.md draws the same layers, in the same order: its
/// picture's left column, a layer per line (a continuation line starts
/// with spaces).
#[test]
fn the_architecture_doc_draws_these_layers() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md"))
            .unwrap();
    let picture = doc
        .split("## Layers")
        .nth(1)
        .and_then(|s| s.split("```").nth(1))
        .expect("a ``` picture under ## Layers");
    let mut drawn: Vec<Vec<String>> = Vec::new();
    for line in picture.lines().filter(|l| !l.trim().is_empty()) {
        // The left column ends at the first run of two spaces after text.
        let body = line.trim_start();
        let left = body.split("  ").next().unwrap_or("").trim();
        let names = left
            .split(',')
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty());
        if !line.starts_with(' ') {
            drawn.push(names.collect());
        } else if line.len() - body.len() <= 2 {
            if let Some(layer) = drawn.last_mut() {
                layer.extend(names);
            }
        }
    }
    let want: Vec<Vec<String>> = LAYERS
        .iter()
        .map(|l| l.iter().map(|s| s.to_string()).collect())
        .collect();
    assert_eq!(
        drawn, want,
        "docs/architecture.md's picture differs from LAYERS"
    );
}

/// The BPF side's layers, top to bottom (bpf/base.bpf.h draws the same
/// picture): a file includes only files of lower layers, or kinds of its
/// own layer (a kind may build on another: proc on file).
const BPF_LAYERS: &[&[&str]] = &[
    &["opencoded.bpf.c", "seqiter.bpf.c"],
    &["trigger.bpf.h", "complete.bpf.h"],
    &["walk.bpf.h"],
    &["select.bpf.h"],
    &["kinds/*.bpf.h"],
    &["base.bpf.h"],
    &["itersnap.h", "kinds/*.h", "vmlinux.h"],
];

fn bpf_layer_of(file: &str) -> Option<usize> {
    let pattern = if file.starts_with("kinds/") && file.ends_with(".bpf.h") {
        "kinds/*.bpf.h"
    } else if file.starts_with("kinds/") && file.ends_with(".h") {
        "kinds/*.h"
    } else {
        file
    };
    BPF_LAYERS.iter().position(|l| l.contains(&pattern))
}

/// (file, what it includes with `#include "..."`) for every file in bpf/,
/// names relative to bpf/ (as `-Ibpf` resolves them).
fn bpf_includes() -> Vec<(String, Vec<String>)> {
    let bpf = Path::new(env!("CARGO_MANIFEST_DIR")).join("bpf");
    let mut out = Vec::new();
    for dir in [bpf.clone(), bpf.join("kinds")] {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = path
                .strip_prefix(&bpf)
                .unwrap()
                .to_string_lossy()
                .to_string();
            if !(name.ends_with(".h") || name.ends_with(".c")) || name == "vmlinux.h" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let includes = text
                .lines()
                .filter_map(|l| l.trim().strip_prefix("#include \""))
                .filter_map(|l| l.split('"').next())
                .map(str::to_string)
                .collect();
            out.push((name, includes));
        }
    }
    out
}

#[test]
fn bpf_includes_only_look_down() {
    let files = bpf_includes();
    assert!(files.iter().any(|(f, _)| f == "base.bpf.h"), "{files:?}");
    for (file, includes) in &files {
        let Some(mine) = bpf_layer_of(file) else {
            panic!("bpf/{file} has no layer in BPF_LAYERS (tests/layers.rs)");
        };
        for inc in includes {
            let theirs = bpf_layer_of(inc)
                .unwrap_or_else(|| panic!("bpf/{file} includes {inc}, which has no layer"));
            // Kinds build on kinds, layouts come with layouts.
            let same_kind =
                mine == theirs && BPF_LAYERS[mine].iter().any(|f| f.starts_with("kinds/"));
            assert!(
                theirs > mine || same_kind,
                "bpf/{file} includes {inc}, which is not below it"
            );
        }
    }
    // Kinds that build on kinds do not go round in a circle.
    let graph: BTreeMap<&str, Vec<&str>> = files
        .iter()
        .map(|(f, inc)| (f.as_str(), inc.iter().map(String::as_str).collect()))
        .collect();
    fn reaches(graph: &BTreeMap<&str, Vec<&str>>, from: &str, to: &str, depth: usize) -> bool {
        depth < 16
            && graph.get(from).is_some_and(|next| {
                next.iter()
                    .any(|n| *n == to || reaches(graph, n, to, depth + 1))
            })
    }
    for file in graph.keys() {
        assert!(
            !reaches(&graph, file, file, 0),
            "bpf/{file} includes itself"
        );
    }
}
