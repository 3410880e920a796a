//! A SQLite VFS that writes a transaction's WAL frames with one system
//! call instead of two per frame.
//!
//! SQLite's unix VFS writes each WAL frame as two `pwrite(2)`s, its 24-byte
//! header and then its page, so a commit of 30 pages costs 60 calls before
//! its `fsync`. This VFS is the default one with a different `xOpen`: the
//! files it opens with `SQLITE_OPEN_WAL` gather sequential writes in a
//! buffer and hand them to the default VFS as one write when SQLite next
//! syncs, reads, truncates, sizes, controls or closes the file (or the
//! buffer is full). Every other file, and every other call, goes straight
//! through.
//!
//! Why this is safe: nothing can observe a frame before the commit's sync.
//! Other connections learn of new frames from the WAL index, which SQLite
//! updates only after the commit's `xSync` when `synchronous` is `FULL`
//! (or `EXTRA`), and the sync writes the buffer first; the connection that
//! writes the WAL reads it only through this file, which writes the buffer
//! before any read. A crash loses only frames of a commit that had not
//! synced, which SQLite already ignores on recovery. A write error surfaces
//! at the sync instead of at the write, and fails the commit the same way.
//!
//! Use it only with `PRAGMA synchronous = FULL`: with `NORMAL` a commit
//! publishes its frames without a sync, and readers could look for them
//! before they are written.
//!
//! The crate also holds the other layer the store puts under SQLite:
//! [`page_cache`], SQLite's page cache without a walk of the whole cache
//! on commits that split a page.

#![allow(unsafe_code)]

pub mod page_cache;

use std::ffi::{CStr, c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name to open a connection with (`Connection::open_with_flags_and_vfs`).
pub const VFS_NAME: &str = "switchboard-gather";
const VFS_NAME_C: &CStr = c"switchboard-gather";

/// Most bytes held before they are handed on: the most the unix VFS writes
/// in one call (it masks a write's length with `0x1ffff`). That is 31
/// frames of 4 KiB pages; a larger commit is written in pieces of this size.
const CAPACITY: usize = 0x1ffff;

/// Registers the VFS with SQLite (once per process; later calls only
/// answer), first putting [`page_cache`] in place of SQLite's page cache
/// when nothing has initialised SQLite yet. Fails when SQLite has no
/// default VFS to build on.
pub fn register() -> Result<&'static str, rusqlite::Error> {
    static REGISTERED: OnceLock<Result<(), c_int>> = OnceLock::new();
    let registered = REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find with a null name returns the default
        // VFS, which lives as long as the process; registering a leaked
        // copy of it is what sqlite3_vfs_register expects.
        unsafe {
            // The page cache can only be replaced before SQLite initialises.
            page_cache::install();
            let rc = ffi::sqlite3_initialize();
            if rc != ffi::SQLITE_OK {
                return Err(rc);
            }
            let default = ffi::sqlite3_vfs_find(std::ptr::null());
            if default.is_null() {
                return Err(ffi::SQLITE_ERROR);
            }
            // The default VFS is kept for the files this one opens.
            let _ = DEFAULT.set(DefaultVfs(default));
            let mut vfs = std::ptr::read(default);
            vfs.szOsFile = file_size((*default).szOsFile);
            vfs.pNext = std::ptr::null_mut();
            vfs.zName = VFS_NAME_C.as_ptr();
            vfs.xOpen = Some(open);
            let rc = ffi::sqlite3_vfs_register(Box::into_raw(Box::new(vfs)), 0);
            if rc == ffi::SQLITE_OK { Ok(()) } else { Err(rc) }
        }
    });
    match registered {
        Ok(()) => Ok(VFS_NAME),
        Err(code) => Err(rusqlite::Error::SqliteFailure(ffi::Error::new(*code), None)),
    }
}

/// What a WAL file opened through this VFS has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Writes SQLite asked for.
    pub writes_asked: u64,
    /// Writes handed to the default VFS.
    pub writes_made: u64,
}

/// The counts of the WAL file of `conn`'s main database, if it is open
/// through this VFS (the WAL is opened with the first read or write).
pub fn wal_stats(conn: &rusqlite::Connection) -> Option<Stats> {
    let mut wal: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: SQLITE_FCNTL_JOURNAL_POINTER writes the WAL's sqlite3_file
    // pointer (or null) into `wal`; the connection is borrowed, so the file
    // stays open while it is read. Only files whose methods are this VFS's
    // are cast to `File`.
    unsafe {
        let rc = ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_JOURNAL_POINTER,
            (&raw mut wal).cast(),
        );
        if rc != ffi::SQLITE_OK || wal.is_null() || !std::ptr::eq((*wal).pMethods, &raw const METHODS) {
            return None;
        }
        let file = wal.cast::<File>();
        (*file).gather.as_ref().map(|gather| gather.stats)
    }
}

