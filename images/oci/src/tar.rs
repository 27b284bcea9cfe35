//! A minimal, deterministic ustar writer: regular files only, owner root, fixed mtime. Enough for
//! an OCI layout tarball and a one-file layer, and byte-for-byte reproducible.

/// A tar archive being written in memory.
#[derive(Default)]
pub struct TarWriter {
    bytes: Vec<u8>,
}

const BLOCK: usize = 512;

/// Why a file cannot go into the archive.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("Path {0:?} is too long for a tar header (at most 100 bytes)")]
    PathTooLong(String),
}

impl TarWriter {
    /// Appends a regular file with permission bits `mode`.
    pub fn append(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<(), TarError> {
        if path.len() > 100 || path.is_empty() {
            return Err(TarError::PathTooLong(path.to_string()));
        }
        let mut header = [0u8; BLOCK];
        header[..path.len()].copy_from_slice(path.as_bytes());
        octal(&mut header[100..108], u64::from(mode));
        octal(&mut header[108..116], 0); // uid
        octal(&mut header[116..124], 0); // gid
        octal(&mut header[124..136], data.len() as u64);
        octal(&mut header[136..148], 0); // mtime: the epoch, for reproducible digests
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        // The checksum is computed with its own field as spaces.
        header[148..156].fill(b' ');
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        octal(&mut header[148..155], u64::from(sum));
        header[155] = b' ';
        self.bytes.extend_from_slice(&header);
        self.bytes.extend_from_slice(data);
        self.bytes.resize(self.bytes.len().next_multiple_of(BLOCK), 0);
        Ok(())
    }

    /// The archive with its two zero end-of-archive blocks.
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.resize(self.bytes.len() + 2 * BLOCK, 0);
        self.bytes
    }
}

/// Writes `value` as zero-padded octal, NUL-terminated, filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_carry_size_mode_and_a_valid_checksum() {
        let mut tar = TarWriter::default();
        tar.append("app.wasm", 0o755, b"\0asm\x01\0\0\0").unwrap();
        let bytes = tar.finish();
        assert_eq!(bytes.len(), 512 + 512 + 1024);
        assert_eq!(&bytes[..8], b"app.wasm");
        assert_eq!(&bytes[100..108], b"0000755\0");
        assert_eq!(&bytes[124..136], b"00000000010\0");
        let stored = u32::from_str_radix(std::str::from_utf8(&bytes[148..154]).unwrap(), 8).unwrap();
        let mut blank = bytes[..512].to_vec();
        blank[148..156].fill(b' ');
        assert_eq!(stored, blank.iter().map(|&b| u32::from(b)).sum::<u32>());
        assert_eq!(&bytes[512..520], b"\0asm\x01\0\0\0");
        assert!(bytes[1024..].iter().all(|&b| b == 0));
    }

    #[test]
    fn long_paths_are_refused() {
        let mut tar = TarWriter::default();
        assert!(tar.append(&"a".repeat(101), 0o644, b"").is_err());
    }
}
