//! The human one-line form of events (`rltop dump --format text`):
//!
//! ```text
//!   12.345678901 cpu1 fio/1234[1234] dio_begin 8:3 ino 12 pos 8192 len 4096 write io 0xffff8881...
//! ```
//!
//! Time is relative to the first event. Kernel addresses and opaque ids are
//! hex; sizes, positions and page indices decimal.

use std::collections::HashMap;
use std::io::{self, Write};

use super::{Body, Event, PunchOp};

/// Writes events as text lines. It remembers each task's `comm` (from `task`
/// events, forgotten at `exit`) so later lines can name the task.
#[derive(Debug, Default)]
pub struct TextWriter {
    first_ts: Option<u64>,
    comms: HashMap<u32, String>,
}

impl TextWriter {
    pub fn new() -> TextWriter {
        TextWriter::default()
    }

    /// Writes one line for `ev`.
    pub fn write_event(&mut self, w: &mut impl Write, ev: &Event) -> io::Result<()> {
        let first = *self.first_ts.get_or_insert(ev.ts);
        // Events a little out of order (per-CPU buffers) show a minus sign.
        let (sign, rel) = match ev.ts.checked_sub(first) {
            Some(d) => (' ', d),
            None => ('-', first - ev.ts),
        };
        write!(
            w,
            "{sign}{:>4}.{:09} ",
            rel / 1_000_000_000,
            rel % 1_000_000_000
        )?;
        match ev.cpu {
            Some(c) => write!(w, "cpu{c:<3}")?,
            None => w.write_all(b"cpu?  ")?,
        }
        if let Body::Task { comm, .. } = &ev.body {
            self.comms.insert(ev.tid, comm.clone());
        }
        if let Some(comm) = self.comms.get(&ev.tid) {
            write!(w, " {}/", comm.escape_debug())?;
        } else {
            w.write_all(b" ")?;
        }
        write!(w, "{}[{}] {}", ev.tid, ev.pid, ev.body.kind())?;
        write_body(w, &ev.body)?;
        w.write_all(b"\n")?;
        if matches!(ev.body, Body::Exit) {
            self.comms.remove(&ev.tid);
        }
        Ok(())
    }
}

fn rw(write: bool) -> &'static str {
    if write { "write" } else { "read" }
}

fn write_id(w: &mut impl Write, id: Option<u64>) -> io::Result<()> {
    match id {
        Some(id) => write!(w, " id {id}"),
        None => Ok(()),
    }
}

