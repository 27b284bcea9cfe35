//! The guest unikernel built by `build.rs` from `guest/kernel`, embedded in the VMM, and where
//! it lies in the VMM's own executable file: the loader maps its read-only pages from there
//! (`loader::load_mapped`), so every VM on the host shares one copy in the page cache.

use std::fs::File;
use std::sync::OnceLock;

#[repr(align(4096))]
struct Page;

/// Bytes aligned as `A`: the embedded image starts on a page in memory, hence (for a loadable
/// segment) on a page of the file.
#[repr(C)]
struct Aligned<A, T: ?Sized> {
    _align: [A; 0],
    bytes: T,
}

static ALIGNED: &Aligned<Page, [u8]> =
    &Aligned { _align: [], bytes: *include_bytes!(concat!(env!("OUT_DIR"), "/wasmcell-guest.elf")) };

/// The guest ELF this VMM was built with.
pub static EMBEDDED_GUEST: &[u8] = &ALIGNED.bytes;

/// This executable, open, and the offset of [`EMBEDDED_GUEST`] in it; `None` if it cannot be
/// found (the loader then copies the image). Looked up once per process.
pub fn embedded_guest_file() -> Option<&'static (File, u64)> {
    static FOUND: OnceLock<Option<(File, u64)>> = OnceLock::new();
    FOUND
        .get_or_init(|| Some((File::open("/proc/self/exe").ok()?, file_offset(EMBEDDED_GUEST.as_ptr() as u64)?)))
        .as_ref()
}

/// Where the byte at `addr` of the main executable's loaded image is in its file: from the
/// loadable segment that holds it (`dl_iterate_phdr`, no system call).
fn file_offset(addr: u64) -> Option<u64> {
    struct Search {
        addr: u64,
        found: Option<u64>,
    }
    unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _: libc::size_t, data: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `data` is the `Search` passed below; `info` is valid for this call, with
        // `dlpi_phnum` program headers at `dlpi_phdr`.
        let (search, info) = unsafe { (&mut *data.cast::<Search>(), &*info) };
        // SAFETY: as above.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
        for phdr in phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD) {
            let start = info.dlpi_addr + phdr.p_vaddr;
            if (start..start + phdr.p_filesz).contains(&search.addr) {
                search.found = Some(search.addr - start + phdr.p_offset);
            }
        }
        // The first object is the executable itself: stop after it.
        1
    }
    let mut search = Search { addr, found: None };
    // SAFETY: `visit` matches the callback type and only reads what the loader passes it;
    // `search` outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut search).cast()) };
    search.found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn the_embedded_image_is_found_page_aligned_in_the_executable() {
        let (file, offset) = embedded_guest_file().expect("found");
        assert_eq!(offset % 4096, 0);
        let mut head = [0u8; 4096];
        file.read_exact_at(&mut head, *offset).unwrap();
        assert_eq!(head, EMBEDDED_GUEST[..4096]);
    }
}
