//! The event ABI between rltop's eBPF programs and user space.
//!
//! Every record the kernel side writes into the ring buffer starts with a
//! [`RecordHeader`]. Most kinds are a [`Record`] (header + four `u64` words);
//! console markers are a [`MarkerRecord`] (header + text). The meaning of the
//! words for each [`Kind`] is documented on the kind. User space decodes these
//! into its own `Event` enum; nothing else in rltop reads raw records.
//!
//! `no_std`, `#[repr(C)]`, no padding holes that could leak kernel stack: the
//! eBPF side zero-fills what it does not set.
#![no_std]

/// Length of a task name (`TASK_COMM_LEN` in the kernel).
pub const COMM_LEN: usize = 16;

/// Bytes of console text a marker carries; longer messages are cut.
pub const MARKER_TEXT_LEN: usize = 224;

/// What a record is. The discriminants are part of the ABI: append, never renumber.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `w0..w1` = the task's comm (16 bytes, NUL padded). Emitted the first
    /// time a task is seen, and again after exec or rename. `flags` bit
    /// [`FLAG_KTHREAD`].
    Task = 1,
    /// `w0` = tree, `w1` = ino; header `dev` = device.
    Tree = 2,
    /// `w0` = tree, `w1` = lock, `w2` = start, `w3` = last; `flags` = [`Mode`].
    RlRequest = 3,
    /// `w0` = tree, `w1` = lock; with [`FLAG_QUEUE_SEQ`], `w2` = the
    /// lock's queue sequence number, read as the call returned (user space
    /// makes it an `rl_queue_seq` event before this one).
    RlAcquired = 4,
    /// `w0` = tree, `w1` = lock.
    RlTrylockFailed = 5,
    /// `w0` = tree, `w1` = lock; `w2` as for [`Kind::RlAcquired`].
    RlCancel = 6,
    /// `w0` = tree, `w1` = lock.
    RlRelease = 7,
    /// `w0` = mm; `flags` bit [`FLAG_WRITE`].
    MmapLockRequest = 8,
    /// `w0` = mm; `flags` bits [`FLAG_WRITE`], [`FLAG_SUCCESS`].
    MmapLockAcquired = 9,
    /// `w0` = mm; `flags` bit [`FLAG_WRITE`].
    MmapLockRelease = 10,
    /// `w0` = ino, `w1` = page index; header `dev`.
    Fault = 11,
    /// `w0` = ino, `w1` = page index, `w2` = folio order; header `dev`.
    PageAdd = 12,
    /// `w0` = io (kiocb address), `w1` = ino, `w2` = pos, `w3` = len;
    /// header `dev`; `flags` bit [`FLAG_WRITE`].
    DioBegin = 13,
    /// `w0` = io, `w1` = ret (i64).
    DioEnd = 14,
    /// `w0` = ino, `w1` = pos, `w2` = len, `w3` = id (when `flags` has
    /// [`FLAG_ID`]); header `dev`; `flags` bits [`OP_MASK`] = a [`FsOp`].
    PunchBegin = 15,
    /// `w0` = ret (i64), `w1` = id (when `flags` has [`FLAG_ID`]).
    PunchEnd = 16,
    /// `w0` = ino, `w1` = new size in bytes, `w2` = id (when `flags` has
    /// [`FLAG_ID`]); header `dev`.
    TruncateBegin = 17,
    /// `w0` = ret (i64), `w1` = id (when `flags` has [`FLAG_ID`]).
    TruncateEnd = 18,
    /// `w0` = lock address, `w1` = flags (`LCB_F_*`).
    ContentionBegin = 19,
    /// `w0` = lock address, `w1` = ret (i64).
    ContentionEnd = 20,
    /// A [`MarkerRecord`]: console text.
    Marker = 21,
    /// Synthesised in user space from the per-CPU drop counters; never in the ring.
    Lost = 22,
    /// The task `tid` exited.
    Exit = 23,
    /// In-kernel ordering check: the task asked for mmap_lock while it held
    /// range locks. `w0` = mm, `w1` = kernel stack id in the `STACKS` map
    /// (negative: no stack), `w2` = range locks held; `flags` bit [`FLAG_WRITE`].
    OrderEvidence = 24,
    /// The task doing a punch, zero, collapse, insert or truncate holds the
    /// mapping's `invalidate_lock` exclusively and has not yet started
    /// invalidating the page cache of pages `w1..=w2`. `w0` = ino, `w3` =
    /// id of the operation; header `dev`.
    InvalidateBegin = 25,
    /// The same task still holds that lock and has freed the range's blocks.
    /// `w0` = ino, `w1` = id of the operation; header `dev`.
    InvalidateEnd = 26,
    // 25..=29: the fsops helper's kinds (issue 14).
    /// A [`FileRecord`]: a traced file's identity, path, filesystem and the
    /// addresses of its page-cache locks.
    File = 30,
    /// `w0` = ino, `w1` = [`LockClass`]; header `dev`; `flags` bit
    /// [`FLAG_WRITE`], and [`FLAG_TRY_KNOWN`] with [`FLAG_TRY`] when the
    /// source knows whether it is a trylock.
    FileLockRequest = 31,
    /// As [`Kind::FileLockRequest`], plus `flags` bit [`FLAG_SUCCESS`].
    FileLockAcquired = 32,
    /// As [`Kind::FileLockRequest`] (without the try bits).
    FileLockRelease = 33,
    /// A page fault while the task held locks ranked below mmap_lock:
    /// `w0` = faulting address, `w1` = kernel stack id in `STACKS`
    /// (negative: none), `w2` = such locks held, `w3` = the hardware error
    /// code; `flags` bit [`FLAG_USER`] for a fault from user mode.
    PageFault = 34,
    /// Several page-cache lock events of one call in one record (user space
    /// expands it): `w0` = ino, `w1` = a `LOCK_OP_*`, `w2` = the `i_rwsem`
    /// mode and `w3` the `invalidate_lock` mode (`LOCK_MODE_*`); header `dev`.
    FileLockOps = 35,
    /// `range_downgrade_write`: the held write lock becomes a read lock in
    /// one step, keeping its place in the queue. `w0` = tree, `w1` = lock.
    RlDowngrade = 36,
    /// The tree was initialised (its init function ran): every lock of it
    /// since is in the trace. `w0` = tree.
    RlTreeInit = 37,
    /// The request entered the tree's queue: the probe on the insertion
    /// function the profile names (`interval_tree_insert`), inside the
    /// lock call and under the tree's lock, so these are in queue order.
    /// `w0` = tree, `w1` = lock.
    RlQueued = 38,
    /// The task forked: `w0` = the child's tid, `w1` = its tgid. Only in the
    /// process tree of the command rltop runs (`record -- CMD`).
    Fork = 39,
}

