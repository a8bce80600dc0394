//! The `trails` command: parse arguments, run, map the outcome to an exit status.

/// mimalloc instead of glibc's malloc: the ingest service allocates per event from many
/// threads, and glibc's arenas cost it a sixth of its CPU (measured with `perf` on batches).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    trails::cli::main()
}
