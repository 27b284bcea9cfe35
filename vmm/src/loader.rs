//! Loading the guest ELF: first validated here (every loadable segment inside the image window
//! of the memory map, the entry point in an executable segment), then copied into guest memory
//! (or, for the image embedded in the binary, its read-only pages mapped from the binary's own
//! file). The segments' permissions are returned so the page tables can map the image
//! W^X.

use crate::arch::ELF_MACHINE;
use crate::memory::GuestMemory;
use vm_memory::GuestAddress;
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

/// Where a segment's bytes are in the image file and go in guest memory (the rest of its
/// memory size is zeros).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileRange {
    pub addr: u64,
    pub offset: u64,
    pub size: u64,
    pub writable: bool,
}

/// What the loader learned about a valid image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestElf {
    pub entry: u64,
    pub segments: Vec<Segment>,
    /// The segments' file contents.
    pub contents: Vec<FileRange>,
    /// One past the last byte of the image, page aligned.
    pub end: u64,
}

/// The image as a file the VMM can map (the binary's own, for the embedded image): the file and
/// where the image starts in it.
pub struct ImageFile<'a> {
    pub file: &'a std::fs::File,
    pub offset: u64,
}

// The few ELF64 fields the loader reads (System V gABI), by offset: linux-loader's ELF types are
// x86-only, and these are all the guest image needs on any architecture.
const ELF_HEADER_SIZE: u64 = 64;
const PROGRAM_HEADER_SIZE: u64 = 56;
const ET_EXEC: u16 = 2;
const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PF_W: u32 = 2;

/// `N` bytes of `image` at `offset`, or `Truncated`.
fn bytes<const N: usize>(image: &[u8], offset: u64) -> Result<[u8; N], LoadError> {
    let start = usize::try_from(offset).map_err(|_| LoadError::Truncated)?;
    let slice = image.get(start..start.checked_add(N).ok_or(LoadError::Truncated)?).ok_or(LoadError::Truncated)?;
    Ok(slice.try_into().expect("N bytes"))
}

fn u16_at(image: &[u8], offset: u64) -> Result<u16, LoadError> {
    bytes(image, offset).map(u16::from_le_bytes)
}

fn u32_at(image: &[u8], offset: u64) -> Result<u32, LoadError> {
    bytes(image, offset).map(u32::from_le_bytes)
}

fn u64_at(image: &[u8], offset: u64) -> Result<u64, LoadError> {
    bytes(image, offset).map(u64::from_le_bytes)
}

/// One `PT_LOAD`-able program header.
struct ProgramHeader {
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
}

impl ProgramHeader {
    fn read(image: &[u8], at: u64) -> Result<Self, LoadError> {
        let field = |offset: u64| u64_at(image, at.saturating_add(offset));
        Ok(Self {
            kind: u32_at(image, at)?,
            flags: u32_at(image, at.saturating_add(4))?,
            offset: field(8)?,
            vaddr: field(16)?,
            paddr: field(24)?,
            filesz: field(32)?,
            memsz: field(40)?,
        })
    }
}

/// Validates `image` against the memory map without touching guest memory.
pub fn parse(image: &[u8]) -> Result<GuestElf, LoadError> {
    let ident: [u8; 6] = bytes(image, 0)?;
    let ident_ok = ident[..4] == *b"\x7fELF" && ident[4] == 2 && ident[5] == 1;
    if !ident_ok || u16_at(image, 18)? != ELF_MACHINE || u16_at(image, 16)? != ET_EXEC {
        return Err(LoadError::NotElf);
    }
    if u64::from(u16_at(image, 54)?) != PROGRAM_HEADER_SIZE || image.len() < ELF_HEADER_SIZE as usize {
        return Err(LoadError::NotElf);
    }
    let (entry, phoff, phnum) = (u64_at(image, 24)?, u64_at(image, 32)?, u16_at(image, 56)?);
    let mut segments = Vec::new();
    let mut contents = Vec::new();
    for i in 0..u64::from(phnum) {
        let phdr = ProgramHeader::read(image, phoff.saturating_add(i * PROGRAM_HEADER_SIZE))?;
        if phdr.kind != PT_LOAD || phdr.memsz == 0 {
            continue;
        }
        let start = phdr.paddr;
        let end = start.checked_add(phdr.memsz).ok_or(LoadError::BadSegment(start))?;
        if start < IMAGE_START || end > IMAGE_LIMIT || phdr.vaddr != phdr.paddr {
            return Err(LoadError::SegmentOutOfRange { start, end });
        }
        let file_end = phdr.offset.checked_add(phdr.filesz);
        if phdr.filesz > phdr.memsz || file_end.is_none_or(|e| e > image.len() as u64) {
            return Err(LoadError::BadSegment(start));
        }
        let access = SegmentAccess { writable: phdr.flags & PF_W != 0, executable: phdr.flags & PF_X != 0 };
        contents.push(FileRange { addr: start, offset: phdr.offset, size: phdr.filesz, writable: access.writable });
        segments.push(Segment { start: start & !(PAGE_SIZE - 1), end: end.next_multiple_of(PAGE_SIZE), access });
    }
    if segments.is_empty() {
        return Err(LoadError::NoSegments);
    }
    segments.sort_by_key(|s| s.start);
    if segments.windows(2).any(|w| w[0].end > w[1].start) {
        return Err(LoadError::BadSegment(segments[0].start));
    }
    if !segments.iter().any(|s| s.access.executable && (s.start..s.end).contains(&entry)) {
        return Err(LoadError::BadEntry(entry));
    }
    let end = segments.last().map(|s| s.end).unwrap_or(IMAGE_START);
    Ok(GuestElf { entry, segments, contents, end })
}

