//! WASI 0.2 only (a component): opens paths of the `/data` preopen with descriptor flags and
//! open flags that std never asks for, and prints, for each, what `open-at` answered, the flags
//! the descriptor reports, the result of a read and a write, and of a stream of each kind on it.
use wasip2::filesystem::preopens::get_directories;
use wasip2::filesystem::types::{Descriptor, DescriptorFlags as F, OpenFlags as O, PathFlags};
use wasip2::io::streams::StreamError;

fn show<T: std::fmt::Debug, E: std::fmt::Debug>(result: Result<T, E>) -> String {
    match result {
        Ok(value) => format!("{value:?}"),
        Err(error) => format!("error {error:?}"),
    }
}

/// A stream error as the code behind it (an I/O error's Debug text is not portable).
fn stream_outcome<T: std::fmt::Debug>(result: Result<T, StreamError>) -> String {
    match result {
        Ok(value) => format!("{value:?}"),
        Err(StreamError::Closed) => "closed".into(),
        Err(StreamError::LastOperationFailed(error)) => {
            format!("failed {:?}", wasip2::filesystem::types::filesystem_error_code(&error))
        }
    }
}

fn probe(dir: &Descriptor, path: &str, open: O, flags: F) {
    print!("{path} {open:?} {flags:?}: ");
    let d = match dir.open_at(PathFlags::SYMLINK_FOLLOW, path, open, flags) {
        Ok(d) => d,
        Err(e) => return println!("open error {e:?}"),
    };
    let read = show(d.read(4, 0).map(|(bytes, end)| (bytes.len(), end)));
    let write = show(d.write(b"x", 1000));
    let input = show(d.read_via_stream(0).map(|s| stream_outcome(s.blocking_read(4).map(|b| b.len()))));
    let output = show(d.write_via_stream(2000).map(|s| stream_outcome(s.blocking_write_and_flush(b"y"))));
    let append = show(d.append_via_stream().map(|_| ()));
    println!(
        "flags {}, type {}, read {read}, write {write}, input {input}, output {output}, append {append}",
        show(d.get_flags()),
        show(d.get_type())
    );
}

/// Edges where an implementation easily differs: a hard link asked to follow symlinks, a read
/// of nothing, a write of nothing far past the end.
fn edges(dir: &Descriptor) {
    println!("link-at following symlinks: {}", show(dir.link_at(PathFlags::SYMLINK_FOLLOW, "hello.txt", dir, "hard")));
    let flags = F::READ | F::WRITE;
    let file = dir.open_at(PathFlags::empty(), "sub/nested.txt", O::empty(), flags).expect("open sub/nested.txt");
    let size = |file: &Descriptor| file.stat().map(|stat| stat.size);
    println!("read of 0 bytes: {}", show(file.read(0, 0).map(|(bytes, end)| (bytes.len(), end))));
    let before = show(size(&file));
    let written = show(file.write(&[], 5000));
    println!("write of 0 bytes at 5000: {written}, size {before} -> {}", show(size(&file)));
    let stream = file.write_via_stream(9000).expect("write-via-stream");
    println!("stream write of 0 bytes at 9000: {}, size {}", stream_outcome(stream.write(&[])), show(size(&file)));
}

fn main() {
    let (dir, _) = get_directories().into_iter().find(|(_, path)| path == "/data").expect("/data is preopened");
    println!("preopen flags {}", show(dir.get_flags()));
    probe(&dir, "hello.txt", O::empty(), F::empty());
    probe(&dir, "hello.txt", O::empty(), F::READ);
    probe(&dir, "hello.txt", O::empty(), F::WRITE);
    probe(&dir, "hello.txt", O::empty(), F::READ | F::WRITE);
    probe(&dir, "new.txt", O::CREATE, F::READ);
    probe(&dir, "hello.txt", O::TRUNCATE, F::empty());
    probe(&dir, "hello.txt", O::empty(), F::READ | F::FILE_INTEGRITY_SYNC);
    probe(&dir, "hello.txt", O::DIRECTORY, F::READ);
    probe(&dir, "sub", O::DIRECTORY, F::empty());
    probe(&dir, "sub", O::DIRECTORY, F::READ | F::MUTATE_DIRECTORY);
    probe(&dir, "sub", O::empty(), F::WRITE);
    probe(&dir, "sub", O::CREATE, F::empty());
    probe(&dir, "sub", O::DIRECTORY | O::CREATE, F::empty());
    probe(&dir, "excl.txt", O::CREATE | O::EXCLUSIVE, F::WRITE);
    probe(&dir, "excl.txt", O::CREATE | O::EXCLUSIVE, F::WRITE);
    probe(&dir, "missing.txt", O::empty(), F::READ);
    edges(&dir);
}
