//! SQLite's own page cache, without the walk of the whole cache that some
//! commits pay for.
//!
//! When `balance_nonroot` reorders sibling pages it swaps two of them
//! through a temporary page number, the page that holds SQLite's lock byte
//! (never a database page: 262,145 with 4 KiB pages). The default cache
//! remembers that number as the highest it has held. At the end of the
//! transaction the pager drops every cached page past the database's end,
//! and the default cache, believing it holds pages far past the end, walks
//! all of its hash slots to find them. With a few thousand pages cached a
//! walk takes tens to hundreds of microseconds, inside the commit, and it
//! happens on most commits that split a page.
//!
//! This cache is the default one with the borrowed number translated: the
//! swap parks its page under number 0, which no page ever has (page numbers
//! start at 1), so the highest number the default cache remembers stays a
//! real page's and the end of a transaction looks only at the slots past
//! the database's end. Every call is the default cache's; only the key of a
//! page under the borrowed number changes.
//!
//! It is installed process-wide, before SQLite initialises ([`install`],
//! from [`crate::register`]); once SQLite is initialised the page cache can
//! no longer be replaced and the default one stays.

use std::ffi::{c_int, c_uint};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rusqlite::ffi;

/// The offset of SQLite's lock byte (`PENDING_BYTE`, 1 GiB).
const PENDING_BYTE: c_uint = 0x4000_0000;

/// The key a page under the borrowed number has in the default cache.
const PARKED: c_uint = 0;

/// Whether this cache replaced the default one in this process.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Pages parked under [`PARKED`] so far in this process.
static PARKS: AtomicU64 = AtomicU64::new(0);

/// Whether SQLite in this process uses this page cache (it does when the
/// first thing to touch SQLite was [`crate::register`]).
pub fn installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// How many times a page was moved to the borrowed number and parked
/// instead (each would have made a later commit walk the whole cache).
pub fn parked_pages() -> u64 {
    PARKS.load(Ordering::Relaxed)
}

/// The default cache's methods that this one calls.
struct Default {
    create: unsafe extern "C" fn(c_int, c_int, c_int) -> *mut ffi::sqlite3_pcache,
    cachesize: unsafe extern "C" fn(*mut ffi::sqlite3_pcache, c_int),
    pagecount: unsafe extern "C" fn(*mut ffi::sqlite3_pcache) -> c_int,
    fetch: unsafe extern "C" fn(*mut ffi::sqlite3_pcache, c_uint, c_int) -> *mut ffi::sqlite3_pcache_page,
    unpin: unsafe extern "C" fn(*mut ffi::sqlite3_pcache, *mut ffi::sqlite3_pcache_page, c_int),
    rekey: unsafe extern "C" fn(*mut ffi::sqlite3_pcache, *mut ffi::sqlite3_pcache_page, c_uint, c_uint),
    truncate: unsafe extern "C" fn(*mut ffi::sqlite3_pcache, c_uint),
    destroy: unsafe extern "C" fn(*mut ffi::sqlite3_pcache),
    shrink: unsafe extern "C" fn(*mut ffi::sqlite3_pcache),
}

static DEFAULT: OnceLock<Default> = OnceLock::new();

/// One cache: the default cache's, and the page number it must not see.
struct Cache {
    inner: *mut ffi::sqlite3_pcache,
    borrowed: c_uint,
}

impl Cache {
    fn key(&self, key: c_uint) -> c_uint {
        if key == self.borrowed { PARKED } else { key }
    }
}

/// Replaces SQLite's page cache with this one. Call it before anything
/// else touches SQLite; answers whether it was installed (not when SQLite
/// was already initialised, or when called a second time).
pub(crate) fn install() -> bool {
    // SAFETY: sqlite3_config is called before SQLite is initialised (it
    // refuses with SQLITE_MISUSE otherwise) with the argument type each
    // option documents; PCACHE2 copies the methods it is given.
    unsafe {
        let mut methods: ffi::sqlite3_pcache_methods2 = std::mem::zeroed();
        if ffi::sqlite3_config(ffi::SQLITE_CONFIG_GETPCACHE2, &raw mut methods) != ffi::SQLITE_OK {
            return false;
        }
        let (
            Some(create),
            Some(cachesize),
            Some(pagecount),
            Some(fetch),
            Some(unpin),
            Some(rekey),
            Some(truncate),
            Some(destroy),
            Some(shrink),
        ) = (
            methods.xCreate,
            methods.xCachesize,
            methods.xPagecount,
            methods.xFetch,
            methods.xUnpin,
            methods.xRekey,
            methods.xTruncate,
            methods.xDestroy,
            methods.xShrink,
        )
        else {
            return false;
        };
        let default = Default { create, cachesize, pagecount, fetch, unpin, rekey, truncate, destroy, shrink };
        if DEFAULT.set(default).is_err() {
            return false;
        }
        // The default cache's own set-up and pArg are kept as they are.
        methods.xCreate = Some(create_cache);
        methods.xCachesize = Some(cachesize_of);
        methods.xPagecount = Some(pagecount_of);
        methods.xFetch = Some(fetch_page);
        methods.xUnpin = Some(unpin_page);
        methods.xRekey = Some(rekey_page);
        methods.xTruncate = Some(truncate_cache);
        methods.xDestroy = Some(destroy_cache);
        methods.xShrink = Some(shrink_cache);
        let installed = ffi::sqlite3_config(ffi::SQLITE_CONFIG_PCACHE2, &raw const methods) == ffi::SQLITE_OK;
        INSTALLED.store(installed, Ordering::Relaxed);
        installed
    }
}

