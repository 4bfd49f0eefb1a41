//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and generates
//! the tonic services and prost messages, plus the encoded descriptor set that
//! gRPC server reflection serves.

use std::{env, fs, path::PathBuf};

use protox::prost::Message;

const PROTO_ROOT: &str = "proto";
const PROTO_FILES: &[&str] = &[
    "mfi/ledger/v1/types.proto",
    "mfi/ledger/v1/branch_service.proto",
    "mfi/ledger/v1/audit_service.proto",
    "mfi/ledger/v1/product_service.proto",
    "mfi/ledger/v1/access_service.proto",
    "mfi/ledger/v1/proof_service.proto",
    "mfi/ledger/v1/books_service.proto",
    "mfi/ledger/v1/operations_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    let file_descriptors = protox::compile(PROTO_FILES, [PROTO_ROOT])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("mfi_ledger_descriptor.bin"),
        file_descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(file_descriptors)?;
    Ok(())
}
