//! tracefs: where tracepoints live, and the `format` files that give each
//! tracepoint record's field offsets on the running kernel.

use std::path::{Path, PathBuf};

/// One field of a tracepoint record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub offset: u32,
    pub size: u32,
}

/// The fields of one tracepoint, from its `format` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Format {
    pub fields: Vec<Field>,
}

impl Format {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// Parses a tracefs `format` file. Lines look like
/// `field:unsigned long i_ino; offset:8; size:8; signed:0;`; the name is
/// the last identifier of the declaration (`char comm[16]` -> `comm`).
pub fn parse_format(text: &str) -> Format {
    let mut fields = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut parts = rest.split(';').map(str::trim);
        let Some(decl) = parts.next() else { continue };
        let mut offset = None;
        let mut size = None;
        for p in parts {
            if let Some(v) = p.strip_prefix("offset:") {
                offset = v.parse().ok();
            } else if let Some(v) = p.strip_prefix("size:") {
                size = v.parse().ok();
            }
        }
        // `char comm[16]` names `comm`; `__data_loc char[] msg` names `msg`.
        let decl = match decl.rfind('[') {
            Some(i) if decl.ends_with(']') => decl[..i].trim_end(),
            _ => decl,
        };
        let name = decl
            .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap_or("");
        if let (false, Some(offset), Some(size)) = (name.is_empty(), offset, size) {
            fields.push(Field {
                name: name.to_owned(),
                offset,
                size,
            });
        }
    }
    Format { fields }
}

/// The mounted tracefs.
#[derive(Debug, Clone)]
pub struct Tracefs {
    root: PathBuf,
}

pub const TRACEFS: &str = "/sys/kernel/tracing";

impl Tracefs {
    /// Finds tracefs, mounting it at /sys/kernel/tracing when it is missing
    /// (fresh test VMs often have neither tracefs nor debugfs mounted).
    /// Returns the tracefs and whether rltop mounted it.
    pub fn open() -> Result<(Tracefs, bool), String> {
        let root = Path::new(TRACEFS);
        if root.join("events").is_dir() {
            return Ok((Tracefs { root: root.into() }, false));
        }
        let legacy = Path::new("/sys/kernel/debug/tracing");
        if legacy.join("events").is_dir() {
            return Ok((
                Tracefs {
                    root: legacy.into(),
                },
                false,
            ));
        }
        let src = c"nodev";
        let target = c"/sys/kernel/tracing";
        let fstype = c"tracefs";
        // SAFETY: all pointers are valid NUL-terminated strings; data is null.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            return Err(format!(
                "tracefs is not mounted and mounting it at {TRACEFS} failed ({err}); \
                 mount it with `mount -t tracefs nodev {TRACEFS}`"
            ));
        }
        if !root.join("events").is_dir() {
            return Err(format!(
                "mounted tracefs at {TRACEFS} but it has no events/ directory"
            ));
        }
        Ok((Tracefs { root: root.into() }, true))
    }

    /// A tracefs rooted somewhere else (tests).
    /// Where tracefs is mounted.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn at(root: impl Into<PathBuf>) -> Tracefs {
        Tracefs { root: root.into() }
    }

    pub fn has_event(&self, cat: &str, name: &str) -> bool {
        self.root.join("events").join(cat).join(name).is_dir()
    }

    /// The format of `cat:name`, or `None` when this kernel lacks it.
    pub fn format(&self, cat: &str, name: &str) -> Option<Format> {
        let text =
            std::fs::read_to_string(self.root.join("events").join(cat).join(name).join("format"))
                .ok()?;
        Some(parse_format(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAULT: &str = "name: mm_filemap_fault
ID: 601
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned long i_ino;\toffset:8;\tsize:8;\tsigned:0;
\tfield:dev_t s_dev;\toffset:16;\tsize:4;\tsigned:0;
\tfield:unsigned long index;\toffset:24;\tsize:8;\tsigned:0;
\tfield:char comm[16];\toffset:32;\tsize:16;\tsigned:0;
\tfield:__data_loc char[] msg;\toffset:48;\tsize:4;\tsigned:0;
\tfield:struct mm_struct * mm;\toffset:52;\tsize:8;\tsigned:0;

print fmt: \"dev %d:%d\"
";

    #[test]
    fn parses_names_offsets_and_sizes() {
        let f = parse_format(FAULT);
        assert_eq!(
            f.field("i_ino"),
            Some(&Field {
                name: "i_ino".into(),
                offset: 8,
                size: 8
            })
        );
        assert_eq!(f.field("s_dev").map(|f| (f.offset, f.size)), Some((16, 4)));
        assert_eq!(f.field("index").map(|f| f.offset), Some(24));
        assert_eq!(f.field("comm").map(|f| (f.offset, f.size)), Some((32, 16)));
        assert_eq!(f.field("msg").map(|f| f.offset), Some(48));
        assert_eq!(f.field("mm").map(|f| f.offset), Some(52));
        assert_eq!(f.field("common_pid").map(|f| f.offset), Some(4));
        assert_eq!(f.field("print"), None);
    }

    #[test]
    fn ignores_garbage_lines() {
        let f = parse_format("field:;offset:x;\nfield:int a;\tsize:4;\nhello\n");
        assert!(f.fields.is_empty());
    }
}
