//! Views: what people read, rendered from analysis results. Render functions
//! are pure: the same input gives the same text.

pub mod findings;
pub mod hist;
pub mod report;
pub mod timeline;
pub mod tui;
