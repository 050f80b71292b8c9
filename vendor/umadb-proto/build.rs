// annals' copy of umadb-proto 0.7.8 (see README.annals.md): the one change
// is here. A `PROTOC` the user sets is used; otherwise the protoc that
// protoc-bin-vendored ships, so a fresh machine builds this crate with no
// protobuf compiler installed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: a build script is one thread; nothing reads the
        // environment concurrently.
        unsafe {
            std::env::set_var("PROTOC", protoc);
        }
    }
    tonic_prost_build::compile_protos("./proto/v1/umadb.proto")?;
    Ok(())
}
