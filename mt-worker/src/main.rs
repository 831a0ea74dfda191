//! `voxbridge-mt`: parses configuration and runs the MT worker until SIGTERM.

use clap::Parser;

/// With the `jemalloc` feature (default), jemalloc replaces glibc's allocator for the whole
/// process: the decoder's per-step buffers fragment glibc's heap under load.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options for this process, read before `main` (`MALLOC_CONF` in the environment
/// is read after them, so it still overrides them).
///
/// `oversize_threshold:0`: no separate arena for allocations of 8 MiB and more. jemalloc gives
/// them one that hands freed pages back to the kernel at once, and CTranslate2 allocates its
/// per-step buffers at that size (the logits of a decode batch of 6 at beam 4: 6 × 4 × 256,206
/// floats = 24.6 MB), so every decoding step faulted them in again: 6–8 million page faults in
/// 90 s of load, which cost 15 % of the throughput on an AMD EPYC VM (docs/BENCHMARKS.md, "Page
/// faults").
/// In the ordinary arenas freed pages wait the usual 10 s decay and are reused by the next step.
#[cfg(feature = "jemalloc")]
#[allow(unsafe_code)]
// SAFETY: jemalloc declares `const char *malloc_conf` (weak) and only reads it; this is the
// one definition in the process, a pointer to a NUL-terminated string that lives forever.
#[unsafe(export_name = "malloc_conf")]
static MALLOC_CONF: &u8 = &b"oversize_threshold:0\0"[0];

/// The value of the option [`MALLOC_CONF`] sets, read back from jemalloc.
#[cfg(feature = "jemalloc")]
#[allow(unsafe_code)]
fn jemalloc_oversize_threshold() -> Option<usize> {
    // SAFETY: `opt.oversize_threshold` is a `size_t` option; the name is NUL-terminated.
    unsafe { tikv_jemalloc_ctl::raw::read::<usize>(b"opt.oversize_threshold\0") }.ok()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = voxbridge_mt::Config::parse();
    voxbridge_shared::telemetry::init(&config.telemetry);
    #[cfg(feature = "jemalloc")]
    tracing::info!(
        oversize_threshold = jemalloc_oversize_threshold(),
        "allocator: jemalloc (options: MALLOC_CONF)"
    );
    if cfg!(feature = "jemalloc") && config.mmap_threshold_kb > 0 {
        tracing::warn!(
            "--mmap-threshold-kb tunes glibc's malloc, which this build does not use (jemalloc); \
             build with --no-default-features to use it"
        );
    }
    let shutdown = voxbridge_shared::shutdown::on_signal();
    voxbridge_mt::run(config, shutdown).await
}

#[cfg(all(test, feature = "jemalloc"))]
mod tests {
    #[test]
    fn jemalloc_runs_with_the_options_the_worker_sets() {
        // A `MALLOC_CONF` in the test's environment would override them.
        if std::env::var_os("MALLOC_CONF").is_none() {
            assert_eq!(super::jemalloc_oversize_threshold(), Some(0));
        }
    }
}
