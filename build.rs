//! Compiles every BPF object in `bpf/` and generates its libbpf-rs skeleton.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

/// (source, skeleton module name). Each object is loaded on its own, so an old
/// kernel never has to load programs it cannot verify.
const OBJECTS: &[(&str, &str)] = &[
    ("bpf/seqiter.bpf.c", "seqiter"),
    ("bpf/opencoded.bpf.c", "opencoded"),
];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    for (src, name) in OBJECTS {
        let skel = out.join(format!("{name}.skel.rs"));
        // The object is also kept for `itersnap check`, which reads the
        // helpers, kfuncs and program types it uses (src/objinfo.rs).
        SkeletonBuilder::new()
            .source(src)
            .obj(out.join(format!("{name}.bpf.o")))
            .clang_args(["-Wall", "-Wno-unused-function", "-Ibpf"])
            .build_and_generate(&skel)
            .unwrap_or_else(|e| panic!("building {src}: {e:#}"));
        println!("cargo:rerun-if-changed={src}");
    }
    // The whole directory, scanned recursively by cargo: every header the
    // objects include, bpf/kinds/ too, without a list to keep up to date.
    println!("cargo:rerun-if-changed=bpf");
}
