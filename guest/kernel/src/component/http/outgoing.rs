//! `wasi:http/outgoing-handler`: not served yet. Every request is answered with an error that
//! says so (a component that calls other services fails at the call, visibly, rather than at
//! link time), and nothing leaves the workload.

use super::bindings::wasi::http::outgoing_handler;
use super::bindings::wasi::http::types::ErrorCode;
use super::{FutureIncomingResponse, OutgoingRequest, RequestOptions};
use crate::component::ComponentCtx;
use alloc::string::String;
use wasmtime::component::Resource;

impl outgoing_handler::Host for ComponentCtx {
    fn handle(
        &mut self,
        request: Resource<OutgoingRequest>,
        options: Option<Resource<RequestOptions>>,
    ) -> wasmtime::Result<Result<Resource<FutureIncomingResponse>, ErrorCode>> {
        let request = self.table.delete(request)?;
        self.http.sinks.remove(&request.sink);
        if let Some(options) = options {
            self.table.delete(options)?;
        }
        Ok(Err(ErrorCode::InternalError(Some(String::from(
            "wasmcell does not make outgoing HTTP requests yet (wasi:http/outgoing-handler)",
        )))))
    }
}
