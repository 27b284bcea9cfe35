//! The host side of the socket device: the few socket system calls it makes, on descriptors
//! it owns, always non-blocking, with addresses converted from and to the ABI's words. Every
//! function returns the call's `errno` on failure; none blocks.

use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use wasmcell_abi::socket::{errno, Address};

pub type Errno = i32;

fn last_errno() -> Errno {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(errno::EINVAL)
}

fn check(ret: libc::c_int) -> Result<libc::c_int, Errno> {
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(ret)
    }
}

fn check_size(ret: libc::ssize_t) -> Result<usize, Errno> {
    if ret < 0 {
        Err(last_errno())
    } else {
        Ok(ret as usize)
    }
}

/// The `sockaddr` of `address` (family 4 or 6; `None` for family 0), and its length.
pub fn sockaddr(address: &Address) -> Result<Option<(libc::sockaddr_storage, libc::socklen_t)>, Errno> {
    // SAFETY: an all-zero sockaddr_storage is a valid (AF_UNSPEC) value.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match address.family {
        0 => return Ok(None),
        4 => {
            let mut ip = [0; 4];
            ip.copy_from_slice(&address.ip[..4]);
            let v4 = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: address.port.to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(ip) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for every sockaddr type.
            unsafe { std::ptr::write((&raw mut storage).cast::<libc::sockaddr_in>(), v4) };
            size_of::<libc::sockaddr_in>()
        }
        6 => {
            let v6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: address.port.to_be(),
                sin6_flowinfo: address.flowinfo.to_be(),
                sin6_addr: libc::in6_addr { s6_addr: address.ip },
                sin6_scope_id: address.scope_id,
            };
            // SAFETY: as above.
            unsafe { std::ptr::write((&raw mut storage).cast::<libc::sockaddr_in6>(), v6) };
            size_of::<libc::sockaddr_in6>()
        }
        _ => return Err(errno::EAFNOSUPPORT),
    };
    Ok(Some((storage, len as libc::socklen_t)))
}

/// The ABI address of a `sockaddr` the kernel filled (family 0 for anything but IPv4/6).
pub fn address(storage: &libc::sockaddr_storage) -> Address {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (its family says so) into the storage.
            let v4 = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Address::v4(v4.sin_addr.s_addr.to_ne_bytes(), u16::from_be(v4.sin_port))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, a sockaddr_in6.
            let v6 = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Address {
                family: 6,
                port: u16::from_be(v6.sin6_port),
                flowinfo: u32::from_be(v6.sin6_flowinfo),
                ip: v6.sin6_addr.s6_addr,
                scope_id: v6.sin6_scope_id,
            }
        }
        _ => Address::default(),
    }
}

/// A new non-blocking socket; IPv6 sockets are v6-only (as wasmtime makes them).
pub fn open(domain: libc::c_int, kind: libc::c_int) -> Result<OwnedFd, Errno> {
    // SAFETY: socket has no memory arguments.
    let fd = check(unsafe { libc::socket(domain, kind | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just created and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if domain == libc::AF_INET6 {
        set_int(fd.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    Ok(fd)
}

pub fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> Result<(), Errno> {
    // SAFETY: `value` lives across the call and its size is passed.
    check(unsafe {
        libc::setsockopt(fd, level, name, (&raw const value).cast(), size_of::<libc::c_int>() as libc::socklen_t)
    })
    .map(drop)
}

pub fn get_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> Result<libc::c_int, Errno> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` live across the call; `len` is `value`'s size.
    check(unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &mut len) })?;
    Ok(value)
}

pub fn bind(fd: RawFd, address: &Address) -> Result<(), Errno> {
    let (storage, len) = sockaddr(address)?.ok_or(errno::EAFNOSUPPORT)?;
    // SAFETY: `storage` holds a sockaddr of `len` bytes.
    check(unsafe { libc::bind(fd, (&raw const storage).cast(), len) }).map(drop)
}

pub fn listen(fd: RawFd, backlog: libc::c_int) -> Result<(), Errno> {
    // SAFETY: listen has no memory arguments.
    check(unsafe { libc::listen(fd, backlog) }).map(drop)
}

/// A pending connection, non-blocking, and its peer's address.
pub fn accept(fd: RawFd) -> Result<(OwnedFd, Address), Errno> {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` and `len` live across the call; `len` is the storage's size.
    let new = check(unsafe {
        libc::accept4(fd, (&raw mut storage).cast(), &mut len, libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
    })?;
    // SAFETY: `new` was just created by accept4 and is owned by nothing else.
    Ok((unsafe { OwnedFd::from_raw_fd(new) }, address(&storage)))
}

/// Connects to `address`, or dissolves a UDP association for family 0.
pub fn connect(fd: RawFd, address: &Address) -> Result<(), Errno> {
    let (storage, len) = match sockaddr(address)? {
        Some(addr) => addr,
        None => {
            // SAFETY: an all-zero sockaddr_storage is valid; AF_UNSPEC is its family.
            let mut unspec: libc::sockaddr_storage = unsafe { zeroed() };
            unspec.ss_family = libc::AF_UNSPEC as libc::sa_family_t;
            (unspec, size_of::<libc::sa_family_t>() as libc::socklen_t)
        }
    };
    // SAFETY: `storage` holds a sockaddr of `len` bytes.
    check(unsafe { libc::connect(fd, (&raw const storage).cast(), len) }).map(drop)
}

/// Sends from `buf..buf+len` (host memory the caller vouches for), to `address` if it has a
/// family.
///
/// # Safety
/// `buf` must be valid for reads of `len` bytes for the call's duration.
pub unsafe fn send(fd: RawFd, buf: *const u8, len: usize, address: &Address) -> Result<usize, Errno> {
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    let target = sockaddr(address)?;
    let (ptr, addr_len) = match &target {
        Some((storage, len)) => ((storage as *const libc::sockaddr_storage).cast::<libc::sockaddr>(), *len),
        None => (std::ptr::null(), 0),
    };
    // SAFETY: the caller vouches for `buf`; `ptr` is null or a sockaddr of `addr_len` bytes.
    check_size(unsafe { libc::sendto(fd, buf.cast(), len, flags, ptr, addr_len) })
}

/// Receives into `buf..buf+len`; the sender's address (family 0 for a stream).
///
/// # Safety
/// `buf` must be valid for writes of `len` bytes for the call's duration.
pub unsafe fn receive(fd: RawFd, buf: *mut u8, len: usize, peek: bool) -> Result<(usize, Address), Errno> {
    let flags = libc::MSG_DONTWAIT | if peek { libc::MSG_PEEK } else { 0 };
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let mut addr_len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: the caller vouches for `buf`; `storage` and `addr_len` live across the call.
    let n =
        check_size(unsafe { libc::recvfrom(fd, buf.cast(), len, flags, (&raw mut storage).cast(), &mut addr_len) })?;
    Ok((n, address(&storage)))
}

pub fn shutdown(fd: RawFd, how: libc::c_int) -> Result<(), Errno> {
    // SAFETY: shutdown has no memory arguments.
    check(unsafe { libc::shutdown(fd, how) }).map(drop)
}

/// The local (`peer` false) or remote address.
pub fn name(fd: RawFd, peer: bool) -> Result<Address, Errno> {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let ptr = (&raw mut storage).cast();
    // SAFETY: `storage` and `len` live across the call; `len` is the storage's size.
    check(unsafe {
        if peer {
            libc::getpeername(fd, ptr, &mut len)
        } else {
            libc::getsockname(fd, ptr, &mut len)
        }
    })?;
    Ok(address(&storage))
}
