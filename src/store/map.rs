//! The one file of the store with `unsafe`: the mapped data file (or, with
//! no cache_dir, an anonymous mapping) as raw memory (memmap2's `MmapRaw`,
//! never a shared `MmapMut`), reads and writes
//! into it, the atomic generation word of each slot header, zero-copy
//! `Bytes` views under a lease, and `posix_fallocate`.
//!
//! Soundness rests on the slot ownership protocol kept by `dir.rs`, the only
//! user of this module:
//! - a slot's payload and header bytes 8..64 are written only by the one
//!   writer that reserved the slot from the free set, before it publishes
//!   the header's generation (a Release store);
//! - they are read only for slots of a committed entry, after an Acquire
//!   load of the generation, and only while a lease pins the entry, so no
//!   writer can reserve those slots meanwhile;
//! - the generation word (bytes 0..8) is the only part written while
//!   readers may look, and it is accessed only atomically;
//! - the data file is locked exclusively (a second cuttle is refused), and
//!   never truncated while mapped. A process outside cuttle writing the
//!   file would break these rules; nothing can prevent that. An anonymous
//!   mapping is private to this process: nobody else can reach it.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{MmapOptions, MmapRaw};

/// A region of memory holding one data file's image.
pub(crate) struct Region {
    ptr: *mut u8,
    len: usize,
    /// False for a read-only mapping (`cuttle store verify`): writing to it
    /// is a bug, caught here rather than as SIGSEGV.
    writable: bool,
    backing: Backing,
}

enum Backing {
    /// The real thing: the locked data file, mapped shared.
    File { map: MmapRaw, _file: File },
    /// Memory of this process only (the store of a config without
    /// cache_dir): zero-filled, gone at exit; nothing to flush.
    Anonymous { _map: MmapRaw },
    /// Test memory that records every write since the last flush, so a test
    /// can build the image a power cut would leave.
    #[cfg(test)]
    Heap {
        _words: Box<[AtomicU64]>,
        journal: std::sync::Mutex<journal::Journal>,
    },
}

// SAFETY: the region is plain memory; every access follows the slot
// ownership protocol above, which makes concurrent use from several threads
// free of data races. MmapRaw and File are Send + Sync themselves.
unsafe impl Send for Region {}
// SAFETY: as for Send.
unsafe impl Sync for Region {}

