//! Locks: wasmtime's lock hooks (`custom-sync-primitives`) as spin locks, and the self-test that
//! holds one.
//!
//! Every vCPU runs in an address space with a private copy of the kernel's data, so a lock is
//! only ever shared by the code of one vCPU: there is never contention, and a vCPU stopped while
//! holding a lock strands nobody. wasmtime still needs the hooks to exist (without
//! `custom-sync-primitives` its locks panic in a `no_std` build when asked to wait).

use core::sync::atomic::{AtomicUsize, Ordering};
use spinning_top::RawSpinlock;
use talc::lock_api::Mutex;

/// Holds a lock for `millis` ms of TSC time (the `HOLD_LOCK` self-test).
pub fn hold_a_lock(millis: u32) {
    static LOCK: Mutex<RawSpinlock, ()> = Mutex::new(());
    let _held = LOCK.lock();
    crate::log!("holding a kernel lock for {millis} ms");
    let ticks = crate::vcpu::info().tsc_khz.saturating_mul(u64::from(millis));
    let start = crate::arch::timestamp();
    while crate::arch::timestamp().wrapping_sub(start) < ticks {
        core::hint::spin_loop();
    }
}

/// The state word wasmtime hands us for a lock: 0 free, `WRITER` held exclusively, else the
/// number of readers.
const WRITER: usize = usize::MAX;

/// # Safety
/// `lock` must point to a live, aligned `usize` that only these functions touch.
unsafe fn word<'a>(lock: *mut usize) -> &'a AtomicUsize {
    // SAFETY: per the caller; `AtomicUsize` has the layout of `usize`.
    unsafe { AtomicUsize::from_ptr(lock) }
}

fn acquire(word: &AtomicUsize, mut next: impl FnMut(usize) -> Option<usize>) {
    loop {
        let current = word.load(Ordering::Relaxed);
        if let Some(new) = next(current) {
            if word.compare_exchange_weak(current, new, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                return;
            }
        }
        core::hint::spin_loop();
    }
}

fn release(word: &AtomicUsize, next: impl Fn(usize) -> usize) {
    let _ = word.fetch_update(Ordering::Release, Ordering::Relaxed, |current| Some(next(current)));
}

// The hooks wasmtime calls with `custom-sync-primitives` (its `capi.rs`): a zero word is a
// valid free lock, so "free" has nothing to release, and a mutex is a lock taken for writing.

#[no_mangle]
unsafe extern "C" fn wasmtime_sync_lock_acquire(lock: *mut usize) {
    // SAFETY: wasmtime passes its lock's storage word.
    unsafe { wasmtime_sync_rwlock_write(lock) }
}

#[no_mangle]
unsafe extern "C" fn wasmtime_sync_lock_release(lock: *mut usize) {
    // SAFETY: as above.
    unsafe { wasmtime_sync_rwlock_write_release(lock) }
}

#[no_mangle]
extern "C" fn wasmtime_sync_lock_free(_lock: *mut usize) {}

#[no_mangle]
unsafe extern "C" fn wasmtime_sync_rwlock_read(lock: *mut usize) {
    // SAFETY: wasmtime passes its lock's storage word.
    acquire(unsafe { word(lock) }, |w| (w < WRITER - 1).then_some(w + 1));
}

#[no_mangle]
unsafe extern "C" fn wasmtime_sync_rwlock_read_release(lock: *mut usize) {
    // SAFETY: as above.
    release(unsafe { word(lock) }, |w| w.saturating_sub(1));
}

#[no_mangle]
unsafe extern "C" fn wasmtime_sync_rwlock_write(lock: *mut usize) {
    // SAFETY: as above.
    acquire(unsafe { word(lock) }, |w| (w == 0).then_some(WRITER));
}

#[no_mangle]
unsafe extern "C" fn wasmtime_sync_rwlock_write_release(lock: *mut usize) {
    // SAFETY: as above.
    release(unsafe { word(lock) }, |_| 0);
}

#[no_mangle]
extern "C" fn wasmtime_sync_rwlock_free(_lock: *mut usize) {}
