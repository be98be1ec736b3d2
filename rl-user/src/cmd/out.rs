//! Standard output, the one way every command writes it: buffered, and a
//! reader that went away (`rltop dump x | head`) is no error: the command
//! stops writing and succeeds. Any other write error is one line, exit 2.

use std::io::{self, BufWriter, StdoutLock, Write};

/// See the module docs.
pub struct Stdout {
    w: BufWriter<StdoutLock<'static>>,
    what: &'static str,
}

impl Stdout {
    /// Stdout for command `what` (named in a write error).
    pub fn new(what: &'static str) -> Stdout {
        Stdout {
            w: BufWriter::with_capacity(1 << 16, io::stdout().lock()),
            what,
        }
    }

    /// Ends the output: flushes it, and turns the outcome of the writes
    /// (`r`) into the command's: a closed pipe is fine.
    pub fn finish(mut self, r: io::Result<()>) -> anyhow::Result<()> {
        match r.and_then(|()| self.w.flush()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(crate::user_error(format!(
                "{}: writing output: {e}",
                self.what
            ))),
        }
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.w.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// Writes `out` to stdout whole (see [`Stdout`]).
pub fn write_stdout(what: &'static str, out: &[u8]) -> anyhow::Result<()> {
    let mut s = Stdout::new(what);
    let r = s.write_all(out);
    s.finish(r)
}
