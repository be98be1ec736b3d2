//! Live probes