/// [`Kind::FileLockOps`] operations.
/// Requests (not trylocks) of each lock with a mode, i_rwsem first.
pub const LOCK_OP_LOCK: u64 = 0;
/// Trylock requests of each lock with a mode.
pub const LOCK_OP_TRYLOCK: u64 = 1;
/// Releases of each lock with a mode, i_rwsem first.
pub const LOCK_OP_UNLOCK: u64 = 2;
/// Downgrades (write -> read) of each lock with a mode, invalidate_lock
/// first: a write release, a read request and its acquisition each.
pub const LOCK_OP_DEMOTE: u64 = 3;
/// A successful trylock: request (try) and acquisition of each lock with a mode.
pub const LOCK_OP_TRYLOCK_OK: u64 = 4;
/// [`Kind::FileLockOps`] modes.
pub const LOCK_MODE_NONE: u64 = 0;
pub const LOCK_MODE_READ: u64 = 1;
pub const LOCK_MODE_WRITE: u64 = 2;

impl Kind {
    /// Decodes a kind byte; `None` for bytes no kind has.
    pub fn from_u8(v: u8) -> Option<Kind> {
        use Kind::*;
        Some(match v {
            1 => Task,
            2 => Tree,
            3 => RlRequest,
            4 => RlAcquired,
            5 => RlTrylockFailed,
            6 => RlCancel,
            7 => RlRelease,
            8 => MmapLockRequest,
            9 => MmapLockAcquired,
            10 => MmapLockRelease,
            11 => Fault,
            12 => PageAdd,
            13 => DioBegin,
            14 => DioEnd,
            15 => PunchBegin,
            16 => PunchEnd,
            17 => TruncateBegin,
            18 => TruncateEnd,
            19 => ContentionBegin,
            20 => ContentionEnd,
            21 => Marker,
            22 => Lost,
            23 => Exit,
            24 => OrderEvidence,
            25 => InvalidateBegin,
            26 => InvalidateEnd,
            30 => File,
            31 => FileLockRequest,
            32 => FileLockAcquired,
            33 => FileLockRelease,
            34 => PageFault,
            35 => FileLockOps,
            36 => RlDowngrade,
            37 => RlTreeInit,
            38 => RlQueued,
            39 => Fork,
            _ => return None,
        })
    }
}

