//! Trace file format v1
