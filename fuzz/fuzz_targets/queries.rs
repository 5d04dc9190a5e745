//! A server's clients are untrusted: any bytes, read as a query's body and
//! parsed as `itersnap serve` parses it, must not panic or allocate
//! without bound (the body's own length caps every argument).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = itersnap::serve::parse_untrusted_query(data);
});