/// `flags` bit of [`Kind::Task`]: a kernel thread (`PF_KTHREAD`).
pub const FLAG_KTHREAD: u8 = 1;
/// `flags` bit: the mmap_lock or DIO operation is a write.
pub const FLAG_WRITE: u8 = 1;
/// `flags` bit: the mmap_lock acquisition succeeded.
pub const FLAG_SUCCESS: u8 = 2;
/// `flags` bit of [`Kind::PageAdd`]: this kernel's tracepoint has no folio
/// order, so the size of what was added is unknown.
pub const FLAG_NO_ORDER: u8 = 4;
/// `flags` bit of punch and truncate records: the record carries an id.
pub const FLAG_ID: u8 = 0x80;
/// `flags` bits of [`Kind::PunchBegin`] holding its [`FsOp`].
pub const OP_MASK: u8 = 0x03;

/// What a [`Kind::PunchBegin`] does (its `flags & OP_MASK`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsOp {
    Punch = 0,
    Zero = 1,
    Collapse = 2,
    Insert = 3,
}

/// `flags` bit of [`Kind::FileLockRequest`]: the source knows whether the
/// request is a trylock; [`FLAG_TRY`] then says whether it is.
pub const FLAG_TRY_KNOWN: u8 = 4;
pub const FLAG_TRY: u8 = 8;
/// `flags` bit of [`Kind::PageFault`]: the fault came from user mode.
pub const FLAG_USER: u8 = 1;
/// `flags` bit of [`Kind::RlAcquired`] and [`Kind::RlCancel`]: `w2` is the
/// lock's queue sequence number (the profile's `sequence` member, set by
/// the lock function under the tree's lock as it inserted). One record for
/// both: half the ring traffic of a second record, and no second copy of
/// the emit code in the return programs.
pub const FLAG_QUEUE_SEQ: u8 = 1;

/// The page-cache lock classes of a file, in `w1` of the `FileLock*` kinds.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockClass {
    /// `inode->i_rwsem`.
    IRwsem = 0,
    /// `inode->i_mapping->invalidate_lock`.
    InvalidateLock = 1,
}

/// Range lock modes, in `flags` of [`Kind::RlRequest`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Excl = 0,
    Read = 1,
    Write = 2,
}

/// Common start of every ring-buffer record. 24 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordHeader {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC, nanoseconds.
    pub ts: u64,
    /// Kernel pid of the current task (the thread id).
    pub tid: u32,
    /// Kernel tgid of the current task (the process id).
    pub pid: u32,
    /// A [`Kind`] discriminant.
    pub kind: u8,
    /// Kind-specific bits ([`FLAG_WRITE`], [`FLAG_SUCCESS`], a [`Mode`]).
    pub flags: u8,
    /// CPU the record was written on.
    pub cpu: u16,
    /// Kernel `dev_t` (`major << 20 | minor`) for file events, else 0.
    pub dev: u32,
}

/// The record of every kind but [`Kind::Marker`]. 56 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub hdr: RecordHeader,
    pub w: [u64; 4],
}

/// A console message ([`Kind::Marker`]). 256 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkerRecord {
    pub hdr: RecordHeader,
    /// Bytes of `text` that are valid.
    pub len: u32,
    pub _pad: u32,
    pub text: [u8; MARKER_TEXT_LEN],
}

/// Bytes of a [`FileRecord`]'s filesystem type name.
pub const FS_NAME_LEN: usize = 16;
/// Longest path component the eBPF side copies, NUL included; a longer
/// name is cut (and [`PATH_CUT`] set).
pub const NAME_BYTES: usize = 56;
/// Deepest the eBPF side walks up the dentry tree: one slot per level.
pub const PATH_DEPTH: usize = 16;
/// [`FileRecord::path_flags`]: the walk reached the filesystem's root, so
/// the components are the whole path within the filesystem.
pub const PATH_COMPLETE: u32 = 1;
/// [`FileRecord::path_flags`]: a component was cut or did not fit.
pub const PATH_CUT: u32 = 2;

