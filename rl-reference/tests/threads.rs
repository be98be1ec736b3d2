//! Every lock against its state machine, under real threads (and tokio
//! tasks): a controller drives worker threads one operation at a time and
//! checks that exactly the requests the state machine grants wake up, and
//! nothing else.

// A test (or benchmark) stops at the first thing that is not as it must be.
#![allow(clippy::unwrap_used)]

use std::sync::mpsc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rl_reference::{
    Flavour, Mode, Outcome, RangeGuard, RangeLock, ReadGuard, RwRangeLock, StateMachine, WriteGuard,
};

const WORKERS: usize = 5;
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug)]
enum Cmd {
    Lock {
        start: u64,
        last: u64,
        mode: Mode,
    },
    TryLock {
        start: u64,
        last: u64,
        mode: Mode,
    },
    Unlock,
    Downgrade,
    /// Drop the pending future (async workers only).
    Cancel,
    Exit,
}

#[derive(Debug, PartialEq, Eq)]
enum Event {
    Acquired(usize),
    TryFailed(usize),
    Done(usize),
}

enum AnyLock {
    Excl(RangeLock),
    Rw(RwRangeLock),
}

#[allow(dead_code)] // held for their Drop
enum Guard<'a> {
    Excl(RangeGuard<'a>),
    Read(ReadGuard<'a>),
    Write(WriteGuard<'a>),
}

impl AnyLock {
    fn lock(&self, start: u64, last: u64, mode: Mode) -> Guard<'_> {
        match (self, mode) {
            (AnyLock::Excl(l), _) => Guard::Excl(l.lock(start..=last)),
            (AnyLock::Rw(l), Mode::Read) => Guard::Read(l.read(start..=last)),
            (AnyLock::Rw(l), Mode::Write) => Guard::Write(l.write(start..=last)),
        }
    }

    fn try_lock(&self, start: u64, last: u64, mode: Mode) -> Option<Guard<'_>> {
        match (self, mode) {
            (AnyLock::Excl(l), _) => l.try_lock(start..=last).map(Guard::Excl),
            (AnyLock::Rw(l), Mode::Read) => l.try_read(start..=last).map(Guard::Read),
            (AnyLock::Rw(l), Mode::Write) => l.try_write(start..=last).map(Guard::Write),
        }
    }

    async fn lock_async(&self, start: u64, last: u64, mode: Mode) -> Guard<'_> {
        match (self, mode) {
            (AnyLock::Excl(l), _) => Guard::Excl(l.lock_async(start..=last).await),
            (AnyLock::Rw(l), Mode::Read) => Guard::Read(l.read_async(start..=last).await),
            (AnyLock::Rw(l), Mode::Write) => Guard::Write(l.write_async(start..=last).await),
        }
    }

    fn counts(&self) -> (usize, usize) {
        match self {
            AnyLock::Excl(l) => (l.len(), l.waiting()),
            AnyLock::Rw(l) => (l.len(), l.waiting()),
        }
    }
}

