//! Kernel-wide locks: spin locks that count themselves in the holding vCPU's block, for the
//! kernel heap, the log and every lock wasmtime takes (its `custom-sync-primitives` hooks).
//!
//! Spinning is the right wait here: each vCPU is a host thread, locks guard a few hundred
//! instructions at most, and the guest has no scheduler to yield to. The count is what lets the
//! VMM stop a vCPU without leaving a lock held forever (`crate::vcpu`).

use crate::vcpu;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A counted spin lock, for `lock_api` users (talc, which re-exports it).
pub struct CountedSpinlock(AtomicBool);

// SAFETY: `lock` returns only once this thread set the flag from false to true, and `unlock`
// clears it: at most one holder at a time.
unsafe impl talc::lock_api::RawMutex for CountedSpinlock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self(AtomicBool::new(false));
    type GuardMarker = talc::lock_api::GuardNoSend;

    fn lock(&self) {
        vcpu::lock_acquiring();
        while self.0.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            while self.0.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
    }

    fn try_lock(&self) -> bool {
        vcpu::lock_acquiring();
        let locked = self.0.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok();
        if !locked {
            vcpu::lock_released();
        }
        locked
    }

    unsafe fn unlock(&self) {
        self.0.store(false, Ordering::Release);
        vcpu::lock_released();
    }
}

/// Holds a kernel-wide lock for `millis` ms of TSC time (the `HOLD_LOCK` self-test).
pub fn hold_a_lock(millis: u32) {
    static LOCK: talc::lock_api::Mutex<CountedSpinlock, ()> = talc::lock_api::Mutex::new(());
    let _held = LOCK.lock();
    crate::log!("holding a kernel lock for {millis} ms");
    let ticks = vcpu::info().tsc_khz.saturating_mul(u64::from(millis));
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
    vcpu::lock_acquiring();
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
    vcpu::lock_released();
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