/// A traced file ([`Kind::File`]), written once per inode. 968 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileRecord {
    /// `dev` is the inode's device.
    pub hdr: RecordHeader,
    pub ino: u64,
    /// Kernel addresses of `inode->i_rwsem` and of the mapping's
    /// `invalidate_lock` (0: unknown).
    pub i_rwsem: u64,
    pub invalidate_lock: u64,
    /// `inode->i_sb->s_type->name`, NUL padded.
    pub fs: [u8; FS_NAME_LEN],
    /// Slots of `path` in use.
    pub depth: u32,
    /// [`PATH_COMPLETE`], [`PATH_CUT`].
    pub path_flags: u32,
    /// Path components from the file up to (not including) the
    /// filesystem's root, one NUL-terminated name per slot: slots `c`, `b`,
    /// `a` are `/a/b/c`. Fixed slots keep the verifier's work per level
    /// constant. No slot is used when the inode has no dentry (yet).
    pub path: [[u8; NAME_BYTES]; PATH_DEPTH],
}

/// Size of a [`FileRecord`] in bytes.
pub const FILE_RECORD_SIZE: usize = core::mem::size_of::<FileRecord>();

/// Most records a CPU stages before handing them to the ring as one [`Batch`].
pub const BATCH_LEN: usize = 8;

/// Records of one CPU, in order, handed to the ring buffer as one entry:
/// one ring reservation per batch instead of per record. 456 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// Valid records in `records`.
    pub n: u32,
    pub _pad: u32,
    pub records: [Record; BATCH_LEN],
}

/// A CPU's staging area (per-CPU map value).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Staging {
    /// Set while a program on this CPU appends; a program that interrupts
    /// it (an irq-context tracepoint) writes straight to the ring instead.
    pub busy: u32,
    pub _pad: u32,
    /// Timestamp of the oldest staged record.
    pub first_ts: u64,
    pub batch: Batch,
}

/// How records are staged per CPU (a global set by the loader).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batching {
    /// Records per batch, 1..=BATCH_LEN; 1 writes every record straight to
    /// the ring (used when user space cannot flush idle CPUs).
    pub len: u32,
    pub _pad: u32,
    /// A batch older than this at the next record is handed over anyway.
    pub flush_ns: u64,
}

/// Size of a [`Batch`] in bytes: the ring entries of this length are batches.
pub const BATCH_SIZE: usize = core::mem::size_of::<Batch>();

/// Size of a [`Record`] in bytes.
pub const RECORD_SIZE: usize = core::mem::size_of::<Record>();
/// Size of a [`MarkerRecord`] in bytes.
pub const MARKER_RECORD_SIZE: usize = core::mem::size_of::<MarkerRecord>();

const _: () = assert!(core::mem::size_of::<RecordHeader>() == 24);
const _: () = assert!(RECORD_SIZE == 56);
const _: () = assert!(MARKER_RECORD_SIZE == 256);
const _: () = assert!(BATCH_SIZE == 456);
// Ring entries are told apart by their length: a file record must not
// look like a batch.
const _: () = assert!(FILE_RECORD_SIZE == 968);
const _: () = assert!(core::mem::size_of::<FileLockLayout>() == 152);

/// Byte offsets of tracepoint fields, read from tracefs `format` files at
/// start-up and passed to the eBPF programs as one global. An offset of
/// [`NO_FIELD`] means the field is absent on this kernel; the program that
/// needs it is then not attached.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TpOffsets {
    pub add_ino: u32,
    pub add_dev: u32,
    pub add_index: u32,
    pub add_order: u32,
    pub punch_dev: u32,
    pub punch_ino: u32,
    pub punch_offset: u32,
    pub punch_len: u32,
    pub fallocate_ret: u32,
    pub truncate_dev: u32,
    pub truncate_ino: u32,
}

/// Bytes at the start of a formatted tracepoint record that the eBPF side
/// copies in one read; every field it uses must lie inside them.
pub const TP_PREFIX: usize = 64;

