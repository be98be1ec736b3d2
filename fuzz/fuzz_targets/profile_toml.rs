//! Any bytes as a `--profile FILE.toml`: parse errors are fine (they become
//! one line for the user), panics and hangs are not. A profile that parses
//! is also planned (offsets, units, modes) without a kernel.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rltop::probe::profile::Profile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = Profile::parse(text) {
        let _ = p.symbols().count();
        let _ = p.plan_unchecked(None);
    }
});
