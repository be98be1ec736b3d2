//! Any bytes through the JSONL reader: every accepted line must write back
//! to a line that parses to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rltop::events::jsonl::{JsonlReader, parse_line, write_event};

fuzz_target!(|data: &[u8]| {
    for ev in JsonlReader::new(data).flatten() {
        let mut line = Vec::new();
        write_event(&mut line, &ev).unwrap();
        let text = std::str::from_utf8(&line).unwrap();
        let back = parse_line(text.trim_end_matches('\n')).unwrap();
        assert_eq!(back, ev);
    }
});
