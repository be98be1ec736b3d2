//! Whether a range-lock profile fits the kernel's lock: its first requests
//! must be ranges of a file.
//!
//! A profile names the lock struct's members and their offsets. Where BTF
//! cannot check them (a module without BTF, or hand-set offsets), a profile
//! written for another flavour (Kara's and Lustre's share their symbols)
//! reads the wrong words: ranges like `[18403874199186194105, 0]`. Every
//! finding built on them would be false. So the first [`SAMPLE`] requests
//! are judged ([`valid_range`]); if one of them is no range of a file, the
//! profile is stopped: its events are dropped from then on, and rltop says
//! so. Past the sample, a bad range is a caller's and goes into the trace
//! (the model sets it aside, and `check` warns).

use crate::events::{Body, Event};
use crate::model::valid_range;

/// How many requests decide.
pub const SAMPLE: u32 = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Judging { seen: u32 },
    Fits,
    Unfit,
}

/// The judgement of one profile over the events it produced.
#[derive(Debug)]
pub struct Fit {
    profile: String,
    state: State,
    /// Why the profile was stopped, once it was.
    pub unfit: Option<String>,
    /// Range-lock events dropped since.
    pub dropped: u64,
}

impl Fit {
    pub fn new(profile: &str) -> Fit {
        Fit {
            profile: profile.to_string(),
            state: State::Judging { seen: 0 },
            unfit: None,
            dropped: 0,
        }
    }

    /// Whether `ev` goes into the trace. Returns the reason the first time
    /// the profile is found not to fit (for a loud message).
    pub fn keep(&mut self, ev: &Event) -> (bool, Option<&str>) {
        let ranged = ev.body.range_lock().is_some()
            || matches!(ev.body, Body::Tree { .. } | Body::RlTreeInit { .. });
        if !ranged {
            return (true, None);
        }
        match self.state {
            State::Unfit => {
                self.dropped += 1;
                (false, None)
            }
            State::Fits => (true, None),
            State::Judging { seen } => {
                let Body::RlRequest {
                    tree,
                    lock,
                    start,
                    last,
                    ..
                } = ev.body
                else {
                    return (true, None);
                };
                if tree != 0 && lock != 0 && valid_range(start, last) {
                    self.state = if seen + 1 >= SAMPLE {
                        State::Fits
                    } else {
                        State::Judging { seen: seen + 1 }
                    };
                    return (true, None);
                }
                self.state = State::Unfit;
                self.dropped += 1;
                let what = if tree == 0 || lock == 0 {
                    format!("tree {tree:#x}, lock {lock:#x} (a null pointer argument)")
                } else {
                    format!("range [{start}, {last}] (not a range of a file)")
                };
                self.unfit = Some(format!(
                    "profile {} does not fit this kernel's lock: request {} of task {} read {what}; \
                     its offsets or unit are wrong for this lock struct (another flavour with the \
                     same symbols?). Its range-lock events are dropped from here on; choose another \
                     --profile, or give the offsets in a profile file",
                    self.profile,
                    seen + 1,
                    ev.tid
                ));
                (false, self.unfit.as_deref())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Mode;

    fn request(tid: u32, start: u64, last: u64) -> Event {
        Event {
            ts: 1,
            cpu: None,
            pid: tid,
            tid,
            body: Body::RlRequest {
                tree: 0x10,
                lock: 0x20 + u64::from(tid),
                start,
                last,
                mode: Mode::Excl,
            },
        }
    }

    fn release(tid: u32) -> Event {
        Event {
            body: Body::RlRelease {
                tree: 0x10,
                lock: 0x20 + u64::from(tid),
            },
            ..request(tid, 0, 0)
        }
    }

    /// Lustre's ranges read at Kara's offsets: the first request is
    /// refused, and every range-lock event after it is dropped.
    #[test]
    fn a_profile_whose_first_range_is_no_range_is_stopped() {
        let mut f = Fit::new("kara2013");
        let (kept, why) = f.keep(&request(1, 18_403_874_199_186_194_105, 0));
        assert!(!kept);
        let why = why.unwrap().to_string();
        assert!(why.contains("profile kara2013 does not fit"), "{why}");
        assert!(why.contains("[18403874199186194105, 0]"), "{why}");
        assert_eq!(f.keep(&release(1)), (false, None));
        assert_eq!(f.keep(&request(2, 0, 9)), (false, None));
        assert_eq!(f.dropped, 3);
        // Other events pass.
        let marker = Event {
            body: Body::Marker { text: "x".into() },
            ..release(1)
        };
        assert!(f.keep(&marker).0);
    }

    /// Ranges that fit, "to the end" included: the profile stays, and a
    /// bad range after the sample is the caller's (kept for the model).
    #[test]
    fn a_profile_whose_first_ranges_fit_stays() {
        let mut f = Fit::new("lustre");
        for i in 0..SAMPLE {
            assert_eq!(f.keep(&request(i, 0, u64::MAX)), (true, None));
        }
        assert_eq!(f.keep(&request(99, 9, 1)), (true, None));
        assert!(f.unfit.is_none());
        // A page index past any file: refused while judging.
        let mut g = Fit::new("lustre");
        assert!(!g.keep(&request(1, 0xffff_8880_0000_0000, u64::MAX)).0);
    }
}
