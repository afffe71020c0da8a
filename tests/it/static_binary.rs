//! The gwsteer binary is linked statically against glibc
//! (`.cargo/static-bin-rustc`, see README "A static binary"): it starts
//! without `ld.so`, so it has no program interpreter and needs no shared
//! library. A build that lost the wrapper (a `RUSTC_WRAPPER` in the
//! environment replaces it) fails here instead of silently shipping a
//! slower, larger, libc-bound binary.

use std::fs;

const PT_INTERP: u32 = 3;
const PT_DYNAMIC: u32 = 2;
const DT_NEEDED: u64 = 1;

fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap()) as usize
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// `(p_type, p_offset, p_filesz)` of every program header of a
/// little-endian ELF64 file.
fn program_headers(elf: &[u8]) -> Vec<(u32, usize, usize)> {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not a 64-bit ELF file");
    assert_eq!(elf[5], 1, "not a little-endian ELF file");
    let phoff = u64_at(elf, 0x20) as usize;
    let phentsize = u16_at(elf, 0x36);
    let phnum = u16_at(elf, 0x38);
    (0..phnum)
        .map(|i| {
            let p = phoff + i * phentsize;
            (
                u32_at(elf, p),
                u64_at(elf, p + 8) as usize,
                u64_at(elf, p + 32) as usize,
            )
        })
        .collect()
}

#[test]
fn the_gwsteer_binary_needs_no_loader_and_no_shared_library() {
    if std::env::var("GWSTEER_DYNAMIC").as_deref() == Ok("1") {
        eprintln!("skipped: GWSTEER_DYNAMIC=1 asks for a dynamically linked build");
        return;
    }
    let path = env!("CARGO_BIN_EXE_gwsteer");
    let elf = fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let headers = program_headers(&elf);
    assert!(!headers.is_empty(), "{path}: no program headers");
    assert!(
        headers.iter().all(|(kind, _, _)| *kind != PT_INTERP),
        "{path} names a program interpreter (ld.so): it was linked dynamically"
    );
    // A static-pie binary keeps a dynamic section for its own relocations,
    // but it must not list a library to load.
    for (_, offset, size) in headers.iter().filter(|(kind, _, _)| *kind == PT_DYNAMIC) {
        for entry in elf[*offset..offset + size].chunks_exact(16) {
            assert_ne!(
                u64_at(entry, 0),
                DT_NEEDED,
                "{path} needs a shared library: it was linked dynamically"
            );
        }
    }
}

/// The check above can fail: a dynamically linked program on this machine
/// has an interpreter.
#[test]
fn a_dynamic_program_is_recognised() {
    let elf = fs::read("/bin/sh").expect("/bin/sh");
    assert!(
        program_headers(&elf)
            .iter()
            .any(|(kind, _, _)| *kind == PT_INTERP)
    );
}