#[allow(clippy::too_many_lines)] // one arm per event kind: the table reads better whole than split
fn write_body(w: &mut impl Write, body: &Body) -> io::Result<()> {
    match body {
        Body::Task { comm, kthread } => {
            write!(w, " comm {comm:?}")?;
            if *kthread {
                w.write_all(b" kthread")?;
            }
            Ok(())
        }
        Body::Fork { child, child_pid } => write!(w, " child {child}[{child_pid}]"),
        Body::Tree { tree, dev, ino } => write!(w, " {tree:#x} {dev} ino {ino}"),
        Body::RlRequest {
            tree,
            lock,
            start,
            last,
            mode,
        } => write!(
            w,
            " tree {tree:#x} lock {lock:#x} pages {start}-{last} {}",
            mode.as_str()
        ),
        Body::RlAcquired { tree, lock }
        | Body::RlTrylockFailed { tree, lock }
        | Body::RlCancel { tree, lock }
        | Body::RlRelease { tree, lock }
        | Body::RlDowngrade { tree, lock }
        | Body::RlQueued { tree, lock } => write!(w, " tree {tree:#x} lock {lock:#x}"),
        Body::RlTreeInit { tree } => write!(w, " tree {tree:#x}"),
        Body::RlQueueSeq { tree, lock, seq } => {
            write!(w, " tree {tree:#x} lock {lock:#x} seq {seq}")
        }
        Body::MmapLockRequest { mm, write } | Body::MmapLockRelease { mm, write } => {
            write!(w, " mm {mm:#x} {}", rw(*write))
        }
        Body::MmapLockAcquired { mm, write, success } => write!(
            w,
            " mm {mm:#x} {} {}",
            rw(*write),
            if *success { "success" } else { "failed" }
        ),
        Body::Fault { dev, ino, index } => write!(w, " {dev} ino {ino} index {index}"),
        Body::PageAdd {
            dev,
            ino,
            index,
            order,
        } => {
            write!(w, " {dev} ino {ino} index {index}")?;
            match order {
                Some(o) => write!(w, " order {o}"),
                None => Ok(()),
            }
        }
        Body::DioBegin {
            io,
            dev,
            ino,
            pos,
            len,
            write,
        } => write!(
            w,
            " {dev} ino {ino} pos {pos} len {len} {} io {io:#x}",
            rw(*write)
        ),
        Body::DioEnd { io, ret } => write!(w, " io {io:#x} ret {ret}"),
        Body::PunchBegin {
            dev,
            ino,
            pos,
            len,
            op,
            id,
        } => {
            write!(w, " {dev} ino {ino} pos {pos} len {len}")?;
            if *op != PunchOp::Punch {
                write!(w, " op {}", op.as_str())?;
            }
            write_id(w, *id)
        }
        Body::TruncateBegin { dev, ino, size, id } => {
            write!(w, " {dev} ino {ino} size {size}")?;
            write_id(w, *id)
        }
        Body::PunchEnd { ret, id } | Body::TruncateEnd { ret, id } => {
            write!(w, " ret {ret}")?;
            write_id(w, *id)
        }
        Body::InvalidateBegin {
            dev,
            ino,
            first,
            last,
            id,
        } => {
            write!(w, " {dev} ino {ino} pages {first}-")?;
            if *last == u64::MAX {
                w.write_all(b"~0")?;
            } else {
                write!(w, "{last}")?;
            }
            write_id(w, *id)
        }
        Body::InvalidateEnd { dev, ino, id } => {
            write!(w, " {dev} ino {ino}")?;
            write_id(w, *id)
        }
        Body::ContentionBegin {
            addr,
            flags,
            caller,
        } => {
            write!(w, " addr {addr:#x} flags {flags:#x}")?;
            match caller {
                Some(c) => write!(w, " caller {c}"),
                None => Ok(()),
            }
        }
        Body::ContentionEnd { addr, ret } => {
            if let Some(a) = addr {
                write!(w, " addr {a:#x}")?;
            }
            write!(w, " ret {ret}")
        }
        Body::Marker { text } => write!(w, " {text:?}"),
        Body::Lost {
            count,
            cpu,
            since,
            probe,
        } => {
            match probe {
                Some(p) => write!(w, " {count} hits of {p}")?,
                None => write!(w, " {count} events on cpu {cpu}")?,
            }
            match since {
                Some(s) => write!(w, " since ts {s}"),
                None => Ok(()),
            }
        }
        Body::Exit => Ok(()),
        Body::OrderingEvidence {
            mm,
            write,
            held,
            stack,
        } => write!(
            w,
            " mm {mm:#x} {} while holding {held} range lock(s); stack {stack}",
            rw(*write)
        ),
        Body::File {
            dev,
            ino,
            path,
            fs,
            i_rwsem,
            invalidate_lock,
        } => {
            write!(w, " {dev} ino {ino}")?;
            if let Some(p) = path {
                write!(w, " path {p:?}")?;
            }
            if let Some(f) = fs {
                write!(w, " fs {f}")?;
            }
            if let Some(a) = i_rwsem {
                write!(w, " i_rwsem {a:#x}")?;
            }
            if let Some(a) = invalidate_lock {
                write!(w, " invalidate_lock {a:#x}")?;
            }
            Ok(())
        }
        Body::FileLockRequest {
            dev,
            ino,
            class,
            write,
            trylock,
            stack,
        } => {
            write!(w, " {dev} ino {ino} {} {}", class.as_str(), rw(*write))?;
            if *trylock == Some(true) {
                w.write_all(b" try")?;
            }
            match stack {
                Some(s) => write!(w, "; stack {s}"),
                None => Ok(()),
            }
        }
        Body::FileLockAcquired {
            dev,
            ino,
            class,
            write,
            success,
        } => write!(
            w,
            " {dev} ino {ino} {} {} {}",
            class.as_str(),
            rw(*write),
            if *success { "success" } else { "failed" }
        ),
        Body::FileLockRelease {
            dev,
            ino,
            class,
            write,
        } => write!(w, " {dev} ino {ino} {} {}", class.as_str(), rw(*write)),
        Body::PageFault {
            addr,
            user,
            write,
            held,
            stack,
        } => {
            write!(
                w,
                " addr {addr:#x} {}",
                if *user { "user" } else { "kernel" }
            )?;
            if let Some(wr) = write {
                write!(w, " {}", rw(*wr))?;
            }
            write!(w, " while holding {held} lock(s) below mmap_lock")?;
            match stack {
                Some(s) => write!(w, "; stack {s}"),
                None => Ok(()),
            }
        }
    }
}

