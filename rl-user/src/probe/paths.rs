//! Inode to path, on the live system: events name files by `(dev, ino)`,
//! people by path. The traced tasks' open files (`/proc/PID/fd`) and file
//! mappings (`/proc/PID/maps`) are searched for the inodes asked about.
//!
//! The search reads procfs, so it runs on a thread of its own
//! ([`Resolver`]): asking never blocks the event pipeline. A file no traced
//! task has open or mapped stays unnamed (the views then show `dev:ino`);
//! each inode is asked about again at most every [`RETRY`].

use std::os::unix::fs::MetadataExt as _;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use crate::events::Dev;
use crate::model::{FastMap, FastSet};

/// How long before an unresolved inode is looked for again.
pub const RETRY: Duration = Duration::from_secs(5);
/// Most file descriptors looked at per search (a bound on its cost).
const MAX_FDS: usize = 50_000;

type File = (Dev, u64);

struct Request {
    files: FastSet<File>,
    pids: Vec<u32>,
}

/// Resolves inodes to paths on a background thread. See the module docs.
pub struct Resolver {
    tx: Option<Sender<Request>>,
    rx: Receiver<(File, String)>,
    asked: FastMap<File, Instant>,
    paths: FastMap<File, String>,
}

impl Default for Resolver {
    fn default() -> Resolver {
        Resolver::start()
    }
}

impl Resolver {
    pub fn start() -> Resolver {
        let (req_tx, req_rx) = mpsc::channel::<Request>();
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("rltop-paths".into())
            .spawn(move || {
                for r in req_rx {
                    for found in search(&r.files, &r.pids) {
                        if tx.send(found).is_err() {
                            return;
                        }
                    }
                }
            });
        Resolver {
            // Without the thread, nothing is resolved: names stay dev:ino.
            tx: spawned.ok().map(|_| req_tx),
            rx,
            asked: FastMap::default(),
            paths: FastMap::default(),
        }
    }

    /// Asks for the paths of `files` not known yet, searching the open
    /// files of `pids`. Returns at once.
    pub fn ask(&mut self, files: impl IntoIterator<Item = File>, pids: &[u32]) {
        let now = Instant::now();
        let files: FastSet<File> = files
            .into_iter()
            .filter(|f| !self.paths.contains_key(f))
            .filter(|f| self.asked.get(f).is_none_or(|t| now - *t >= RETRY))
            .collect();
        if files.is_empty() {
            return;
        }
        for f in &files {
            self.asked.insert(*f, now);
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(Request {
                files,
                pids: pids.to_vec(),
            });
        }
    }

    /// Takes in the answers so far; true when there were new ones.
    pub fn poll(&mut self) -> bool {
        let mut new = false;
        while let Ok((f, p)) = self.rx.try_recv() {
            new |= self.paths.insert(f, p).is_none();
        }
        new
    }

    pub fn paths(&self) -> &FastMap<File, String> {
        &self.paths
    }
}

/// The device of a `stat` result, as the events write it.
fn dev_of(st_dev: u64) -> Dev {
    Dev {
        major: libc::major(st_dev),
        minor: libc::minor(st_dev),
    }
}

/// Looks for `files` among the mappings and open files of `pids`.
pub fn search(files: &FastSet<File>, pids: &[u32]) -> Vec<(File, String)> {
    let mut found: FastMap<File, String> = FastMap::default();
    let mut fds = 0usize;
    for &pid in pids {
        if found.len() == files.len() {
            break;
        }
        if let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) {
            for (f, path) in maps.lines().filter_map(parse_maps_line) {
                if files.contains(&f) {
                    found.entry(f).or_insert_with(|| path.to_string());
                }
            }
        }
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for entry in dir.flatten() {
            fds += 1;
            if fds > MAX_FDS {
                return found.into_iter().collect();
            }
            // stat through the magic link: the open file itself, even when
            // its name was since unlinked.
            let Ok(md) = std::fs::metadata(entry.path()) else {
                continue;
            };
            let f = (dev_of(md.dev()), md.ino());
            if !files.contains(&f) || found.contains_key(&f) {
                continue;
            }
            if let Ok(target) = std::fs::read_link(entry.path()) {
                found.insert(f, target.to_string_lossy().into_owned());
            }
        }
    }
    found.into_iter().collect()
}

/// `addr perms offset MAJ:MIN inode path` (device in hex) -> the file.
fn parse_maps_line(line: &str) -> Option<(File, &str)> {
    let mut it = line.splitn(6, ' ');
    let (_addr, _perms, _off) = (it.next()?, it.next()?, it.next()?);
    let (ma, mi) = it.next()?.split_once(':')?;
    let ino: u64 = it.next()?.parse().ok()?;
    let path = it.next()?.trim_start();
    if ino == 0 || !path.starts_with('/') {
        return None;
    }
    let dev = Dev {
        major: u32::from_str_radix(ma, 16).ok()?,
        minor: u32::from_str_radix(mi, 16).ok()?,
    };
    Some(((dev, ino), path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines() {
        let l = "7f1c2a000000-7f1c2a001000 rw-s 00000000 fe:00 5554196                    /mnt/test/file";
        assert_eq!(
            parse_maps_line(l),
            Some((
                (
                    Dev {
                        major: 254,
                        minor: 0
                    },
                    5554196
                ),
                "/mnt/test/file"
            ))
        );
        assert_eq!(
            parse_maps_line("7ffd1000-7ffd2000 rw-p 00000000 00:00 0                  [stack]"),
            None
        );
    }

    #[test]
    fn finds_a_file_this_process_has_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("held-open");
        let file = std::fs::File::create(&path).unwrap();
        let md = file.metadata().unwrap();
        let f = (dev_of(md.dev()), md.ino());
        let want: FastSet<File> = [f].into_iter().collect();
        let found = search(&want, &[std::process::id()]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].1, path.to_string_lossy());
        drop(file);
    }
}