/// Offset value meaning "this field does not exist here".
pub const NO_FIELD: u32 = u32::MAX;

impl TpOffsets {
    /// Every offset absent.
    pub const NONE: TpOffsets = TpOffsets {
        add_ino: NO_FIELD,
        add_dev: NO_FIELD,
        add_index: NO_FIELD,
        add_order: NO_FIELD,
        punch_dev: NO_FIELD,
        punch_ino: NO_FIELD,
        punch_offset: NO_FIELD,
        punch_len: NO_FIELD,
        fallocate_ret: NO_FIELD,
        truncate_dev: NO_FIELD,
        truncate_ino: NO_FIELD,
    };
}

/// Kernel struct member offsets from BTF, for the raw tracepoints that get C
/// pointers (`struct kiocb *`, `struct inode *`) instead of a formatted record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `struct kiocb`: `ki_filp`, `ki_pos`.
    pub kiocb_filp: u32,
    pub kiocb_pos: u32,
    /// `struct file`: `f_inode`.
    pub file_inode: u32,
    /// `struct inode`: `i_ino`, `i_sb`, `i_size`.
    pub inode_ino: u32,
    pub inode_sb: u32,
    pub inode_size: u32,
    /// `struct super_block`: `s_dev`.
    pub sb_dev: u32,
    /// `struct iov_iter`: `count`, and `data_source` (true for writes).
    pub iter_count: u32,
    pub iter_data_source: u32,
    /// For the file kprobes (kernels without the file tracepoints):
    /// `struct vm_fault`: `vma`, `pgoff`; `struct vm_area_struct`:
    /// `vm_file`; `struct iomap_dio`: `iocb`.
    pub vmf_vma: u32,
    pub vmf_pgoff: u32,
    pub vma_file: u32,
    pub dio_iocb: u32,
    /// `struct address_space`: `host` (raw `mm_filemap_fault`).
    pub mapping_host: u32,
    /// Arguments before `write` in the raw `mmap_lock_*` tracepoints
    /// after `mm`: 1 on 6.1 (its `memcg_path`), else 0.
    pub mmap_arg_shift: u32,
    /// For the BTF-typed page-cache add: `struct folio`'s `mapping`,
    /// `index`, `flags` and `_flags_1` (whose low byte is a large folio's
    /// order, `folio_large_order()`), and the bit number of `PG_head` in
    /// `flags` (enum `pageflags`: a folio is large when it is set).
    pub folio_mapping: u32,
    pub folio_index: u32,
    pub folio_flags: u32,
    pub folio_flags1: u32,
    pub folio_head_bit: u32,
    /// 6.1 to 6.5: `struct folio`'s `_folio_order`, a large folio's order
    /// in its own byte (NO_FIELD where `_flags_1` holds it).
    pub folio_order: u32,
    /// `struct task_struct`: `pid` (the tid), for the raw task life-cycle
    /// tracepoints.
    pub task_pid: u32,
    /// `struct task_struct`: `tgid`, to tell a forked process from a thread.
    pub task_tgid: u32,
    /// `struct task_struct`: `flags` (`PF_*`), to tell a kernel thread;
    /// optional (NO_FIELD: not told).
    pub task_flags: u32,
}

impl KernelOffsets {
    pub const NONE: KernelOffsets = KernelOffsets {
        kiocb_filp: NO_FIELD,
        kiocb_pos: NO_FIELD,
        file_inode: NO_FIELD,
        inode_ino: NO_FIELD,
        inode_sb: NO_FIELD,
        inode_size: NO_FIELD,
        sb_dev: NO_FIELD,
        iter_count: NO_FIELD,
        iter_data_source: NO_FIELD,
        vmf_vma: NO_FIELD,
        vmf_pgoff: NO_FIELD,
        vma_file: NO_FIELD,
        dio_iocb: NO_FIELD,
        mapping_host: NO_FIELD,
        mmap_arg_shift: 0,
        folio_mapping: NO_FIELD,
        folio_index: NO_FIELD,
        folio_flags: NO_FIELD,
        folio_flags1: NO_FIELD,
        folio_head_bit: NO_FIELD,
        folio_order: NO_FIELD,
        task_pid: NO_FIELD,
        task_tgid: NO_FIELD,
        task_flags: NO_FIELD,
    };
}

