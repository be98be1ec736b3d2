//! Any bytes through the trace reader: errors and problems are fine, panics
//! and hangs are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rltop::trace::{Item, TraceReader};

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = TraceReader::from_bytes(data) else {
        return;
    };
    for item in reader {
        match item {
            Ok(Item::Event(ev)) => {
                // Whatever decodes must also be printable.
                let mut line = Vec::new();
                rltop::events::jsonl::write_event(&mut line, &ev).unwrap();
            }
            Ok(Item::Problem(p)) => assert!(!p.message.is_empty()),
            Err(_) => break,
        }
    }
});
