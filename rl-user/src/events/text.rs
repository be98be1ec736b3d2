//! Placeholder: one-line text form of events.