/// What the filesystem-operation programs (`rl-ebpf/src/fsops.rs`) read,
/// resolved by user space at start-up (`rl-user/src/probe/fsops.rs`): BTF
/// member offsets, tracefs field offsets of the formatted events they use,
/// flag values from those events' `print fmt`, and kallsyms addresses.
/// [`NO_FIELD`] marks what this kernel lacks; the programs needing it are
/// then not attached.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsopsLayout {
    /// BTF: `inode.i_mapping`, `address_space.invalidate_lock`,
    /// `rw_semaphore.owner` and `.count`, `super_block.s_magic`.
    pub inode_mapping: u32,
    pub mapping_invalidate_lock: u32,
    pub rwsem_owner: u32,
    pub rwsem_count: u32,
    pub sb_magic: u32,
    /// BTF: `xfs_inode.i_vnode` (the VFS inode embedded in XFS's).
    pub xfs_vnode: u32,
    /// BTF: `inode.i_nlink` (a deleted inode's blocks are freed by a
    /// truncate that is no operation of a user's).
    pub inode_nlink: u32,
    /// `IOMAP_DIRECT` (iomap_iter flags, from its `print fmt`; 0: unknown).
    pub iomap_direct: u32,
    /// BTF: `task_struct.files`, `files_struct.fdt`, `fdtable.fd` and
    /// `.max_fds`: a syscall's fd to its file.
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdt_fd: u32,
    pub fdt_max_fds: u32,
    /// BTF: `kiocb.ki_flags`.
    pub kiocb_flags: u32,
    /// tracefs: `syscalls:sys_enter_fallocate` fd, mode, offset, len.
    pub falloc_fd: u32,
    pub falloc_mode: u32,
    pub falloc_offset: u32,
    pub falloc_len: u32,
    /// tracefs: `syscalls:sys_enter_ioctl` fd, cmd, arg.
    pub ioctl_fd: u32,
    pub ioctl_cmd: u32,
    pub ioctl_arg: u32,
    /// tracefs: `syscalls:sys_enter_ftruncate` fd, length; `sys_enter_truncate` length.
    pub ftrunc_fd: u32,
    pub ftrunc_len: u32,
    pub trunc_len: u32,
    /// tracefs: dev and ino of the formatted end events (`iomap:iomap_iter`,
    /// `xfs:xfs_iunlock`, `xfs:xfs_itruncate_extents_end`,
    /// `ext4:ext4_ext_remove_space_done`; the same offsets on 6.18, checked
    /// per event by user space), and the flags of the first two.
    pub ev_dev: u32,
    pub ev_ino: u32,
    pub iter_flags: u32,
    pub iunlock_flags: u32,
    /// Flag values from `print fmt`: `IOMAP_ZERO` (iomap_iter flags),
    /// `XFS_MMAPLOCK_EXCL` (xfs_iunlock lock_flags), `IOCB_NOWAIT`
    /// (iomap_dio_rw_begin ki_flags).
    pub iomap_zero: u32,
    pub xfs_mmaplock_excl: u32,
    pub iocb_nowait: u32,
    /// Which (filesystem, operation) pairs get invalidation windows: bit
    /// `8 * fs + op`, fs 0 = ext4, 1 = XFS; op a [`FsOp`] or 4 = truncate.
    pub windows: u32,
    /// Filesystems whose own tracepoints are attached (bit 0 ext4, bit 1
    /// XFS): the syscall stand-in leaves their files alone.
    pub own: u32,
    /// log2 of the page size (`sysconf(_SC_PAGESIZE)`), for window ranges.
    pub page_shift: u32,
    /// kallsyms: `ext4_setattr` and the next symbol (its end).
    pub ext4_setattr: u64,
    pub ext4_setattr_end: u64,
}

/// [`FsopsLayout::own`] bits.
pub const OWN_EXT4: u32 = 1;
pub const OWN_XFS: u32 = 2;
/// [`FsopsLayout::windows`] operation number of truncate.
pub const WINDOW_TRUNCATE: u32 = 4;