/// Writes one event without task names or a time origin: the timestamp is
/// shown absolute. Prefer [`TextWriter`] for a stream.
pub fn write_event(w: &mut impl Write, ev: &Event) -> io::Result<()> {
    let mut tw = TextWriter {
        first_ts: Some(0),
        comms: HashMap::new(),
    };
    tw.write_event(w, ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Dev;
    use crate::testing::ev;

    /// An event of task `tid` of process 1234, on CPU 1 (the text shows both).
    fn fio(ts: u64, tid: u32, body: Body) -> Event {
        Event {
            pid: 1234,
            cpu: Some(1),
            ..crate::testing::ev(ts, tid, body)
        }
    }

    #[test]
    fn names_tasks_and_times_relative_to_first_event() {
        let mut tw = TextWriter::new();
        let mut out = Vec::new();
        let dev = Dev { major: 8, minor: 3 };
        for e in [
            fio(
                1_000,
                1234,
                Body::Task {
                    comm: "fio".into(),
                    kthread: false,
                },
            ),
            fio(
                12_345_679_901,
                1234,
                Body::DioBegin {
                    io: 0xffff_8881_0000_1000,
                    dev,
                    ino: 12,
                    pos: 8192,
                    len: 4096,
                    write: true,
                },
            ),
            fio(12_345_680_000, 1234, Body::Exit),
            fio(12_345_680_001, 1234, Body::DioEnd { io: 1, ret: -5 }),
        ] {
            tw.write_event(&mut out, &e).unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(
            lines[0],
            "    0.000000000 cpu1   fio/1234[1234] task comm \"fio\""
        );
        assert_eq!(
            lines[1],
            "   12.345678901 cpu1   fio/1234[1234] dio_begin 8:3 ino 12 pos 8192 len 4096 write io 0xffff888100001000"
        );
        assert_eq!(lines[2], "   12.345679000 cpu1   fio/1234[1234] exit");
        // After exit the name is forgotten (tids get reused).
        assert_eq!(
            lines[3],
            "   12.345679001 cpu1   1234[1234] dio_end io 0x1 ret -5"
        );
    }

    #[test]
    fn operations_show_their_op_id_and_window() {
        let dev = Dev { major: 7, minor: 1 };
        let mut out = Vec::new();
        for body in [
            Body::PunchBegin {
                dev,
                ino: 12,
                pos: 0,
                len: 4096,
                op: crate::events::PunchOp::Zero,
                id: Some(4096),
            },
            Body::InvalidateBegin {
                dev,
                ino: 12,
                first: 3,
                last: u64::MAX,
                id: Some(4096),
            },
            Body::InvalidateEnd {
                dev,
                ino: 12,
                id: Some(4096),
            },
            Body::TruncateEnd { ret: 0, id: None },
        ] {
            write_event(&mut out, &ev(1, 1, body)).unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        let tails: Vec<&str> = text
            .lines()
            .map(|l| l.split("] ").nth(1).unwrap())
            .collect();
        assert_eq!(
            tails,
            [
                "punch_begin 7:1 ino 12 pos 0 len 4096 op zero id 4096",
                "invalidate_begin 7:1 ino 12 pages 3-~0 id 4096",
                "invalidate_end 7:1 ino 12 id 4096",
                "truncate_end ret 0",
            ]
        );
    }

    #[test]
    fn earlier_event_shows_negative_offset() {
        let mut tw = TextWriter::new();
        let mut out = Vec::new();
        tw.write_event(&mut out, &fio(2_000_000_000, 1, Body::Exit))
            .unwrap();
        tw.write_event(&mut out, &fio(1_500_000_000, 1, Body::Exit))
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text.lines().nth(1).unwrap(),
            "-   0.500000000 cpu1   1[1234] exit"
        );
    }
}
