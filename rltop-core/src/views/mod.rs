//! Views: what people read, rendered from analysis results. Render functions
//! are pure: the same input gives the same text.

pub mod counts;
pub mod findings;
pub mod hist;
pub mod metrics;
pub mod report;
pub mod scope;
pub mod timeline;
pub mod tui;
pub mod whatif;
pub mod xfstests;
