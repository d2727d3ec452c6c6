//! Link arguments of the image binary (`atomkernel-metal`) and of no other target.
//!
//! **Mechanism.** `cargo:rustc-link-arg-bin=NAME=ARG` hands `ARG` to the linker of binary
//! `NAME` only: the library, the tests and every other crate of the workspace link as before.
//! The image is a static, non-PIE ELF laid out by `link.ld` (loaded at 1 MiB, physical =
//! virtual), with no C runtime, no libc and no start files.
//!
//! **Invariant.** Nothing here changes how anything but the image binary is built.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let bin = "atomkernel-metal";
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        "-Wl,--build-id=none",
        "-Wl,-z,max-page-size=4096",
        "-Wl,-z,noexecstack",
        "-Wl,--gc-sections",
        &format!("-Wl,-T,{dir}/link.ld"),
    ] {
        println!("cargo:rustc-link-arg-bin={bin}={arg}");
    }
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
