# Passed to every CMake build cargo runs for this workspace (CMAKE_TOOLCHAIN_FILE in
# .cargo/config.toml). It only presets cache variables; projects that do not know them ignore
# them (CMake prints "Manually-specified variables were not used", which is harmless).
#
# oneDNN (built by the onednn-src crate for ct2rs' `dnnl` feature): CTranslate2 calls the
# BLAS-like GEMM functions (always built), convolution (Conv1D layers) and reorder. Building only
# those primitives compiles about 380 files instead of about 1,500 and keeps the library smaller.
set(ONEDNN_ENABLE_PRIMITIVE "CONVOLUTION;REORDER" CACHE STRING "oneDNN primitives to build")
set(ONEDNN_BUILD_GRAPH OFF CACHE BOOL "oneDNN graph API")
