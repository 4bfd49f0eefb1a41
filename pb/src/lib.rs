//! Generated protobuf messages and gRPC services of `mfi.ledger.v1`
//! (`../proto/`), with the encoded descriptor set that gRPC server
//! reflection serves. The service uses it as `mfi_ledger::pb`.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

tonic::include_proto!("mfi.ledger.v1");

/// Encoded descriptor set of the protos, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("mfi_ledger_descriptor");
