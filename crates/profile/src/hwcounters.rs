//! Hardware counters through perf_event_open(2): cycles, instructions, cache
//! references and misses, last-level-cache read misses, counted in user space on every
//! thread of this process (the sentron workers included) while a workload runs.
//!
//! Where the kernel or the hypervisor offers no PMU (typical on cloud VMs: perf reports
//! "not supported"), every counter is reported unavailable with the reason; nothing is
//! estimated in its place.

use serde::Serialize;

/// One counter's value, or why there is none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HwValue {
    pub name: &'static str,
    pub value: Option<u64>,
    pub error: Option<String>,
}

/// The counters of one measured span.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HwCounters {
    pub available: bool,
    /// Why not, when unavailable.
    pub reason: Option<String>,
    /// What was counted.
    pub scope: String,
    pub values: Vec<HwValue>,
}

/// (name, perf type, config).
const EVENTS: [(&str, u32, u64); 5] = [
    ("cycles", 0, 0),
    ("instructions", 0, 1),
    ("cache-references", 0, 2),
    ("cache-misses", 0, 3),
    // PERF_TYPE_HW_CACHE: LL | OP_READ << 8 | RESULT_MISS << 16.
    ("LLC-load-misses", 3, 2 | (1 << 16)),
];

/// Counters open on this process's threads.
pub struct HwSession {
    #[cfg(target_os = "linux")]
    fds: Vec<(usize, std::fs::File)>,
    errors: Vec<Option<String>>,
    threads: usize,
}

#[cfg(target_os = "linux")]
mod sys {
    /// The first 128 bytes of perf_event_attr (PERF_ATTR_SIZE_VER7); the rest zero.
    #[repr(C)]
    pub struct Attr {
        pub type_: u32,
        pub size: u32,
        pub config: u64,
        pub sample_period: u64,
        pub sample_type: u64,
        pub read_format: u64,
        /// Bit 5 exclude_kernel, bit 6 exclude_hv.
        pub flags: u64,
        pub rest: [u64; 10],
    }

    pub fn open(type_: u32, config: u64, tid: i32) -> Result<std::fs::File, String> {
        use std::os::fd::FromRawFd;
        let attr = Attr {
            type_,
            size: std::mem::size_of::<Attr>() as u32,
            config,
            sample_period: 0,
            sample_type: 0,
            read_format: 0,
            flags: (1 << 5) | (1 << 6),
            rest: [0; 10],
        };
        // SAFETY: attr is a valid, fully initialized perf_event_attr prefix of the size
        // it declares; the other arguments are plain integers.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const Attr,
                tid,
                -1i32,
                -1i32,
                0u64,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        // SAFETY: the kernel returned a new file descriptor that nothing else owns.
        Ok(unsafe { std::fs::File::from_raw_fd(fd as i32) })
    }
}

impl HwSession {
    /// Open every counter on every thread of this process now.
    pub fn start() -> HwSession {
        #[cfg(target_os = "linux")]
        {
            let tids: Vec<i32> = std::fs::read_dir("/proc/self/task")
                .map(|d| {
                    d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            let mut fds = Vec::new();
            let mut errors = vec![None; EVENTS.len()];
            for (i, &(_, ty, cfg)) in EVENTS.iter().enumerate() {
                for &tid in &tids {
                    match sys::open(ty, cfg, tid) {
                        Ok(f) => fds.push((i, f)),
                        Err(e) => {
                            errors[i] = Some(e);
                            break;
                        }
                    }
                }
            }
            HwSession {
                fds,
                errors,
                threads: tids.len(),
            }
        }
        #[cfg(not(target_os = "linux"))]
        HwSession {
            errors: vec![Some("perf_event exists on Linux only".into()); EVENTS.len()],
            threads: 0,
        }
    }

    /// Read and close the counters.
    pub fn stop(self, scope: &str) -> HwCounters {
        let mut sums = vec![0u64; EVENTS.len()];
        #[cfg(target_os = "linux")]
        for (i, f) in &self.fds {
            use std::io::Read;
            let mut b = [0u8; 8];
            if (&*f).read_exact(&mut b).is_ok() {
                sums[*i] += u64::from_le_bytes(b);
            }
        }
        let values: Vec<HwValue> = EVENTS
            .iter()
            .zip(&self.errors)
            .zip(&sums)
            .map(|((&(name, _, _), err), &v)| HwValue {
                name,
                value: err.is_none().then_some(v),
                error: err.clone(),
            })
            .collect();
        let available = values.iter().any(|v| v.value.is_some());
        HwCounters {
            available,
            reason: (!available).then(|| {
                format!(
                    "perf_event_open refused ({}); this kernel or hypervisor exposes no \
                     hardware counters (try --cachegrind)",
                    self.errors
                        .iter()
                        .flatten()
                        .next()
                        .map_or("no threads", |s| s.as_str())
                )
            }),
            scope: format!("{scope}; user space, {} threads", self.threads),
            values,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_values_or_reasons_never_both() {
        let s = HwSession::start();
        let mut x = 0u64;
        for i in 0..100_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        let c = s.stop("test");
        assert_eq!(c.values.len(), EVENTS.len());
        for v in &c.values {
            assert!(v.value.is_some() != v.error.is_some(), "{v:?}");
        }
        assert_eq!(c.available, c.reason.is_none());
        if let Some(v) = c.values.iter().find(|v| v.name == "instructions") {
            if let Some(n) = v.value {
                assert!(n > 100_000, "{n}");
            }
        }
    }
}