struct DefaultVfs(*mut ffi::sqlite3_vfs);
// SAFETY: the default VFS is a process-wide table SQLite itself shares
// between threads.
unsafe impl Send for DefaultVfs {}
unsafe impl Sync for DefaultVfs {}
static DEFAULT: OnceLock<DefaultVfs> = OnceLock::new();

/// A file of this VFS: its methods, then the default VFS's file, which
/// SQLite allocates right behind it (`szOsFile` covers both).
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    /// The buffer of a WAL file; `None` for every other file.
    gather: Option<Box<Gather>>,
}

/// Writes not yet handed on: `bytes` belong at `start` in the file.
struct Gather {
    start: i64,
    bytes: Vec<u8>,
    stats: Stats,
}

/// Where the default VFS's file starts inside ours.
const INNER_OFFSET: usize = std::mem::size_of::<File>().next_multiple_of(16);

fn file_size(inner: c_int) -> c_int {
    INNER_OFFSET as c_int + inner
}

/// SAFETY (for every function taking `file`): SQLite passes a pointer to
/// memory of `szOsFile` bytes, which `open` set up as a `File` followed by
/// the default VFS's file.
unsafe fn inner(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    unsafe { file.cast::<u8>().add(INNER_OFFSET).cast() }
}

unsafe fn methods(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    unsafe { &*(*inner(file)).pMethods }
}

unsafe fn gather<'a>(file: *mut ffi::sqlite3_file) -> Option<&'a mut Gather> {
    unsafe { (*file.cast::<File>()).gather.as_deref_mut() }
}

/// Hands the buffered bytes on in one write. The buffer is emptied either
/// way: after a failed write the commit fails, and SQLite writes its frames
/// again.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    match unsafe { gather(file) } {
        Some(gather) => unsafe { hand_on(file, gather) },
        None => ffi::SQLITE_OK,
    }
}

/// `flush` for a buffer already borrowed (the write path). `gather` is the
/// buffer of `file`; only the default VFS's part of `file` is touched.
unsafe fn hand_on(file: *mut ffi::sqlite3_file, gather: &mut Gather) -> c_int {
    if gather.bytes.is_empty() {
        return ffi::SQLITE_OK;
    }
    let Some(write) = (unsafe { methods(file) }).xWrite else { return ffi::SQLITE_IOERR_WRITE };
    gather.stats.writes_made += 1;
    let rc = unsafe { write(inner(file), gather.bytes.as_ptr().cast(), gather.bytes.len() as c_int, gather.start) };
    gather.bytes.clear();
    rc
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let Some(default) = DEFAULT.get() else { return ffi::SQLITE_ERROR };
    unsafe {
        let own = file.cast::<File>();
        std::ptr::write(own, File { base: ffi::sqlite3_file { pMethods: std::ptr::null() }, gather: None });
        let inner = inner(file);
        (*inner).pMethods = std::ptr::null();
        let Some(open) = (*default.0).xOpen else { return ffi::SQLITE_ERROR };
        let rc = open(default.0, name, inner, flags, out_flags);
        // SQLite calls xClose whenever pMethods is set, even after a failed
        // open; mirror the default VFS's choice.
        if !(*inner).pMethods.is_null() {
            (*own).base.pMethods = &raw const METHODS;
            if rc == ffi::SQLITE_OK && flags & ffi::SQLITE_OPEN_WAL != 0 {
                (*own).gather = Some(Box::new(Gather { start: 0, bytes: Vec::new(), stats: Stats::default() }));
            }
        }
        rc
    }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size_of),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

/// Calls the default VFS's method `$name` on the inner file, or answers
/// `$missing` when it has none.
macro_rules! forward {
    ($file:expr, $name:ident, $missing:expr $(, $arg:expr)*) => {
        match unsafe { methods($file) }.$name {
            Some(method) => unsafe { method(inner($file) $(, $arg)*) },
            None => $missing,
        }
    };
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    let flushed = unsafe { flush(file) };
    let closed = forward!(file, xClose, ffi::SQLITE_OK);
    unsafe {
        (*file.cast::<File>()).gather = None;
        (*file).pMethods = std::ptr::null();
    }
    if flushed == ffi::SQLITE_OK { closed } else { flushed }
}

