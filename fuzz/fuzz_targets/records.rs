//! Kernel bytes are untrusted input: any byte string, decoded as a record
//! stream, assembled into snapshots, diffed and rendered, must not panic or
//! allocate without bound (a record's own length fields cap every buffer).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    itersnap::decode_assemble_render(data);
});
