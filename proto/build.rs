//! Compiles `worker.proto` without a system `protoc`: protox builds the descriptor set in pure
//! Rust and tonic-prost-build generates the messages and the service from it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "antcode/worker/v1/worker.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["."])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
