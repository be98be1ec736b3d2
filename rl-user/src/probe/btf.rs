//! A minimal reader of kernel BTF (`/sys/kernel/btf/vmlinux`, and a module's
//! split BTF on top of it, `/sys/kernel/btf/<module>`): enough to find
//! the byte offset of a struct member, following anonymous structs and
//! unions, so that eBPF programs can read kernel structs without CO-RE
//! (rustc cannot emit CO-RE relocations).
//!
//! Format: `include/uapi/linux/btf.h` — a header, then a type section of
//! `struct btf_type` records each followed by kind-specific data, then a
//! string section. Type ids start at 1 (0 is void). A module's BTF is
//! split BTF: its type ids continue after the base's last one and its
//! string offsets after the base's string section (`btf_name_by_offset()`
//! in kernel/bpf/btf.c), so appending both to the base's gives one table.

use std::collections::HashMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("BTF data is truncated or malformed ({0})")]
    Malformed(&'static str),
    #[error("BTF has no struct {0}")]
    NoStruct(String),
    #[error("BTF struct {strukt} has no member {member}")]
    NoMember { strukt: String, member: String },
    #[error("BTF member {strukt}.{member} is a bit field")]
    BitField { strukt: String, member: String },
}

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_FUNC_PROTO: u32 = 13;

#[derive(Debug, Clone)]
struct Member {
    name_off: u32,
    type_id: u32,
    /// Bit offset within the enclosing struct.
    bit_offset: u32,
    bitfield_size: u32,
}

#[derive(Debug, Clone)]
struct Type {
    name_off: u32,
    kind: u32,
    /// For typedef/const/volatile/restrict/type_tag: the referred type.
    referee: u32,
    members: Vec<Member>,
}

/// Parsed BTF, indexed for struct look-ups.
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    structs_by_name: HashMap<String, u32>,
    typedefs_by_name: HashMap<String, u32>,
}

