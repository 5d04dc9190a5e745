//! Generated BPF skeletons (see build.rs).

#[allow(
    clippy::all,
    dead_code,
    non_camel_case_types,
    non_snake_case,
    unused_imports
)]
pub mod seqiter {
    include!(concat!(env!("OUT_DIR"), "/seqiter.skel.rs"));
}

#[allow(
    clippy::all,
    dead_code,
    non_camel_case_types,
    non_snake_case,
    unused_imports
)]
pub mod opencoded {
    include!(concat!(env!("OUT_DIR"), "/opencoded.skel.rs"));
}