impl Region {
    /// Maps `file` (already locked and sized to `len`), shared, read-write
    /// unless `writable` is false.
    pub(crate) fn map_file(file: File, len: u64, writable: bool) -> io::Result<Region> {
        let len_usize = usize::try_from(len).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "data file too large to map")
        })?;
        let mut options = MmapOptions::new();
        options.len(len_usize);
        let map = if writable {
            options.map_raw(&file)?
        } else {
            options.map_raw_read_only(&file)?
        };
        Ok(Region {
            ptr: map.as_mut_ptr(),
            len: len_usize,
            writable,
            backing: Backing::File { map, _file: file },
        })
    }

    /// A private anonymous mapping of `len` bytes, zero-filled (an empty
    /// image, which reads as a fresh store). Pages are taken as they are
    /// first written.
    pub(crate) fn anonymous(len: u64) -> io::Result<Region> {
        let len_usize = usize::try_from(len).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "memory store too large to map")
        })?;
        // Turned into raw memory at once: nothing ever holds it as `&mut`.
        let map = MmapRaw::from(MmapOptions::new().len(len_usize).map_anon()?);
        Ok(Region {
            ptr: map.as_mut_ptr(),
            len: len_usize,
            writable: true,
            backing: Backing::Anonymous { _map: map },
        })
    }

    /// Panics (a bug in dir.rs, never input-driven) when the range is outside
    /// the region: every offset comes from the validated geometry.
    fn check(&self, off: u64, len: usize) -> usize {
        let off = usize::try_from(off).unwrap_or(usize::MAX);
        assert!(
            off <= self.len && len <= self.len - off,
            "store region access out of bounds: {off}+{len} > {}",
            self.len
        );
        off
    }

    /// The bytes at `off..off+len`. Callers hold the slots (reserved or
    /// leased) that the range belongs to, per the protocol above.
    pub(crate) fn read(&self, off: u64, len: usize) -> &[u8] {
        let off = self.check(off, len);
        // SAFETY: in bounds (checked); the memory stays mapped while `self`
        // lives; by the ownership protocol nobody writes these bytes while
        // the caller may read them.
        unsafe { std::slice::from_raw_parts(self.ptr.add(off), len) }
    }

    /// Copies `data` to `off`. Callers own (reserved) the slot it belongs to.
    pub(crate) fn write(&self, off: u64, data: &[u8]) {
        assert!(self.writable, "write to a read-only store");
        let at = self.check(off, data.len());
        // SAFETY: in bounds (checked); the writer that reserved the slot is
        // the only one touching these bytes, and no reader looks at them
        // before the generation is published.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(at), data.len()) };
        self.record(off, data);
    }

    fn generation_word(&self, off: u64) -> &AtomicU64 {
        let at = self.check(off, 8);
        assert!(
            at.is_multiple_of(8),
            "generation word must be 8-byte aligned"
        );
        // SAFETY: in bounds and aligned (checked); the mapping is page
        // aligned. The word is only ever accessed through this atomic.
        unsafe { AtomicU64::from_ptr(self.ptr.add(at).cast::<u64>()) }
    }

    /// Acquire-loads the little-endian generation word at `off`.
    pub(crate) fn load_generation(&self, off: u64) -> u64 {
        u64::from_le(self.generation_word(off).load(Ordering::Acquire))
    }

    /// Release-stores the generation word at `off`: publishes everything
    /// written before it in this slot.
    pub(crate) fn store_generation(&self, off: u64, generation: u64) {
        assert!(self.writable, "write to a read-only store");
        self.generation_word(off)
            .store(generation.to_le(), Ordering::Release);
        self.record(off, &generation.to_le_bytes());
    }

    /// The 64 bytes of a slot header: the generation word read atomically,
    /// the rest copied (nobody writes it while the caller may look).
    pub(crate) fn read_header(&self, off: u64) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..8].copy_from_slice(&self.load_generation(off).to_le_bytes());
        out[8..].copy_from_slice(self.read(off + 8, 56));
        out
    }

    /// Writes header bytes 8..64; the generation is published separately.
    pub(crate) fn write_header_body(&self, off: u64, header: &[u8; 64]) {
        self.write(off + 8, &header[8..]);
    }

    /// A zero-copy view of `off..off+len` that keeps `lease` (which pins
    /// the slots of the range) and the region alive as long as any clone
    /// of the `Bytes` lives.
    pub(crate) fn view<L: Send + Sync + 'static>(
        self: &Arc<Self>,
        lease: Arc<L>,
        off: u64,
        len: usize,
    ) -> Bytes {
        let at = self.check(off, len);
        Bytes::from_owner(View {
            region: Arc::clone(self),
            _lease: lease,
            at,
            len,
        })
    }

    pub(crate) fn is_writable(&self) -> bool {
        self.writable
    }

    /// Writes dirty pages of `off..off+len` back to the file and waits.
    pub(crate) fn flush_range(&self, off: u64, len: usize) -> io::Result<()> {
        let at = self.check(off, len);
        match &self.backing {
            Backing::File { map, .. } => map.flush_range(at, len),
            Backing::Anonymous { .. } => Ok(()),
            #[cfg(test)]
            Backing::Heap { .. } => self.heap_flush_range(at, len),
        }
    }

    /// Writes every dirty page back to the file and waits.
    pub(crate) fn flush(&self) -> io::Result<()> {
        match &self.backing {
            Backing::File { map, .. } => map.flush(),
            Backing::Anonymous { .. } => Ok(()),
            #[cfg(test)]
            Backing::Heap { .. } => self.heap_flush(),
        }
    }

    #[cfg(not(test))]
    fn record(&self, _off: u64, _data: &[u8]) {}
}