/// The default cache's methods; set before any of this cache's methods can
/// be called, so the other branch never runs.
fn default() -> &'static Default {
    match DEFAULT.get() {
        Some(default) => default,
        None => std::process::abort(),
    }
}

/// SAFETY (for every method taking `cache`): SQLite passes back a pointer
/// that `create_cache` returned and `destroy_cache` has not yet freed.
unsafe fn cache<'a>(cache: *mut ffi::sqlite3_pcache) -> &'a Cache {
    unsafe { &*cache.cast::<Cache>() }
}

unsafe extern "C" fn create_cache(page_size: c_int, extra: c_int, purgeable: c_int) -> *mut ffi::sqlite3_pcache {
    let inner = unsafe { (default().create)(page_size, extra, purgeable) };
    if inner.is_null() {
        return inner;
    }
    let borrowed = PENDING_BYTE / page_size.max(1) as c_uint + 1;
    Box::into_raw(Box::new(Cache { inner, borrowed })).cast()
}

unsafe extern "C" fn cachesize_of(p: *mut ffi::sqlite3_pcache, pages: c_int) {
    unsafe { (default().cachesize)(cache(p).inner, pages) }
}

unsafe extern "C" fn pagecount_of(p: *mut ffi::sqlite3_pcache) -> c_int {
    unsafe { (default().pagecount)(cache(p).inner) }
}

unsafe extern "C" fn fetch_page(
    p: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    let cache = unsafe { cache(p) };
    unsafe { (default().fetch)(cache.inner, cache.key(key), create) }
}

unsafe extern "C" fn unpin_page(p: *mut ffi::sqlite3_pcache, page: *mut ffi::sqlite3_pcache_page, discard: c_int) {
    unsafe { (default().unpin)(cache(p).inner, page, discard) }
}

unsafe extern "C" fn rekey_page(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old: c_uint,
    new: c_uint,
) {
    let cache = unsafe { cache(p) };
    if new == cache.borrowed {
        PARKS.fetch_add(1, Ordering::Relaxed);
    }
    unsafe { (default().rekey)(cache.inner, page, cache.key(old), cache.key(new)) }
}

unsafe extern "C" fn truncate_cache(p: *mut ffi::sqlite3_pcache, limit: c_uint) {
    let cache = unsafe { cache(p) };
    let default = default();
    unsafe { (default.truncate)(cache.inner, limit) };
    // A page parked under the borrowed number goes wherever the default
    // cache would have dropped it from there. (SQLite moves it on at once,
    // so none is ever found; a truncation to 0 drops it with the rest.)
    if limit > PARKED && limit <= cache.borrowed {
        let parked = unsafe { (default.fetch)(cache.inner, PARKED, 0) };
        if !parked.is_null() {
            unsafe { (default.unpin)(cache.inner, parked, 1) };
        }
    }
}

unsafe extern "C" fn destroy_cache(p: *mut ffi::sqlite3_pcache) {
    // SAFETY: `p` came from `create_cache`'s Box and SQLite destroys each
    // cache once.
    let cache = unsafe { Box::from_raw(p.cast::<Cache>()) };
    unsafe { (default().destroy)(cache.inner) }
}

unsafe extern "C" fn shrink_cache(p: *mut ffi::sqlite3_pcache) {
    unsafe { (default().shrink)(cache(p).inner) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache's methods called as the pager calls them, on pages the
    /// test owns (no database: the pager's own use is in
    /// `tests/page_cache.rs`).
    #[test]
    fn a_page_under_the_borrowed_number_is_parked_and_dropped_like_any_other() {
        crate::register().unwrap();
        assert!(installed(), "nothing initialised SQLite before register");
        unsafe {
            let p = create_cache(4096, 64, 1);
            assert!(!p.is_null());
            let borrowed = cache(p).borrowed;
            assert_eq!(borrowed, 262_145, "the lock byte's page with 4 KiB pages");
            cachesize_of(p, 100);

            // A page moved to the borrowed number and back, as the swap does.
            let page = fetch_page(p, 7, 2);
            assert!(!page.is_null());
            let parks = parked_pages();
            rekey_page(p, page, 7, borrowed);
            assert!(parked_pages() > parks);
            assert_eq!(fetch_page(p, borrowed, 0), page, "found under the number SQLite gave it");
            assert!(fetch_page(p, 7, 0).is_null());
            rekey_page(p, page, borrowed, 9);
            assert_eq!(fetch_page(p, 9, 0), page);
            unpin_page(p, page, 0);

            // A page left under the borrowed number goes with a truncation
            // that covers that number, and pages past the limit go as before.
            let parked = fetch_page(p, borrowed, 2);
            assert!(!parked.is_null());
            unpin_page(p, parked, 0);
            truncate_cache(p, 5);
            assert!(fetch_page(p, borrowed, 0).is_null(), "the parked page was dropped");
            assert!(fetch_page(p, 9, 0).is_null(), "page 9 was past the limit");
            assert_eq!(pagecount_of(p), 0);

            // Below the limit, pages stay.
            let kept = fetch_page(p, 3, 2);
            unpin_page(p, kept, 0);
            truncate_cache(p, 4);
            assert_eq!(fetch_page(p, 3, 0), kept);
            unpin_page(p, kept, 0);
            shrink_cache(p);
            destroy_cache(p);
        }
    }
}
