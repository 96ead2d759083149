//! 200 concurrent export jobs in one host process share one I/O scheduler
//! and a bounded set of job threads: every job completes and its export
//! verifies, and the process's thread count stays bounded throughout.
//!
//! One test in its own binary, so the thread count is this test's alone.

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use refpoint::export::ExportOptions;
    use refpoint::fixture::{Fill, FixtureSpec, make_fixture};
    use refpoint::service::Refpoint;

    /// `Threads:` of `/proc/self/status`.
    fn threads() -> usize {
        std::fs::read_to_string("/proc/self/status")
            .expect("status")
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("Threads line")
    }

    #[test]
    fn two_hundred_concurrent_exports_complete_with_bounded_threads() {
        let temp = tempfile::tempdir().expect("tempdir");
        let rp = Refpoint::init(&temp.path().join("host")).expect("host init");
        let fixture = make_fixture(
            &mut rp.host(),
            &FixtureSpec {
                name: "many".to_owned(),
                disks: 2,
                size: 8 << 20,
                seed: 11,
                block_size: 1 << 20,
                fill: Fill::Scattered { writes: 6 },
                writes_after: 0,
                directory: temp.path().join("disks"),
            },
        )
        .expect("fixture");
        std::fs::create_dir(temp.path().join("exports")).expect("exports directory");
        let before = threads();
        let peak = AtomicUsize::new(before);
        let done = AtomicBool::new(false);

        /// Stops the sampler however the scope ends (a panic included).
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let states = std::thread::scope(|s| {
            let _done = Done(&done);
            s.spawn(|| {
                while !done.load(Ordering::SeqCst) {
                    peak.fetch_max(threads(), Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
            let ids: Vec<String> = (0..200)
                .map(|i| {
                    rp.export(
                        &fixture.reference_point,
                        &temp.path().join(format!("exports/{i:03}")),
                        &ExportOptions::default(),
                    )
                    .expect("export accepted")
                })
                .collect();
            let states: Vec<_> = ids
                .iter()
                .map(|id| rp.wait(id).expect("job").job_state)
                .collect();
            states
        });

        assert!(
            states
                .iter()
                .all(|s| *s == refpoint::jobs::JobState::Completed),
            "{states:?}"
        );
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Job runners, I/O workers, the sampler, and a little room for the
        // test harness's own threads.
        let bound = before + refpoint::jobs::DEFAULT_MAX_RUNNING_JOBS + cores + 1 + 4;
        let peak = peak.into_inner();
        println!("threads: {before} before, peak {peak} during 200 exports (bound {bound})");
        assert!(peak <= bound, "peak {peak} threads > {bound}");
        for i in (0..200).step_by(40) {
            let folder = temp.path().join(format!("exports/{i:03}"));
            let vm = std::fs::read_dir(&folder)
                .expect("export folder")
                .next()
                .expect("VM folder")
                .expect("entry")
                .path();
            let report = refpoint::engine::verify(&vm).expect("verify");
            assert!(report.is_ok(), "{report}");
        }
    }
}