fn downgrade(g: Guard<'_>) -> Guard<'_> {
    match g {
        Guard::Write(w) => Guard::Read(w.downgrade()),
        g => panic!(
            "downgrade of a non-writer guard: {}",
            matches!(g, Guard::Excl(_))
        ),
    }
}

fn blocking_worker(me: usize, lock: &AnyLock, rx: mpsc::Receiver<Cmd>, tx: mpsc::Sender<Event>) {
    let mut held = None;
    for cmd in rx {
        match cmd {
            Cmd::Lock { start, last, mode } => {
                held = Some(lock.lock(start, last, mode));
                tx.send(Event::Acquired(me)).unwrap();
            }
            Cmd::TryLock { start, last, mode } => match lock.try_lock(start, last, mode) {
                Some(g) => {
                    held = Some(g);
                    tx.send(Event::Acquired(me)).unwrap();
                }
                None => tx.send(Event::TryFailed(me)).unwrap(),
            },
            Cmd::Unlock => {
                drop(held.take().expect("unlock without a guard"));
                tx.send(Event::Done(me)).unwrap();
            }
            Cmd::Downgrade => {
                held = Some(downgrade(held.take().expect("downgrade without a guard")));
                tx.send(Event::Done(me)).unwrap();
            }
            Cmd::Cancel => unreachable!("blocking workers cannot cancel"),
            Cmd::Exit => break,
        }
    }
}

fn async_worker(me: usize, lock: &AnyLock, rx: mpsc::Receiver<Cmd>, tx: mpsc::Sender<Event>) {
    // Commands arrive on a std channel; forward them into the runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (atx, mut arx) = tokio::sync::mpsc::unbounded_channel();
    let fwd = std::thread::spawn(move || {
        for cmd in rx {
            if atx.send(cmd).is_err() {
                break;
            }
        }
    });
    rt.block_on(async {
        let mut held = None;
        while let Some(cmd) = arx.recv().await {
            match cmd {
                Cmd::Lock { start, last, mode } => {
                    tokio::select! {
                        g = lock.lock_async(start, last, mode) => {
                            held = Some(g);
                            tx.send(Event::Acquired(me)).unwrap();
                        }
                        cmd = arx.recv() => {
                            assert!(matches!(cmd, Some(Cmd::Cancel)), "only Cancel while waiting: {cmd:?}");
                            tx.send(Event::Done(me)).unwrap();
                        }
                    }
                }
                Cmd::TryLock { start, last, mode } => match lock.try_lock(start, last, mode) {
                    Some(g) => {
                        held = Some(g);
                        tx.send(Event::Acquired(me)).unwrap();
                    }
                    None => tx.send(Event::TryFailed(me)).unwrap(),
                },
                Cmd::Unlock => {
                    drop(held.take().expect("unlock without a guard"));
                    tx.send(Event::Done(me)).unwrap();
                }
                Cmd::Downgrade => {
                    held = Some(downgrade(held.take().expect("downgrade without a guard")));
                    tx.send(Event::Done(me)).unwrap();
                }
                Cmd::Cancel => unreachable!("cancel while not waiting"),
                Cmd::Exit => break,
            }
        }
    });
    fwd.join().unwrap();
}

#[derive(Clone, Debug)]
enum Op {
    Lock {
        w: usize,
        start: u64,
        len: u64,
        write: bool,
        try_: bool,
    },
    Unlock(usize),
    Downgrade(usize),
    Cancel(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..WORKERS, 0..24u64, 0..6u64, any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(w, start, len, write, try_)| Op::Lock { w, start, len, write, try_ }),
        3 => (0..WORKERS).prop_map(Op::Unlock),
        1 => (0..WORKERS).prop_map(Op::Downgrade),
        1 => (0..WORKERS).prop_map(Op::Cancel),
    ]
}

struct Controller<'a, F: Flavour> {
    lock: &'a AnyLock,
    sm: StateMachine<F>,
    cmds: Vec<mpsc::Sender<Cmd>>,
    events: mpsc::Receiver<Event>,
}