fn u32_at(d: &[u8], off: usize) -> Result<u32, BtfError> {
    d.get(off..off + 4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .ok_or(BtfError::Malformed("short read"))
}

/// What the second u32 of a two-u32 record is.
enum Second {
    /// An enumerator's value (kept as the bit offset).
    Value,
    /// A parameter's type.
    Type,
}

/// `vlen` records of two u32s from `off` (a name, then `second`), as members.
fn pair_members(
    data: &[u8],
    off: usize,
    vlen: usize,
    second: Second,
) -> Result<Vec<Member>, BtfError> {
    (0..vlen)
        .map(|i| {
            let (name_off, v) = (u32_at(data, off + 8 * i)?, u32_at(data, off + 8 * i + 4)?);
            let (type_id, bit_offset) = match second {
                Second::Value => (0, v),
                Second::Type => (v, 0),
            };
            Ok(Member {
                name_off,
                type_id,
                bit_offset,
                bitfield_size: 0,
            })
        })
        .collect()
}

impl Btf {
    /// Parses little-endian BTF (x86-64, arm64).
    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        let mut btf = Btf {
            // Id 0 is void.
            types: vec![Type {
                name_off: 0,
                kind: 0,
                referee: 0,
                members: Vec::new(),
            }],
            strings: Vec::new(),
            structs_by_name: HashMap::new(),
            typedefs_by_name: HashMap::new(),
        };
        btf.append(data)?;
        Ok(btf)
    }

    /// Parses a module's split BTF on top of `self` (vmlinux's). The
    /// module's structs win over same-named ones of the base: a lock struct
    /// is looked up for the module that defines it.
    pub fn with_split(mut self, data: &[u8]) -> Result<Btf, BtfError> {
        self.append(data)?;
        Ok(self)
    }

    /// Reads `/sys/kernel/btf/vmlinux` and, on top of it, the split BTF of
    /// `module` (`/sys/kernel/btf/<module>`; an error when it has none).
    pub fn for_module(module: &str) -> Result<Btf, std::io::Error> {
        let data = std::fs::read(format!("/sys/kernel/btf/{module}"))?;
        Btf::from_kernel()?
            .with_split(&data)
            .map_err(std::io::Error::other)
    }

    /// Appends one BTF blob's types and strings (the first, or split BTF).
    fn append(&mut self, data: &[u8]) -> Result<(), BtfError> {
        if data.len() < 24 || data[0..2] != [0x9f, 0xeb] {
            return Err(BtfError::Malformed("bad magic"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let types_data = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or(BtfError::Malformed("type section out of bounds"))?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Malformed("string section out of bounds"))?;
        let first_new = self.types.len();
        let split = first_new > 1;
        self.strings.extend_from_slice(strings);
        let types = &mut self.types;
        let mut off = 0;
        while off < types_data.len() {
            let name_off = u32_at(types_data, off)?;
            let info = u32_at(types_data, off + 4)?;
            let size_or_type = u32_at(types_data, off + 8)?;
            off += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            let extra = match kind {
                1 => 4,  // INT
                3 => 12, // ARRAY
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = off + 12 * i;
                        let raw = u32_at(types_data, m + 8)?;
                        let (bit_offset, bitfield_size) = if kind_flag {
                            (raw & 0xffffff, raw >> 24)
                        } else {
                            (raw, 0)
                        };
                        members.push(Member {
                            name_off: u32_at(types_data, m)?,
                            type_id: u32_at(types_data, m + 4)?,
                            bit_offset,
                            bitfield_size,
                        });
                    }
                    12 * vlen
                }
                // Enumerators as members: the name, and the value where a
                // member's bit offset would be.
                KIND_ENUM => {
                    members = pair_members(types_data, off, vlen, Second::Value)?;
                    8 * vlen
                }
                // Parameters as members without offsets: only their types matter here.
                KIND_FUNC_PROTO => {
                    members = pair_members(types_data, off, vlen, Second::Type)?;
                    8 * vlen
                }
                14 => 4,         // VAR
                15 => 12 * vlen, // DATASEC
                17 => 4,         // DECL_TAG
                19 => 12 * vlen, // ENUM64
                2 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 18 => 0,
                _ => return Err(BtfError::Malformed("unknown type kind")),
            };
            off += extra;
            types.push(Type {
                name_off,
                kind,
                referee: size_or_type,
                members,
            });
        }
        for id in first_new..self.types.len() {
            let t = &self.types[id];
            if t.name_off == 0 {
                continue;
            }
            // Only the name itself: validating the rest of the string table
            // for each struct cost most of rltop's start-up.
            let name = self.name(t.name_off).to_owned();
            let map = match t.kind {
                KIND_STRUCT => &mut self.structs_by_name,
                // Only the tracepoint prototypes are looked up by typedef name.
                KIND_TYPEDEF if name.starts_with("btf_trace_") => &mut self.typedefs_by_name,
                _ => continue,
            };
            if split {
                // A module's definition wins over the base's.
                map.insert(name, id as u32);
            } else {
                // The first definition wins; later ones are usually identical.
                map.entry(name).or_insert(id as u32);
            }
        }
        Ok(())
    }

    /// Reads `/sys/kernel/btf/vmlinux`.
    pub fn from_kernel() -> Result<Btf, std::io::Error> {
        let data = std::fs::read("/sys/kernel/btf/vmlinux")?;
        Btf::parse(&data).map_err(std::io::Error::other)
    }

    fn name(&self, off: u32) -> &str {
        let s = self.strings.get(off as usize..).unwrap_or_default();
        let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    /// Follows typedefs and qualifiers to the underlying type id.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(t) if matches!(t.kind, 8 | 9 | 10 | 11 | 18) => id = t.referee,
                _ => break,
            }
        }
        id
    }

    /// Bit offset of `member` in the struct or union `id`, searching
    /// anonymous members recursively.
    fn find(&self, id: u32, member: &str, depth: u32) -> Option<(u32, &Member)> {
        if depth > 8 {
            return None;
        }
        let t = self.types.get(self.resolve(id) as usize)?;
        for m in &t.members {
            if m.name_off != 0 && self.name(m.name_off) == member {
                return Some((m.bit_offset, m));
            }
        }
        for m in &t.members {
            if m.name_off == 0
                && let Some((off, found)) = self.find(m.type_id, member, depth + 1)
            {
                return Some((m.bit_offset + off, found));
            }
        }
        None
    }

    /// A C-like name of type `id`: `struct mm_struct *`, `bool`, `pgoff_t`.
    fn type_name(&self, id: u32, depth: u32) -> String {
        let Some(t) = self.types.get(id as usize) else {
            return "?".into();
        };
        if depth > 8 {
            return "?".into();
        }
        match t.kind {
            0 if id == 0 => "void".into(),
            KIND_INT | KIND_TYPEDEF => self.name(t.name_off).into(),
            KIND_STRUCT => format!("struct {}", self.name(t.name_off)),
            KIND_UNION => format!("union {}", self.name(t.name_off)),
            KIND_PTR => format!("{} *", self.type_name(t.referee, depth + 1)),
            9..=11 | 18 => self.type_name(t.referee, depth + 1),
            _ => self.name(t.name_off).into(),
        }
    }

    /// The C argument types of tracepoint `event` as a raw tracepoint gets
    /// them (its `TP_PROTO`), from the `btf_trace_<event>` typedef; None
    /// when this kernel's BTF does not describe it.
    pub fn tracepoint_args(&self, event: &str) -> Option<Vec<String>> {
        let id = *self.typedefs_by_name.get(&format!("btf_trace_{event}"))?;
        let ptr = self.types.get(id as usize)?.referee;
        let proto = self.types.get(ptr as usize)?.referee;
        let proto = self.types.get(proto as usize)?;
        if proto.kind != KIND_FUNC_PROTO {
            return None;
        }
        // The first parameter is the probe's private `void *__data`.
        Some(
            proto
                .members
                .iter()
                .skip(1)
                .map(|m| self.type_name(m.type_id, 0))
                .collect(),
        )
    }

    /// The value of enumerator `name` of the enum named `enum_name`
    /// (`PG_head` of `pageflags`: its bit number differs between kernels
    /// and configurations).
    pub fn enum_value(&self, enum_name: &str, name: &str) -> Option<u32> {
        self.types
            .iter()
            .filter(|t| t.kind == KIND_ENUM && self.name(t.name_off) == enum_name)
            .flat_map(|t| &t.members)
            .find(|m| self.name(m.name_off) == name)
            .map(|m| m.bit_offset)
    }

    /// Byte offset of a dotted member path, `d_u.d_alias` in `dentry`:
    /// each step is a member of the previous member's struct or union type
    /// (anonymous ones included, unlike a named struct lookup).
    pub fn member_path_offset(&self, strukt: &str, path: &str) -> Result<u32, BtfError> {
        let mut id = *self
            .structs_by_name
            .get(strukt)
            .ok_or_else(|| BtfError::NoStruct(strukt.into()))?;
        let mut bits = 0;
        let no_member = || BtfError::NoMember {
            strukt: strukt.into(),
            member: path.into(),
        };
        for step in path.split('.') {
            let (off, m) = self.find(id, step, 0).ok_or_else(no_member)?;
            if m.bitfield_size != 0 {
                return Err(BtfError::BitField {
                    strukt: strukt.into(),
                    member: path.into(),
                });
            }
            bits += off;
            id = m.type_id;
        }
        if bits % 8 != 0 {
            return Err(BtfError::BitField {
                strukt: strukt.into(),
                member: path.into(),
            });
        }
        Ok(bits / 8)
    }

    /// Byte offset of `strukt.member`.
    pub fn member_offset(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        let id = *self
            .structs_by_name
            .get(strukt)
            .ok_or_else(|| BtfError::NoStruct(strukt.into()))?;
        let (bits, m) = self.find(id, member, 0).ok_or_else(|| BtfError::NoMember {
            strukt: strukt.into(),
            member: member.into(),
        })?;
        if m.bitfield_size != 0 || bits % 8 != 0 {
            return Err(BtfError::BitField {
                strukt: strukt.into(),
                member: member.into(),
            });
        }
        Ok(bits / 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offset of `name` in a string section that starts at `base`
    /// (split BTF numbers its strings after the base's).
    fn string_offset(strings: &[u8], base: u32, name: &str) -> u32 {
        let pat = format!("\0{name}\0");
        base + strings
            .windows(pat.len())
            .position(|w| w == pat.as_bytes())
            .unwrap() as u32
            + 1
    }

    /// A BTF blob: the header, then `types` and `strings`.
    fn blob(types: &[u8], strings: &[u8]) -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&[0x9f, 0xeb, 1, 0]);
        d.extend_from_slice(&24u32.to_le_bytes());
        d.extend_from_slice(&0u32.to_le_bytes());
        d.extend_from_slice(&(types.len() as u32).to_le_bytes());
        d.extend_from_slice(&(types.len() as u32).to_le_bytes());
        d.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        d.extend_from_slice(types);
        d.extend_from_slice(strings);
        d
    }

    /// Builds BTF for: struct inner { int a; }; struct outer { long x; union { int y; struct inner z; }; int q; };
    /// enum pageflags { PG_locked, PG_head = 6 }
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0long\0inner\0a\0outer\0x\0y\0z\0q\0pageflags\0PG_locked\0PG_head\0";
        let s = |name: &str| string_offset(strings, 0, name);
        let mut t = Vec::new();
        let mut push = |v: u32| t.extend_from_slice(&v.to_le_bytes());
        // 1: int
        push(s("int"));
        push(1 << 24);
        push(4);
        push(32);
        // 2: long
        push(s("long"));
        push(1 << 24);
        push(8);
        push(64);
        // 3: struct inner { int a @0 }
        push(s("inner"));
        push((4 << 24) | 1);
        push(4);
        push(s("a"));
        push(1);
        push(0);
        // 4: anonymous union { int y @0; struct inner z @0 }
        push(0);
        push((5 << 24) | 2);
        push(4);
        push(s("y"));
        push(1);
        push(0);
        push(s("z"));
        push(3);
        push(0);
        // 5: struct outer { long x @0; union @64; int q @96 }
        push(s("outer"));
        push((4 << 24) | 3);
        push(16);
        push(s("x"));
        push(2);
        push(0);
        push(0);
        push(4);
        push(64);
        push(s("q"));
        push(1);
        push(96);
        // 6: enum pageflags { PG_locked = 0, PG_head = 6 }
        push(s("pageflags"));
        push((6 << 24) | 2);
        push(4);
        push(s("PG_locked"));
        push(0);
        push(s("PG_head"));
        push(6);
        blob(&t, strings)
    }

    #[test]
    fn reads_enumerator_values() {
        let btf = Btf::parse(&sample()).unwrap();
        assert_eq!(btf.enum_value("pageflags", "PG_head"), Some(6));
        assert_eq!(btf.enum_value("pageflags", "PG_locked"), Some(0));
        assert_eq!(btf.enum_value("pageflags", "PG_nope"), None);
        assert_eq!(btf.enum_value("outer", "x"), None);
        // The structs beside it still resolve.
        assert_eq!(btf.member_offset("outer", "q"), Ok(12));
    }

    #[test]
    fn finds_members_through_anonymous_unions() {
        let btf = Btf::parse(&sample()).unwrap();
        assert_eq!(btf.member_offset("outer", "x"), Ok(0));
        assert_eq!(btf.member_offset("outer", "y"), Ok(8));
        assert_eq!(btf.member_offset("outer", "q"), Ok(12));
        assert_eq!(btf.member_offset("inner", "a"), Ok(0));
        assert_eq!(btf.member_path_offset("outer", "z.a"), Ok(8));
        assert_eq!(btf.member_path_offset("outer", "q"), Ok(12));
        assert!(btf.member_path_offset("outer", "z.nope").is_err());
        assert!(matches!(
            btf.member_offset("outer", "nope"),
            Err(BtfError::NoMember { .. })
        ));
        assert!(matches!(
            btf.member_offset("nope", "x"),
            Err(BtfError::NoStruct(_))
        ));
    }

    /// Split BTF of a module on top of [`sample`]: `struct lockx { struct
    /// inner n; long start; }` using the base's types, and its own `struct
    /// outer { long start; }`, which wins over the base's.
    #[test]
    fn a_modules_split_btf_extends_the_base_and_its_structs_win() {
        let base = sample();
        let base_str_len = u32::from_le_bytes(base[20..24].try_into().unwrap());
        let strings = b"\0lockx\0n\0start\0outer\0";
        let s = |name: &str| string_offset(strings, base_str_len, name);
        let mut t = Vec::new();
        let mut push = |v: u32| t.extend_from_slice(&v.to_le_bytes());
        // 7: struct lockx { struct inner n @0 (base id 3); long start @64 (base id 2) }
        push(s("lockx"));
        push((4 << 24) | 2);
        push(16);
        push(s("n"));
        push(3);
        push(0);
        push(s("start"));
        push(2);
        push(64);
        // 8: struct outer { long start @0 }
        push(s("outer"));
        push((4 << 24) | 1);
        push(8);
        push(s("start"));
        push(2);
        push(0);
        let btf = Btf::parse(&base)
            .unwrap()
            .with_split(&blob(&t, strings))
            .unwrap();
        assert_eq!(btf.member_offset("lockx", "start"), Ok(8));
        assert_eq!(btf.member_path_offset("lockx", "n.a"), Ok(0));
        assert_eq!(btf.member_offset("outer", "start"), Ok(0));
        assert!(
            btf.member_offset("outer", "q").is_err(),
            "the module's outer wins"
        );
        // The base's own structs still resolve.
        assert_eq!(btf.member_offset("inner", "a"), Ok(0));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(b"not btf at all, not at all").is_err());
        let mut d = sample();
        d.truncate(40);
        assert!(Btf::parse(&d).is_err());
    }

    #[test]
    fn reads_this_kernels_vmlinux_when_present() {
        let Ok(btf) = Btf::from_kernel() else { return };
        // The members rltop's DIO and truncate probes read.
        assert_eq!(
            btf.tracepoint_args("mmap_lock_acquire_returned").unwrap(),
            ["struct mm_struct *", "bool", "bool"]
        );
        assert_eq!(
            btf.tracepoint_args("mm_filemap_fault").unwrap(),
            ["struct address_space *", "long unsigned int"]
        );
        for (s, m) in [
            ("kiocb", "ki_filp"),
            ("kiocb", "ki_pos"),
            ("file", "f_inode"),
            ("inode", "i_ino"),
            ("inode", "i_sb"),
            ("inode", "i_size"),
            ("super_block", "s_dev"),
            ("iov_iter", "count"),
        ] {
            btf.member_offset(s, m)
                .unwrap_or_else(|e| panic!("{s}.{m}: {e}"));
        }
    }
}
