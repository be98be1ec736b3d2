//! Placeholder: JSONL reader/writer (see design.md).
