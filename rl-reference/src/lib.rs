//! Reference range locks (issue 3).