impl FsopsLayout {
    pub const NONE: FsopsLayout = FsopsLayout {
        inode_mapping: NO_FIELD,
        mapping_invalidate_lock: NO_FIELD,
        rwsem_owner: NO_FIELD,
        rwsem_count: NO_FIELD,
        sb_magic: NO_FIELD,
        xfs_vnode: NO_FIELD,
        inode_nlink: NO_FIELD,
        iomap_direct: 0,
        task_files: NO_FIELD,
        files_fdt: NO_FIELD,
        fdt_fd: NO_FIELD,
        fdt_max_fds: NO_FIELD,
        kiocb_flags: NO_FIELD,
        falloc_fd: NO_FIELD,
        falloc_mode: NO_FIELD,
        falloc_offset: NO_FIELD,
        falloc_len: NO_FIELD,
        ioctl_fd: NO_FIELD,
        ioctl_cmd: NO_FIELD,
        ioctl_arg: NO_FIELD,
        ftrunc_fd: NO_FIELD,
        ftrunc_len: NO_FIELD,
        trunc_len: NO_FIELD,
        ev_dev: NO_FIELD,
        ev_ino: NO_FIELD,
        iter_flags: NO_FIELD,
        iunlock_flags: NO_FIELD,
        iomap_zero: 0,
        xfs_mmaplock_excl: 0,
        iocb_nowait: 0,
        windows: 0,
        own: 0,
        page_shift: 12,
        ext4_setattr: 0,
        ext4_setattr_end: 0,
    };
}

/// How the range-lock kprobes of a profile read their arguments (set by the
/// loader from the profile; see rl-user's `probe::profile`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeLockLayout {
    /// Which function argument (0..=5) is the tree and which the lock.
    pub tree_arg: u32,
    pub lock_arg: u32,
    /// Byte offsets of the range's first and last values in the lock struct
    /// (from BTF when the kernel or module has it, else the profile).
    pub start_off: u32,
    pub last_off: u32,
    /// Right shift turning those values into page indices (0: already pages,
    /// 12: bytes on 4 KiB pages).
    pub shift: u32,
    /// 1 when a range-lock profile is attached: held locks are counted per
    /// task and mmap_lock requests checked against them.
    pub order_check: u32,
    /// How a tree leads to its inode, for `tree` events: 0 = it does not;
    /// 1 = the tree is a member at `tree_member_off` of a struct holding a
    /// `struct inode *` at `inode_off`; 2 = that struct embeds the inode
    /// at `inode_off`.
    pub tree_inode: u32,
    pub tree_member_off: u32,
    pub inode_off: u32,
    /// Offset of the queue node in the lock struct: the insertion probe
    /// (`interval_tree_insert(node, root)`) finds the lock at node minus it.
    pub insert_node_off: u32,
    /// Offset of the lock's queue sequence number (a u64 the lock function
    /// sets as it inserts), or [`NO_FIELD`]: read at the call's return.
    pub seq_off: u32,
    pub _pad: u32,
}

/// [`RangeLockLayout::tree_inode`] values.
pub const TREE_INODE_NONE: u32 = 0;
pub const TREE_INODE_POINTER: u32 = 1;
pub const TREE_INODE_EMBEDDED: u32 = 2;

impl RangeLockLayout {
    pub const NONE: RangeLockLayout = RangeLockLayout {
        tree_arg: 0,
        lock_arg: 1,
        start_off: NO_FIELD,
        last_off: NO_FIELD,
        shift: 0,
        order_check: 0,
        tree_inode: TREE_INODE_NONE,
        tree_member_off: 0,
        inode_off: 0,
        insert_node_off: 0,
        seq_off: NO_FIELD,
        _pad: 0,
    };
}