unsafe extern "C" fn read(file: *mut ffi::sqlite3_file, buf: *mut c_void, amount: c_int, offset: i64) -> c_int {
    let rc = unsafe { flush(file) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    forward!(file, xRead, ffi::SQLITE_IOERR_READ, buf, amount, offset)
}

unsafe extern "C" fn write(file: *mut ffi::sqlite3_file, data: *const c_void, amount: c_int, offset: i64) -> c_int {
    let Some(gather) = (unsafe { gather(file) }) else {
        return forward!(file, xWrite, ffi::SQLITE_IOERR_WRITE, data, amount, offset);
    };
    gather.stats.writes_asked += 1;
    let Ok(len) = usize::try_from(amount) else { return ffi::SQLITE_IOERR_WRITE };
    // SAFETY: SQLite hands `amount` readable bytes at `data`.
    let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) };
    let end = gather.start + gather.bytes.len() as i64;
    if !gather.bytes.is_empty() {
        if offset == end && gather.bytes.len() + len <= CAPACITY {
            gather.bytes.extend_from_slice(bytes);
            return ffi::SQLITE_OK;
        }
        // A page written again within the same commit (SQLite rewrites a
        // frame in place rather than appending a second one).
        if offset >= gather.start && offset + i64::from(amount) <= end {
            let at = (offset - gather.start) as usize;
            gather.bytes[at..at + len].copy_from_slice(bytes);
            return ffi::SQLITE_OK;
        }
        let rc = unsafe { hand_on(file, gather) };
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    if len > CAPACITY {
        gather.stats.writes_made += 1;
        return forward!(file, xWrite, ffi::SQLITE_IOERR_WRITE, data, amount, offset);
    }
    gather.start = offset;
    gather.bytes.extend_from_slice(bytes);
    ffi::SQLITE_OK
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    let rc = unsafe { flush(file) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    forward!(file, xTruncate, ffi::SQLITE_IOERR_TRUNCATE, size)
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    let rc = unsafe { flush(file) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    forward!(file, xSync, ffi::SQLITE_IOERR_FSYNC, flags)
}

unsafe extern "C" fn file_size_of(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    let rc = unsafe { flush(file) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    forward!(file, xFileSize, ffi::SQLITE_IOERR_FSTAT, size)
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(file, xLock, ffi::SQLITE_IOERR_LOCK, level)
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(file, xUnlock, ffi::SQLITE_IOERR_UNLOCK, level)
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    forward!(file, xCheckReservedLock, ffi::SQLITE_IOERR_CHECKRESERVEDLOCK, out)
}

unsafe extern "C" fn file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    // A control may look at the file (its size, its handle): it sees every
    // write made so far.
    let rc = unsafe { flush(file) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    forward!(file, xFileControl, ffi::SQLITE_NOTFOUND, op, arg)
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    forward!(file, xSectorSize, 4096)
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    forward!(file, xDeviceCharacteristics, 0)
}

unsafe extern "C" fn shm_map(
    file: *mut ffi::sqlite3_file,
    page: c_int,
    page_size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    forward!(file, xShmMap, ffi::SQLITE_IOERR_SHMMAP, page, page_size, extend, out)
}

unsafe extern "C" fn shm_lock(file: *mut ffi::sqlite3_file, offset: c_int, n: c_int, flags: c_int) -> c_int {
    forward!(file, xShmLock, ffi::SQLITE_IOERR_SHMLOCK, offset, n, flags)
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    forward!(file, xShmBarrier, ());
}

unsafe extern "C" fn shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    forward!(file, xShmUnmap, ffi::SQLITE_OK, delete)
}

unsafe extern "C" fn fetch(file: *mut ffi::sqlite3_file, offset: i64, amount: c_int, out: *mut *mut c_void) -> c_int {
    let rc = unsafe { flush(file) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    if let Some(method) = unsafe { methods(file) }.xFetch {
        return unsafe { method(inner(file), offset, amount, out) };
    }
    // No mapping: SQLite then reads with xRead.
    unsafe { *out = std::ptr::null_mut() };
    ffi::SQLITE_OK
}

unsafe extern "C" fn unfetch(file: *mut ffi::sqlite3_file, offset: i64, page: *mut c_void) -> c_int {
    forward!(file, xUnfetch, ffi::SQLITE_OK, offset, page)
}