/// Copies the (already parsed) image's segments into guest memory (fresh RAM: what a segment
/// holds past its file bytes is zero already).
pub fn load(memory: &GuestMemory, image: &[u8], elf: &GuestElf) -> Result<(), LoadError> {
    use vm_memory::Bytes;
    for range in &elf.contents {
        let bytes = image.get(range.offset as usize..(range.offset + range.size) as usize);
        let bytes = bytes.ok_or(LoadError::BadSegment(range.addr))?;
        memory.write_slice(bytes, GuestAddress(range.addr)).map_err(|_| LoadError::BadSegment(range.addr))?;
    }
    Ok(())
}

/// Places the (already parsed) image's segments in guest memory, mapping the whole pages of its
/// read-only segments from `source` (the same bytes as `image`) instead of copying them: every
/// VM of the host then shares them in the page cache. What is not a whole read-only page (the
/// writable data, a segment's last partial page) is copied, so guest memory holds exactly what
/// `load` would put there. Returns how many bytes were mapped.
pub fn load_mapped(
    memory: &GuestMemory,
    image: &[u8],
    elf: &GuestElf,
    source: &ImageFile<'_>,
) -> Result<u64, LoadError> {
    use vm_memory::Bytes;
    let mut total = 0;
    for range in &elf.contents {
        let aligned = range.addr.is_multiple_of(PAGE_SIZE) && (source.offset + range.offset).is_multiple_of(PAGE_SIZE);
        let mapped = if range.writable || !aligned { 0 } else { range.size / PAGE_SIZE * PAGE_SIZE };
        if mapped > 0 {
            crate::memory::map_file_at(memory, range.addr, source.file, source.offset + range.offset, mapped)
                .map_err(|_| LoadError::BadSegment(range.addr))?;
        }
        let rest = (range.offset + mapped) as usize..(range.offset + range.size) as usize;
        let bytes = image.get(rest).ok_or(LoadError::BadSegment(range.addr))?;
        memory.write_slice(bytes, GuestAddress(range.addr + mapped)).map_err(|_| LoadError::BadSegment(range.addr))?;
        total += mapped;
    }
    Ok(total)
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
    fn a_mapped_image_is_byte_for_byte_the_copied_one() {
        use vm_memory::Bytes;
        let image = crate::EMBEDDED_GUEST;
        let elf = parse(image).unwrap();
        let (file, offset) = crate::guest_image::embedded_guest_file().expect("the executable holds the image");
        let fresh = || {
            let region = crate::memory::Region::from_range(GuestAddress(0), IMAGE_LIMIT as usize, None).unwrap();
            GuestMemory::from_regions(vec![region]).unwrap()
        };
        let (copied, mapped) = (fresh(), fresh());
        load(&copied, image, &elf).unwrap();
        let shared = load_mapped(&mapped, image, &elf, &ImageFile { file, offset: *offset }).unwrap();
        // Every whole page of the read-only segments was mapped, not copied.
        let read_only: u64 = elf.contents.iter().filter(|r| !r.writable).map(|r| r.size / PAGE_SIZE * PAGE_SIZE).sum();
        assert!(shared > 0 && shared == read_only, "{shared} of {read_only} bytes mapped");
        let size = (elf.end - IMAGE_START) as usize;
        let (mut a, mut b) = (vec![0u8; size], vec![0u8; size]);
        copied.read_slice(&mut a, GuestAddress(IMAGE_START)).unwrap();
        mapped.read_slice(&mut b, GuestAddress(IMAGE_START)).unwrap();
        assert!(a == b, "the mapped image differs from the copied one");
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

    /// The embedded guest with its first program header's 8-byte fields at `fields` (offsets
    /// in the header) set to the values given.
    fn patched_phdr(fields: &[(usize, u64)]) -> Vec<u8> {
        let mut image = crate::EMBEDDED_GUEST.to_vec();
        let at = u64_at(&image, 32).unwrap() as usize;
        for &(offset, value) in fields {
            image[at + offset..at + offset + 8].copy_from_slice(&value.to_le_bytes());
        }
        image
    }

    #[test]
    fn segments_outside_the_image_window_are_refused() {
        let (vaddr, paddr, filesz, memsz) = (16, 24, 32, 40);
        let low = patched_phdr(&[(paddr, 0x1000), (vaddr, 0x1000)]);
        assert!(matches!(parse(&low), Err(LoadError::SegmentOutOfRange { start: 0x1000, .. })));
        let huge = patched_phdr(&[(memsz, u64::MAX)]);
        assert!(parse(&huge).is_err());
        let beyond_file = patched_phdr(&[(filesz, 1 << 40)]);
        assert!(parse(&beyond_file).is_err());
    }
}
