//! Where a request body ends: a length, or chunks ([`Decoder`] takes the bytes a connection
//! delivers, in any pieces, and gives back the body's own bytes). Chunk extensions and
//! trailers are read past and dropped, each bounded.

use alloc::vec::Vec;

/// How a body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes (0: no body).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (a response without a length).
    UntilClose,
}

/// The body is malformed: the connection cannot be trusted further.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyError;

/// The longest chunk-size line (digits and extensions) and trailer section accepted.
const MAX_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Bytes left of a length-delimited body.
    Length(u64),
    /// Reading a chunk size: its value so far, digits seen, and whether extensions began.
    Size {
        size: u64,
        digits: u8,
        extension: bool,
        line: usize,
    },
    /// A chunk's data: bytes left.
    Data(u64),
    /// The CR LF after a chunk's data: how many of the two were seen.
    DataEnd(u8),
    /// The trailer section: bytes of the current line and of the whole section.
    Trailers {
        line: usize,
        total: usize,
    },
    /// Everything until the connection ends.
    UntilClose,
    Done,
}

/// Decodes one body.
#[derive(Clone, Debug)]
pub struct Decoder {
    state: State,
}

impl Decoder {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Size { size: 0, digits: 0, extension: false, line: 0 },
            Framing::UntilClose => State::UntilClose,
        };
        Self { state }
    }

    /// The connection ended: the body is complete only if it was delimited by that end.
    pub fn end_of_input(&mut self) -> Result<(), BodyError> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(BodyError),
        }
    }

    /// Whether the whole body has been read.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Takes bytes of `input` (what the connection delivered after the head), appending the
    /// body's own bytes to `out` until it holds `max`. Returns how many input bytes were used;
    /// stops early at the body's end (what follows belongs to the next request).
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>, max: usize) -> Result<usize, BodyError> {
        let mut at = 0;
        while at < input.len() && !self.done() {
            let rest = &input[at..];
            match &mut self.state {
                State::Length(left) | State::Data(left) => {
                    let room = max.saturating_sub(out.len());
                    if room == 0 {
                        break;
                    }
                    let take = rest.len().min(room).min(usize::try_from(*left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&rest[..take]);
                    *left -= take as u64;
                    at += take;
                    if *left == 0 {
                        self.state = match self.state {
                            State::Data(_) => State::DataEnd(0),
                            _ => State::Done,
                        };
                    }
                }
                State::Size { size, digits, extension, line } => {
                    let byte = rest[0];
                    at += 1;
                    *line += 1;
                    if *line > MAX_LINE {
                        return Err(BodyError);
                    }
                    match byte {
                        b'\n' if *digits > 0 => {
                            self.state = match *size {
                                0 => State::Trailers { line: 0, total: 0 },
                                n => State::Data(n),
                            };
                        }
                        b'\r' | b'\n' if *digits == 0 => return Err(BodyError),
                        b'\r' => {}
                        _ if *extension => {}
                        b';' | b' ' | b'\t' if *digits > 0 => *extension = true,
                        _ => {
                            let digit = (byte as char).to_digit(16).ok_or(BodyError)?;
                            // 16 hex digits fill a u64; more is an attack or a mistake.
                            if *digits >= 16 {
                                return Err(BodyError);
                            }
                            *size = (*size << 4) | u64::from(digit);
                            *digits += 1;
                        }
                    }
                }
                State::DataEnd(seen) => {
                    let expected = if *seen == 0 { b'\r' } else { b'\n' };
                    if rest[0] != expected {
                        return Err(BodyError);
                    }
                    at += 1;
                    *seen += 1;
                    if *seen == 2 {
                        self.state = State::Size { size: 0, digits: 0, extension: false, line: 0 };
                    }
                }
                State::Trailers { line, total } => {
                    let byte = rest[0];
                    at += 1;
                    *total += 1;
                    if *total > MAX_TRAILERS {
                        return Err(BodyError);
                    }
                    match byte {
                        b'\n' if *line == 0 => self.state = State::Done,
                        b'\n' => *line = 0,
                        b'\r' if *line == 0 => {}
                        _ => *line += 1,
                    }
                }
                State::UntilClose => {
                    let take = rest.len().min(max.saturating_sub(out.len()));
                    if take == 0 {
                        break;
                    }
                    out.extend_from_slice(&rest[..take]);
                    at += take;
                }
                State::Done => break,
            }
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// Feeds `input` in pieces of `step` bytes; the body and the bytes left over.
    fn decode_in_steps(framing: Framing, input: &[u8], step: usize) -> Result<(Vec<u8>, usize), BodyError> {
        let mut decoder = Decoder::new(framing);
        let mut out = Vec::new();
        let mut at = 0;
        while at < input.len() && !decoder.done() {
            let end = (at + step).min(input.len());
            let used = decoder.decode(&input[at..end], &mut out, usize::MAX)?;
            at += used;
            if used == 0 {
                break;
            }
        }
        assert!(decoder.done(), "the body ended");
        Ok((out, input.len() - at))
    }

    #[test]
    fn lengths_stop_at_the_end_of_the_body() {
        for step in [1, 3, 100] {
            assert_eq!(decode_in_steps(Framing::Length(5), b"helloGET /", step), Ok((b"hello".to_vec(), 5)));
        }
        assert!(Decoder::new(Framing::Length(0)).done());
    }

    #[test]
    fn chunks_with_extensions_and_trailers() {
        let body = b"5;name=value\r\nhello\r\n6\r\n world\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
        for step in [1, 2, 7, 1000] {
            assert_eq!(
                decode_in_steps(Framing::Chunked, body, step),
                Ok((b"hello world0123456789".to_vec(), 4)),
                "step {step}"
            );
        }
        assert_eq!(decode_in_steps(Framing::Chunked, b"0\r\n\r\n", 1), Ok((vec![], 0)));
        assert_eq!(decode_in_steps(Framing::Chunked, b"3\nabc\r\n0\n\n", 1), Ok((b"abc".to_vec(), 0)), "bare LF");
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for bad in [&b"g\r\n"[..], b"\r\n", b"3\r\nabcX\r\n", b"11111111111111111\r\n", b";ext\r\n", b"3\r\nabc\rX"] {
            let mut decoder = Decoder::new(Framing::Chunked);
            assert_eq!(decoder.decode(bad, &mut Vec::new(), usize::MAX), Err(BodyError), "{bad:?}");
        }
        let long_line = [b'1', b';'].iter().copied().chain(core::iter::repeat_n(b'x', MAX_LINE)).collect::<Vec<_>>();
        assert_eq!(Decoder::new(Framing::Chunked).decode(&long_line, &mut Vec::new(), usize::MAX), Err(BodyError));
        let mut trailers = b"0\r\n".to_vec();
        trailers.extend(core::iter::repeat_n(b'x', MAX_TRAILERS + 1));
        assert_eq!(Decoder::new(Framing::Chunked).decode(&trailers, &mut Vec::new(), usize::MAX), Err(BodyError));
    }

    #[test]
    fn output_is_bounded_by_max() {
        let mut decoder = Decoder::new(Framing::Chunked);
        let mut out = Vec::new();
        let input = b"a\r\n0123456789\r\n0\r\n\r\n";
        let used = decoder.decode(input, &mut out, 4).unwrap();
        assert_eq!((out.as_slice(), used), (&b"0123"[..], 7));
        let used2 = decoder.decode(&input[used..], &mut out, 100).unwrap();
        assert_eq!(out, b"0123456789");
        assert_eq!(used + used2, input.len());
        assert!(decoder.done());
    }

    #[test]
    fn a_body_until_close_ends_with_the_connection() {
        let mut decoder = Decoder::new(Framing::UntilClose);
        let mut out = Vec::new();
        assert_eq!(decoder.decode(b"abc", &mut out, 2), Ok(2));
        assert_eq!(decoder.decode(b"c", &mut out, usize::MAX), Ok(1));
        assert!(!decoder.done());
        assert_eq!(decoder.end_of_input(), Ok(()));
        assert!(decoder.done() && out == b"abc");
        assert_eq!(Decoder::new(Framing::Length(3)).end_of_input(), Err(BodyError), "cut short");
        assert_eq!(Decoder::new(Framing::Length(0)).end_of_input(), Ok(()));
    }

    /// A huge declared size costs nothing until bytes arrive.
    #[test]
    fn a_declared_size_is_not_an_allocation() {
        let mut decoder = Decoder::new(Framing::Chunked);
        let mut out = Vec::new();
        assert_eq!(decoder.decode(b"ffffffffffffffff\r\nab", &mut out, usize::MAX), Ok(20));
        assert_eq!(out, b"ab");
        assert!(!decoder.done());
    }
}
