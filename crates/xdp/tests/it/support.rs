//! Helpers shared by the test modules.

/// Keeps the calling test thread on the CPU it runs on, so that each
/// BPF_PROG_TEST_RUN of a test meets the same per-CPU budgets; restores the
/// thread's CPU set when dropped.
pub struct OnOneCpu {
    before: libc::cpu_set_t,
}

impl OnOneCpu {
    /// Pins the calling thread to the CPU it runs on now.
    pub fn pin() -> OnOneCpu {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: sched_getaffinity/sched_setaffinity read and write one
        // cpu_set_t we own (zeroed, which is a valid empty set), of the size
        // given, for the calling thread (pid 0); CPU_SET writes into it.
        #[allow(unsafe_code)]
        unsafe {
            let mut before: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(libc::sched_getaffinity(0, size, &mut before), 0);
            let cpu = libc::sched_getcpu();
            assert!(cpu >= 0, "sched_getcpu");
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize, &mut one);
            assert_eq!(libc::sched_setaffinity(0, size, &one), 0);
            OnOneCpu { before }
        }
    }
}

impl Drop for OnOneCpu {
    fn drop(&mut self) {
        // SAFETY: as in `pin`: one cpu_set_t of ours, for the calling thread.
        #[allow(unsafe_code)]
        unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.before);
        }
    }
}