/// How the page-cache lock programs (rl-ebpf `flock.rs`) read the kernel:
/// BTF member offsets, tracefs field offsets, XFS lock flag bits and the
/// kernel's lock and sched text ranges, all resolved by user space at
/// start-up, and which parts are on. [`NO_FIELD`] marks an absent offset.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileLockLayout {
    /// 1: learn files (`file` records and the lock-address map).
    pub learn: u32,
    /// 1: name contention callers.
    pub caller: u32,
    // BTF: struct inode, super_block, file_system_type, address_space,
    // folio, kiocb, file, dentry, task_struct, rw_semaphore.
    pub inode_rwsem: u32,
    pub inode_mapping: u32,
    pub inode_ino: u32,
    pub inode_sb: u32,
    pub inode_dentry: u32,
    pub sb_dev: u32,
    pub sb_type: u32,
    pub fstype_name: u32,
    pub mapping_host: u32,
    pub mapping_invalidate_lock: u32,
    pub folio_mapping: u32,
    pub kiocb_filp: u32,
    pub file_inode: u32,
    /// `dentry.d_u.d_alias`, `dentry.d_parent`, and `dentry.d_name.name`
    /// (the two offsets added).
    pub dentry_alias: u32,
    pub dentry_parent: u32,
    pub dentry_name: u32,
    pub task_pagefault_disabled: u32,
    /// `rw_semaphore.dep_map` (lockdep kernels only).
    pub rwsem_dep_map: u32,
    // tracefs: xfs:xfs_ilock (and its siblings), lock:lock_acquire,
    // lock:lock_release.
    pub xfs_dev: u32,
    pub xfs_ino: u32,
    pub xfs_flags: u32,
    pub lockdep_flags: u32,
    pub lockdep_addr: u32,
    pub lockdep_release_addr: u32,
    /// XFS lock flag bits (from the xfs_ilock print format).
    pub xfs_iolock_excl: u32,
    pub xfs_iolock_shared: u32,
    pub xfs_mmaplock_excl: u32,
    pub xfs_mmaplock_shared: u32,
    /// `__lock_text_start..__lock_text_end`, `__sched_text_start..end`.
    pub lock_text_start: u64,
    pub lock_text_end: u64,
    pub sched_text_start: u64,
    pub sched_text_end: u64,
}

impl FileLockLayout {
    pub const NONE: FileLockLayout = FileLockLayout {
        learn: 0,
        caller: 0,
        inode_rwsem: NO_FIELD,
        inode_mapping: NO_FIELD,
        inode_ino: NO_FIELD,
        inode_sb: NO_FIELD,
        inode_dentry: NO_FIELD,
        sb_dev: NO_FIELD,
        sb_type: NO_FIELD,
        fstype_name: NO_FIELD,
        mapping_host: NO_FIELD,
        mapping_invalidate_lock: NO_FIELD,
        folio_mapping: NO_FIELD,
        kiocb_filp: NO_FIELD,
        file_inode: NO_FIELD,
        dentry_alias: NO_FIELD,
        dentry_parent: NO_FIELD,
        dentry_name: NO_FIELD,
        task_pagefault_disabled: NO_FIELD,
        rwsem_dep_map: NO_FIELD,
        xfs_dev: NO_FIELD,
        xfs_ino: NO_FIELD,
        xfs_flags: NO_FIELD,
        lockdep_flags: NO_FIELD,
        lockdep_addr: NO_FIELD,
        lockdep_release_addr: NO_FIELD,
        xfs_iolock_excl: 0,
        xfs_iolock_shared: 0,
        xfs_mmaplock_excl: 0,
        xfs_mmaplock_shared: 0,
        lock_text_start: 0,
        lock_text_end: 0,
        sched_text_start: 0,
        sched_text_end: 0,
    };
}

/// In-kernel filters. A zero field means "no filter on this".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// tgid of rltop itself: never traced.
    pub self_tgid: u32,
    /// 1 when only tgids in the `PIDS` map (and their children) are traced.
    pub pid_filter: u32,
    /// Kernel `dev_t` to keep, or 0.
    pub dev: u32,
    pub _pad: u32,
    /// Inode number to keep, or 0.
    pub ino: u64,
}

/// Ring-buffer fill level (bytes) above which a record forces a wake-up of
/// the reader. Below it records are submitted without a wake-up and the
/// reader polls on a timer: one wake-up per batch, not per event.
pub const WAKEUP_BYTES: u64 = 256 * 1024;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)], Copy, made of integers, and have
    // no padding bytes, so any bit pattern is a valid value.
    unsafe impl aya::Pod for super::TpOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KernelOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Filter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RangeLockLayout {}
    // SAFETY: as above (the u32 fields come in an even number before the u64s).
    unsafe impl aya::Pod for super::FileLockLayout {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Record {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Batching {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Staging {}
    // SAFETY: as above (the u64 fields sit at 8-byte aligned offsets).
    unsafe impl aya::Pod for super::FsopsLayout {}
}
const _: () = assert!(core::mem::size_of::<FsopsLayout>() == 152);
