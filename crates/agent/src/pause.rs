//! The pause container of `awsvpc` tasks.
//!
//! ECS gives an `awsvpc` task one network namespace, held by a "pause" container; every container
//! of the task joins it (`network_mode: container:<pause>`), so they share one IP and reach each
//! other on `localhost`. The ECS agent ships its pause image as a tarball and loads it at start;
//! with no registry to pull from, berth's agent *makes* its pause image the same way: a tiny
//! static program that sleeps in `pause(2)` forever, wrapped in a one-file root filesystem and
//! imported into the engine (`docker import`) when [`PAUSE_IMAGE`] is missing.
//!
//! The program is a hand-assembled static ELF (no libc, no interpreter): on x86_64
//! `loop: mov eax, 34 (pause); syscall; jmp loop`; on aarch64 (which has no `pause` syscall)
//! `loop: ppoll(NULL, 0, NULL, NULL); b loop`. Other architectures fail with a clear error.

use berth_runtime::{ContainerRuntime, RuntimeError};

/// The pause image berth makes (and the reference its containers use).
pub const PAUSE_IMAGE: &str = "berth/pause:1.0";
/// The task-definition name the pause container carries in its labels (as ECS's
/// `~internal~ecs~pause`).
pub const PAUSE_CONTAINER_NAME: &str = "~internal~ecs~pause";

/// The pause program for `arch` (Docker's `Architecture`: `x86_64`/`amd64`,
/// `aarch64`/`arm64`).
pub fn pause_elf(arch: &str) -> Result<Vec<u8>, String> {
    let (machine, code): (u16, Vec<u8>) = match arch {
        "x86_64" | "amd64" => (
            62, // EM_X86_64
            vec![
                0xb8, 0x22, 0x00, 0x00, 0x00, // mov eax, 34 (pause)
                0x0f, 0x05, // syscall
                0xeb, 0xf7, // jmp -9 (back to mov)
            ],
        ),
        "aarch64" | "arm64" => (
            183, // EM_AARCH64
            [
                0xd280_0000u32, // mov x0, #0
                0xd280_0001,    // mov x1, #0
                0xd280_0002,    // mov x2, #0
                0xd280_0003,    // mov x3, #0
                0xd280_0928,    // mov x8, #73 (ppoll)
                0xd400_0001,    // svc #0
                0x17ff_fffa,    // b -6 instructions
            ]
            .iter()
            .flat_map(|i| i.to_le_bytes())
            .collect(),
        ),
        other => {
            return Err(format!(
                "awsvpc needs a pause container, and berth can build its pause program only for x86_64 and aarch64 hosts (this engine reports {other:?})"
            ))
        }
    };
    const BASE: u64 = 0x40_0000;
    const EHDR: u64 = 64;
    const PHDR: u64 = 56;
    let entry = BASE + EHDR + PHDR;
    let total = EHDR + PHDR + code.len() as u64;
    let mut f = Vec::with_capacity(total as usize);
    // ELF header.
    f.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]); // 64-bit, little endian, v1, SysV
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&machine.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    f.extend_from_slice(&entry.to_le_bytes());
    f.extend_from_slice(&EHDR.to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    f.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    f.extend_from_slice(&(EHDR as u16).to_le_bytes()); // e_ehsize
    f.extend_from_slice(&(PHDR as u16).to_le_bytes()); // e_phentsize
    f.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    f.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    f.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    f.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
                                              // One PT_LOAD segment: the whole file, read + execute.
    f.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    f.extend_from_slice(&5u32.to_le_bytes()); // PF_R | PF_X
    f.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    f.extend_from_slice(&BASE.to_le_bytes()); // p_vaddr
    f.extend_from_slice(&BASE.to_le_bytes()); // p_paddr
    f.extend_from_slice(&total.to_le_bytes()); // p_filesz
    f.extend_from_slice(&total.to_le_bytes()); // p_memsz
    f.extend_from_slice(&0x1_0000u64.to_le_bytes()); // p_align (64 KiB covers 4K/16K/64K pages)
    f.extend_from_slice(&code);
    debug_assert_eq!(f.len() as u64, total);
    Ok(f)
}

/// A tar archive (ustar) holding one executable file `name` with `content`.
pub fn single_file_tar(name: &str, content: &[u8], mode: u32) -> Vec<u8> {
    let mut h = [0u8; 512];
    let put = |h: &mut [u8; 512], at: usize, bytes: &[u8]| {
        h[at..at + bytes.len()].copy_from_slice(bytes);
    };
    put(&mut h, 0, name.as_bytes());
    put(&mut h, 100, format!("{mode:07o}\0").as_bytes());
    put(&mut h, 108, b"0000000\0"); // uid
    put(&mut h, 116, b"0000000\0"); // gid
    put(&mut h, 124, format!("{:011o}\0", content.len()).as_bytes());
    put(&mut h, 136, b"00000000000\0"); // mtime
    put(&mut h, 148, b"        "); // checksum placeholder
    h[156] = b'0'; // regular file
    put(&mut h, 257, b"ustar\0");
    put(&mut h, 263, b"00");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(content);
    let pad = (512 - content.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad + 1024)); // padding + end-of-archive
    out
}

/// Makes [`PAUSE_IMAGE`] in the engine unless it is there already.
pub async fn ensure_pause_image<R: ContainerRuntime + ?Sized>(
    runtime: &R,
    arch: &str,
) -> Result<(), RuntimeError> {
    if runtime.image_exists(PAUSE_IMAGE).await? {
        return Ok(());
    }
    let elf = pause_elf(arch).map_err(|message| RuntimeError::Other { message })?;
    let tar = single_file_tar("pause", &elf, 0o755);
    runtime
        .import_image(
            tar,
            PAUSE_IMAGE,
            &[
                r#"ENTRYPOINT ["/pause"]"#.to_string(),
                "LABEL com.berth.pause=true".to_string(),
            ],
        )
        .await?;
    tracing::info!(image = PAUSE_IMAGE, %arch, "made the awsvpc pause image");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_shape() {
        let f = pause_elf("x86_64").unwrap();
        assert_eq!(&f[..4], b"\x7fELF");
        assert_eq!(f.len(), 64 + 56 + 9);
        assert_eq!(
            u64::from_le_bytes(f[24..32].try_into().unwrap()),
            0x40_0000 + 120
        );
        assert_eq!(pause_elf("aarch64").unwrap().len(), 64 + 56 + 28);
        let e = pause_elf("s390x").unwrap_err();
        assert!(
            e.contains("x86_64 and aarch64") && e.contains("s390x"),
            "{e}"
        );
    }

    #[test]
    fn tar_shape() {
        let t = single_file_tar("pause", b"abc", 0o755);
        assert_eq!(t.len() % 512, 0);
        assert_eq!(&t[257..262], b"ustar");
        assert_eq!(&t[512..515], b"abc");
        // The checksum counts the header with the checksum field as spaces.
        let mut h = t[..512].to_vec();
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let field = std::str::from_utf8(&t[148..154]).unwrap();
        assert_eq!(u32::from_str_radix(field, 8).unwrap(), sum);
    }

    /// The x86_64 program really runs and sleeps (it must not exit or crash).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x86_64_program_sleeps() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pause");
        std::fs::write(&path, pause_elf("x86_64").unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut child = std::process::Command::new(&path).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(child.try_wait().unwrap().is_none(), "pause exited");
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success());
    }
}
