//! Lets the MT worker's binaries and tests find Intel's OpenMP runtime (`libiomp5.so`) at run
//! time without `LD_LIBRARY_PATH`: CTranslate2 is linked with it (ct2rs feature
//! `openmp-runtime-intel`), and it ships as a shared library only. The path is the MKL prefix the
//! build used (`MKLROOT`, set by `.cargo/config.toml` to the prefix `scripts/setup` fills). A
//! deployment that moves the binary installs `libiomp5.so` on the loader's path instead (the
//! Dockerfile does).

fn main() {
    println!("cargo::rerun-if-env-changed=MKLROOT");
    if let Some(root) = std::env::var_os("MKLROOT") {
        let lib = std::path::Path::new(&root).join("lib");
        println!("cargo::rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}