impl<F: Flavour> Controller<'_, F> {
    fn expect(&self, want: Event) {
        let got = self
            .events
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("timed out waiting for {want:?}"));
        assert_eq!(got, want);
    }

    /// Wait for `w`'s `Done` and exactly the `granted` workers' grants (in
    /// any order: the woken may report first), then check that the lock
    /// agrees with the state machine (so nobody else was granted).
    fn expect_done_and_grants(&self, w: usize, granted: &[u64]) {
        let mut want: Vec<Event> = granted
            .iter()
            .map(|&g| Event::Acquired(g as usize))
            .collect();
        want.push(Event::Done(w));
        while !want.is_empty() {
            match self.events.recv_timeout(TIMEOUT) {
                Ok(e) if want.contains(&e) => want.retain(|x| *x != e),
                other => panic!("expected {want:?}, got {other:?} (lost wake-up or wrong grant)"),
            }
        }
        self.settle();
    }

    /// Wait until the lock's queue matches the state machine's (a blocking
    /// request gets queued asynchronously by its worker).
    fn settle(&self) {
        let want = (self.sm.len(), self.sm.waiting_len());
        let t = Instant::now();
        while self.lock.counts() != want {
            assert!(
                t.elapsed() < TIMEOUT,
                "lock {:?} != state machine {want:?}",
                self.lock.counts()
            );
            std::thread::sleep(Duration::from_micros(20));
        }
        assert!(self.events.try_recv().is_err(), "unexpected event");
    }

    fn step(&mut self, op: &Op, can_cancel: bool) {
        let state = |w: usize| self.sm.state(w as u64);
        match *op {
            Op::Lock {
                w,
                start,
                len,
                write,
                try_,
            } => {
                if state(w).is_some() {
                    return;
                }
                let mode = if write || !F::SHARED {
                    Mode::Write
                } else {
                    Mode::Read
                };
                let last = start + len;
                if try_ {
                    let ok = self.sm.try_request(w as u64, start, last, mode).unwrap();
                    self.cmds[w]
                        .send(Cmd::TryLock { start, last, mode })
                        .unwrap();
                    self.expect(if ok {
                        Event::Acquired(w)
                    } else {
                        Event::TryFailed(w)
                    });
                } else {
                    let out = self.sm.request(w as u64, start, last, mode).unwrap();
                    self.cmds[w].send(Cmd::Lock { start, last, mode }).unwrap();
                    if out == Outcome::Granted {
                        self.expect(Event::Acquired(w));
                    }
                }
                self.settle();
            }
            Op::Unlock(w) => {
                if state(w) != Some(rl_reference::State::Held) {
                    return;
                }
                let granted = self.sm.release(w as u64).unwrap();
                self.cmds[w].send(Cmd::Unlock).unwrap();
                self.expect_done_and_grants(w, &granted);
            }
            Op::Downgrade(w) => {
                let Some(r) = self.sm.get(w as u64) else {
                    return;
                };
                if !F::SHARED || r.state != rl_reference::State::Held || r.mode != Mode::Write {
                    return;
                }
                let granted = self.sm.downgrade(w as u64).unwrap();
                self.cmds[w].send(Cmd::Downgrade).unwrap();
                self.expect_done_and_grants(w, &granted);
            }
            Op::Cancel(w) => {
                if !can_cancel || !matches!(state(w), Some(rl_reference::State::Waiting { .. })) {
                    return;
                }
                let granted = self.sm.cancel(w as u64).unwrap();
                self.cmds[w].send(Cmd::Cancel).unwrap();
                self.expect_done_and_grants(w, &granted);
            }
        }
    }

    /// Release everything: holders unlock until the queue drains.
    fn drain(&mut self) {
        loop {
            let Some(id) = self.sm.held().next().map(|r| r.id) else {
                break;
            };
            self.step(&Op::Unlock(id as usize), false);
        }
        assert!(self.sm.is_empty());
        for c in &self.cmds {
            c.send(Cmd::Exit).unwrap();
        }
    }
}

fn run<F: Flavour>(lock: AnyLock, ops: &[Op], is_async: bool) {
    let (etx, erx) = mpsc::channel();
    std::thread::scope(|s| {
        let mut cmds = Vec::new();
        for w in 0..WORKERS {
            let (tx, rx) = mpsc::channel();
            cmds.push(tx);
            let (etx, lock) = (etx.clone(), &lock);
            s.spawn(move || {
                if is_async {
                    async_worker(w, lock, rx, etx)
                } else {
                    blocking_worker(w, lock, rx, etx)
                }
            });
        }
        let mut c = Controller::<F> {
            lock: &lock,
            sm: StateMachine::new(),
            cmds,
            events: erx,
        };
        for op in ops {
            c.step(op, is_async);
        }
        c.drain();
    });
}

fn cases() -> u32 {
    if cfg!(miri) { 1 } else { 24 }
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..if cfg!(miri) { 12 } else { 60 })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn range_lock_threads_match_state_machine(ops in ops()) {
        run::<rl_reference::ExclFifo>(AnyLock::Excl(RangeLock::new()), &ops, false);
    }

    #[test]
    fn rw_range_lock_threads_match_state_machine(ops in ops()) {
        run::<rl_reference::Rw>(AnyLock::Rw(RwRangeLock::new()), &ops, false);
    }

    #[test]
    fn range_lock_async_matches_state_machine(ops in ops()) {
        run::<rl_reference::ExclFifo>(AnyLock::Excl(RangeLock::new()), &ops, true);
    }

    #[test]
    fn rw_range_lock_async_matches_state_machine(ops in ops()) {
        run::<rl_reference::Rw>(AnyLock::Rw(RwRangeLock::new()), &ops, true);
    }
}
