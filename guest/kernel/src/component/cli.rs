//! `wasi:cli`: arguments and environment (the workload's, as preview 1 gives them), exit, the
//! standard streams (the console) and the terminal interfaces (wasmcell has no terminal: every
//! `get-terminal-*` is none, as `wasmtime run` answers when stdio is not a TTY).

use super::bindings::wasi::cli::{
    environment, exit, stderr, stdin, stdout, terminal_input, terminal_output, terminal_stderr, terminal_stdin,
    terminal_stdout,
};
use super::{ComponentCtx, InputStream, OutputStream};
use crate::virtio::console::Output;
use crate::wasi::WasiExit;
use alloc::string::String;
use alloc::vec::Vec;
use terminal_input::TerminalInput;
use terminal_output::TerminalOutput;
use wasmtime::component::Resource;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl environment::Host for ComponentCtx {
    fn get_environment(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self
            .wasi
            .env
            .iter()
            .map(|pair| {
                let (key, value) = pair.split_at(pair.iter().position(|&b| b == b'=').unwrap_or(pair.len()));
                (text(key), text(value.get(1..).unwrap_or_default()))
            })
            .collect())
    }

    fn get_arguments(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.wasi.args.iter().map(|arg| text(arg)).collect())
    }

    fn initial_cwd(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(None)
    }
}

impl exit::Host for ComponentCtx {
    fn exit(&mut self, status: Result<(), ()>) -> wasmtime::Result<()> {
        Err(wasmtime::Error::new(WasiExit(if status.is_ok() { 0 } else { 1 })))
    }

    fn exit_with_code(&mut self, code: u8) -> wasmtime::Result<()> {
        Err(wasmtime::Error::new(WasiExit(u32::from(code))))
    }
}

impl stdin::Host for ComponentCtx {
    fn get_stdin(&mut self) -> wasmtime::Result<Resource<InputStream>> {
        Ok(self.table.push(InputStream::Stdin)?)
    }
}

impl stdout::Host for ComponentCtx {
    fn get_stdout(&mut self) -> wasmtime::Result<Resource<OutputStream>> {
        Ok(self.table.push(OutputStream::Console(Output::Stdout))?)
    }
}

impl stderr::Host for ComponentCtx {
    fn get_stderr(&mut self) -> wasmtime::Result<Resource<OutputStream>> {
        Ok(self.table.push(OutputStream::Console(Output::Stderr))?)
    }
}

impl terminal_input::Host for ComponentCtx {}

impl terminal_input::HostTerminalInput for ComponentCtx {
    fn drop(&mut self, terminal: Resource<TerminalInput>) -> wasmtime::Result<()> {
        self.table.delete(terminal)?;
        Ok(())
    }
}

impl terminal_output::Host for ComponentCtx {}

impl terminal_output::HostTerminalOutput for ComponentCtx {
    fn drop(&mut self, terminal: Resource<TerminalOutput>) -> wasmtime::Result<()> {
        self.table.delete(terminal)?;
        Ok(())
    }
}

impl terminal_stdin::Host for ComponentCtx {
    fn get_terminal_stdin(&mut self) -> wasmtime::Result<Option<Resource<TerminalInput>>> {
        Ok(None)
    }
}

impl terminal_stdout::Host for ComponentCtx {
    fn get_terminal_stdout(&mut self) -> wasmtime::Result<Option<Resource<TerminalOutput>>> {
        Ok(None)
    }
}

impl terminal_stderr::Host for ComponentCtx {
    fn get_terminal_stderr(&mut self) -> wasmtime::Result<Option<Resource<TerminalOutput>>> {
        Ok(None)
    }
}
