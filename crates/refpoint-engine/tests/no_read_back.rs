//! The one-pass export never reads an output back: the bytes the process
//! reads during `execute` (`rchar` of `/proc/self/io`, every read syscall)
//! are the source bytes it reports, not the source plus the outputs.
//!
//! One test in its own binary, so no other test's reads are counted.

mod common;

#[cfg(test)]
mod tests {
    use crate::common::*;
    use refpoint_engine::{Unattended, execute, plan};

    /// `rchar` of this process: bytes returned by read-like syscalls.
    fn rchar() -> u64 {
        let io = std::fs::read_to_string("/proc/self/io").expect("read /proc/self/io");
        io.lines()
            .find_map(|l| l.strip_prefix("rchar: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("rchar line")
    }

    #[test]
    fn export_reads_only_its_sources_never_its_outputs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let source = tmp.path().join("data.vhdx");
        qemu_create(&source, 64 * MIB, 2);
        for i in 0..8u64 {
            qemu_write(
                &source,
                0x40 + u8::try_from(i).expect("small"),
                i * 8 * MIB,
                2 * MIB,
            );
        }
        let req = request(
            &tmp.path().join("exports"),
            vec![disk("disk-0", "d", std::slice::from_ref(&source))],
        );
        let planned = plan(&req).expect("plan");

        let before = rchar();
        let outcome = execute(planned, &Unattended, &config()).expect("export");
        let read = rchar() - before;

        let output = outcome.disks[0].size;
        assert_eq!(outcome.bytes_read, 16 * MIB);
        assert!(output > 16 * MIB, "output {output} bytes");
        // Reading the output back would add at least its 16 MiB of payload.
        assert!(
            read < outcome.bytes_read + MIB,
            "read {read} bytes for {} source bytes and a {output}-byte output",
            outcome.bytes_read
        );
        let raw = qemu_raw(&outcome.disks[0].path);
        assert_eq!(raw, qemu_raw(&source));
    }
}