/// The owner behind a zero-copy `Bytes`.
struct View<L> {
    region: Arc<Region>,
    _lease: Arc<L>,
    at: usize,
    len: usize,
}

impl<L> AsRef<[u8]> for View<L> {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: bounds were checked when the view was made; the region is
        // kept mapped by `region`, and the lease keeps the slots from being
        // reserved by a writer, so the bytes do not change while viewed.
        unsafe { std::slice::from_raw_parts(self.region.ptr.add(self.at), self.len) }
    }
}

/// Reserves `len` bytes of disk for `file` (so a full disk fails here, not
/// later as SIGBUS on a page fault into a sparse hole).
pub(crate) fn allocate(file: &File, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file size too large"))?;
    // SAFETY: plain FFI call on a valid open descriptor; no memory is passed.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc == 0 {
        Ok(())
    } else {
        // posix_fallocate returns the error number instead of setting errno.
        Err(io::Error::from_raw_os_error(rc))
    }
}

#[cfg(test)]
pub(crate) mod journal {
    //! Test-only memory that remembers writes since the last flush.

    use super::*;

    #[derive(Default)]
    pub(crate) struct Journal {
        /// The image as of the last flush: what survives any power cut.
        pub durable: Vec<u8>,
        /// Writes since then, in order: (offset, bytes).
        pub pending: Vec<(u64, Vec<u8>)>,
    }

    impl Region {
        /// A heap region holding `image` (its length a multiple of 8).
        pub(crate) fn heap(image: &[u8]) -> Region {
            assert!(image.len().is_multiple_of(8));
            let words: Box<[AtomicU64]> = image
                .chunks_exact(8)
                .map(|c| AtomicU64::new(u64::from_ne_bytes(c.try_into().expect("8 bytes"))))
                .collect();
            let ptr = words.as_ptr() as *mut u8;
            Region {
                ptr,
                len: image.len(),
                writable: true,
                backing: Backing::Heap {
                    _words: words,
                    journal: std::sync::Mutex::new(Journal {
                        durable: image.to_vec(),
                        pending: Vec::new(),
                    }),
                },
            }
        }

        fn journal(&self) -> Option<&std::sync::Mutex<Journal>> {
            match &self.backing {
                Backing::Heap { journal, .. } => Some(journal),
                Backing::File { .. } | Backing::Anonymous { .. } => None,
            }
        }

        pub(super) fn record(&self, off: u64, data: &[u8]) {
            if let Some(j) = self.journal() {
                j.lock()
                    .expect("journal lock")
                    .pending
                    .push((off, data.to_vec()));
            }
        }

        /// Only `at..at+len` becomes durable; later writes elsewhere stay pending.
        pub(super) fn heap_flush_range(&self, at: usize, len: usize) -> io::Result<()> {
            if let Some(j) = self.journal() {
                let mut j = j.lock().expect("journal lock");
                let end = at + len;
                j.durable[at..end].copy_from_slice(self.read(at as u64, len));
                let pending = std::mem::take(&mut j.pending);
                for (off, bytes) in pending {
                    let (start, stop) = (off as usize, off as usize + bytes.len());
                    // Keep the parts of each write outside the flushed range.
                    if start < at {
                        let cut = stop.min(at);
                        j.pending.push((off, bytes[..cut - start].to_vec()));
                    }
                    if stop > end {
                        let from = start.max(end);
                        j.pending
                            .push((from as u64, bytes[from - start..].to_vec()));
                    }
                }
            }
            Ok(())
        }

        pub(super) fn heap_flush(&self) -> io::Result<()> {
            if let Some(j) = self.journal() {
                let mut j = j.lock().expect("journal lock");
                j.durable = self.read(0, self.len).to_vec();
                j.pending.clear();
            }
            Ok(())
        }

        /// The durable image and the writes since, for building crash images.
        pub(crate) fn take_journal(&self) -> Journal {
            self.journal()
                .map(|j| std::mem::take(&mut *j.lock().expect("journal lock")))
                .unwrap_or_default()
        }
    }
}
