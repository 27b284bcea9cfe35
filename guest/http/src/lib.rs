//! HTTP/1.1 as bytes, for the guest's `wasi:http` server (`wasmcell serve`), with no I/O of its
//! own: the guest kernel reads a connection into a buffer, asks [`request::parse`] whether a
//! request head is complete, decodes the body it reads next with a [`body::Decoder`], and
//! writes what [`response`] encodes. Everything a client sends is hostile: every size is
//! bounded here ([`request::MAX_HEAD`], [`request::MAX_HEADERS`], chunk-size digits), and
//! anything ambiguous about where a body ends (the requests smuggling lives on) is refused
//! rather than guessed.
#![no_std]

extern crate alloc;

pub mod body;
pub mod client;
pub mod fields;
pub mod request;
pub mod response;
