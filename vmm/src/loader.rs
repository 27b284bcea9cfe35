//! Loading the guest ELF: first validated here (every loadable segment inside the image window
//! of the memory map, the entry point in an executable segment), then copied into guest memory
//! by linux-loader. The segments' permissions are returned so the page tables can map the image
//! W^X.

use crate::arch::ELF_MACHINE;
use crate::memory::GuestMemory;
use linux_loader::elf::{Elf64_Ehdr, Elf64_Phdr, ET_EXEC, PF_W, PF_X, PT_LOAD};
use linux_loader::loader::{Elf, KernelLoader};
use std::io::Cursor;
use vm_memory::{ByteValued, GuestAddress};
use wasmcell_abi::memory_map::{IMAGE_LIMIT, IMAGE_START, PAGE_SIZE};

/// Errors in the guest image.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Too short to hold the headers it claims.
    #[error("Guest image is truncated")]
    Truncated,
    /// Not a 64-bit little-endian executable for this architecture.
    #[error("Guest image is not an ELF executable for this architecture")]
    NotElf,
    /// A segment lies outside the image window of the memory map.
    #[error("Guest image segment at {start:#x}..{end:#x} is outside {IMAGE_START:#x}..{IMAGE_LIMIT:#x}")]
    SegmentOutOfRange { start: u64, end: u64 },
    /// A segment's file range is outside the file, or its sizes are inconsistent.
    #[error("Guest image segment at {0:#x} is malformed")]
    BadSegment(u64),
    /// The entry point is not in an executable segment.
    #[error("Guest image entry point {0:#x} is not in an executable segment")]
    BadEntry(u64),
    /// No loadable segment at all.
    #[error("Guest image has no loadable segment")]
    NoSegments,
    /// linux-loader refused it.
    #[error("Cannot load the guest image")]
    Load(#[source] linux_loader::loader::Error),
}

/// Access rights of a range of the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentAccess {
    pub writable: bool,
    pub executable: bool,
}

/// A loadable segment, page aligned outward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub start: u64,
    pub end: u64,
    pub access: SegmentAccess,
}

/// What the loader learned about a valid image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestElf {
    pub entry: u64,
    pub segments: Vec<Segment>,
    /// One past the last byte of the image, page aligned.
    pub end: u64,
}

fn read<T: ByteValued + Default>(image: &[u8], offset: u64) -> Result<T, LoadError> {
    let start = usize::try_from(offset).ok();
    let bytes = start.and_then(|s| image.get(s..s.checked_add(size_of::<T>())?));
    let mut value = T::default();
    value.as_mut_slice().copy_from_slice(bytes.ok_or(LoadError::Truncated)?);
    Ok(value)
}

/// Validates `image` against the memory map without touching guest memory.
pub fn parse(image: &[u8]) -> Result<GuestElf, LoadError> {
    let ehdr: Elf64_Ehdr = read(image, 0)?;
    let ident_ok = ehdr.e_ident[..4] == *b"\x7fELF" && ehdr.e_ident[4] == 2 && ehdr.e_ident[5] == 1;
    if !ident_ok || ehdr.e_machine != ELF_MACHINE || ehdr.e_type != ET_EXEC {
        return Err(LoadError::NotElf);
    }
    if usize::from(ehdr.e_phentsize) != size_of::<Elf64_Phdr>() {
        return Err(LoadError::NotElf);
    }
    let mut segments = Vec::new();
    for i in 0..u64::from(ehdr.e_phnum) {
        let phdr: Elf64_Phdr = read(image, ehdr.e_phoff.saturating_add(i * size_of::<Elf64_Phdr>() as u64))?;
        if phdr.p_type != PT_LOAD || phdr.p_memsz == 0 {
            continue;
        }
        let start = phdr.p_paddr;
        let end = start.checked_add(phdr.p_memsz).ok_or(LoadError::BadSegment(start))?;
        if start < IMAGE_START || end > IMAGE_LIMIT || phdr.p_vaddr != phdr.p_paddr {
            return Err(LoadError::SegmentOutOfRange { start, end });
        }
        let file_end = phdr.p_offset.checked_add(phdr.p_filesz);
        if phdr.p_filesz > phdr.p_memsz || file_end.is_none_or(|e| e > image.len() as u64) {
            return Err(LoadError::BadSegment(start));
        }
        let access = SegmentAccess { writable: phdr.p_flags & PF_W != 0, executable: phdr.p_flags & PF_X != 0 };
        segments.push(Segment { start: start & !(PAGE_SIZE - 1), end: end.next_multiple_of(PAGE_SIZE), access });
    }
    if segments.is_empty() {
        return Err(LoadError::NoSegments);
    }
    segments.sort_by_key(|s| s.start);
    if segments.windows(2).any(|w| w[0].end > w[1].start) {
        return Err(LoadError::BadSegment(segments[0].start));
    }
    let entry = ehdr.e_entry;
    if !segments.iter().any(|s| s.access.executable && (s.start..s.end).contains(&entry)) {
        return Err(LoadError::BadEntry(entry));
    }
    let end = segments.last().map(|s| s.end).unwrap_or(IMAGE_START);
    Ok(GuestElf { entry, segments, end })
}

/// Copies the (already parsed) image's segments into guest memory.
pub fn load(memory: &GuestMemory, image: &[u8]) -> Result<(), LoadError> {
    Elf::load(memory, None, &mut Cursor::new(image), Some(GuestAddress(IMAGE_START))).map_err(LoadError::Load)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_guest_is_valid_and_w_xor_x() {
        let elf = parse(crate::EMBEDDED_GUEST).expect("embedded guest parses");
        assert!(elf.end > IMAGE_START && elf.end <= IMAGE_LIMIT);
        assert!(elf.segments.iter().all(|s| !(s.access.writable && s.access.executable)));
        assert!(elf.segments.iter().any(|s| s.access.executable));
    }

    #[test]
    fn garbage_and_truncated_images_are_refused() {
        assert!(matches!(parse(b""), Err(LoadError::Truncated)));
        assert!(matches!(parse(&[0u8; 4096]), Err(LoadError::NotElf)));
        let guest = crate::EMBEDDED_GUEST;
        assert!(matches!(parse(&guest[..40]), Err(LoadError::Truncated)));
        // Headers intact but the segments' file contents cut off.
        assert!(matches!(parse(&guest[..256]), Err(LoadError::BadSegment(_))));
    }

    fn patched_phdr(f: impl Fn(&mut Elf64_Phdr)) -> Vec<u8> {
        let mut image = crate::EMBEDDED_GUEST.to_vec();
        let ehdr: Elf64_Ehdr = read(&image, 0).unwrap();
        let at = ehdr.e_phoff as usize;
        let mut phdr: Elf64_Phdr = read(&image, at as u64).unwrap();
        f(&mut phdr);
        image[at..at + size_of::<Elf64_Phdr>()].copy_from_slice(phdr.as_slice());
        image
    }

    #[test]
    fn segments_outside_the_image_window_are_refused() {
        let low = patched_phdr(|p| {
            p.p_paddr = 0x1000;
            p.p_vaddr = 0x1000;
        });
        assert!(matches!(parse(&low), Err(LoadError::SegmentOutOfRange { start: 0x1000, .. })));
        let huge = patched_phdr(|p| p.p_memsz = u64::MAX);
        assert!(parse(&huge).is_err());
        let beyond_file = patched_phdr(|p| p.p_filesz = 1 << 40);
        assert!(parse(&beyond_file).is_err());
    }
}
