//! One home per kind of data a snapshot holds. Each kind's file says
//! everything about it on this side of the kernel boundary: its record
//! layout and decoding (mirroring `bpf/kinds/<kind>.h`, whose fill
//! function is in `bpf/kinds/<kind>.bpf.h`), what a snapshot holds of it,
//! how two snapshots' differ, its JSON and its table lines.
//!
//! Adding a kind means adding `bpf/kinds/<kind>.{h,bpf.h}` and
//! `src/kinds/<kind>.rs`, and registering it: its number in `enum rec_kind`
//! and `record::Record` (decoding), and its place in a snapshot row
//! (`snapshot::Row`), which assembly, diff and output walk field by field.
//! docs/architecture.md has the checklist.

pub mod activity;
pub mod cmdline;
pub mod event;
pub mod files;
pub mod holds;
pub mod maps;
pub mod oncpu;
pub mod process;
pub mod sockets;
pub mod stacks;
pub mod task;
pub mod ustacks;
