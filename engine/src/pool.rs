//! Frame buffers allocated once at start-up and recycled through a return ring.
//!
//! A [`FramePool`] owns `frames` byte buffers of `capacity` bytes each, allocated (zeroed)
//! when the pool is built. [`FramePool::take`] hands one out wrapped in a [`FrameBuf`];
//! dropping the `FrameBuf`, on whatever thread, pushes the buffer back onto the pool's return
//! ring. Nothing is allocated after start-up: an empty pool makes `take` return `None` and
//! counts a miss instead of growing.
//!
//! ```text
//!        FramePool (Arc, shared by every stage)
//!   ┌────────────────────────────────────────────────────────┐
//!   │ return ring: ArrayQueue<Vec<u8>>, `frames` slots       │◄──────── drop(FrameBuf)
//!   │ ┌──────┬──────┬──────┬──────┬──────┐                   │          (any stage, an
//!   │ │ buf  │ buf  │ buf  │  --  │  --  │   misses, taken   │          evicted item, a
//!   │ └──────┴──────┴──────┴──────┴──────┘                   │          torn-down ring)
//!   └───────────┬────────────────────────────────────────────┘
//!               │ take() -> Option<FrameBuf>
//!               ▼
//!   FrameBuf { data: Vec<u8> (len == capacity, never grows), len, meta: FrameMeta }
//!              └ bytes [0, len) are the frame; [len, capacity) is stale spare room
//! ```
//!
//! The byte vector inside a `FrameBuf` is never exposed as a `Vec`, only as slices, so no
//! caller can make it reallocate: a frame that does not fit is an error
//! ([`PoolError::FrameTooLarge`]), not a hidden allocation. Returned buffers are not zeroed;
//! `len` goes back to 0 and the metadata to its default.
//!
//! The return ring is a [`crossbeam_queue::ArrayQueue`] (MPMC), because buffers come home
//! from several threads. Its memory ordering (a push happens-before the pop that returns the
//! item) is described in [`crate::ring`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;

/// Errors from building a pool or filling a buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A pool needs at least one buffer.
    #[error("a frame pool needs at least one buffer")]
    ZeroFrames,
    /// Buffers need at least one byte.
    #[error("frame buffer capacity must be at least 1 byte")]
    ZeroCapacity,
    /// The frame does not fit in the buffer; nothing was written.
    #[error("frame of {len} bytes does not fit a {capacity}-byte buffer")]
    FrameTooLarge {
        /// Bytes that were to be held.
        len: usize,
        /// Capacity of the buffer.
        capacity: usize,
    },
}

/// Metadata that travels with a frame through the stages. Set by the stage that fills the
/// buffer; the pool resets it to the default when the buffer comes home.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameMeta {
    /// Frame number assigned by the capture stage.
    pub index: u64,
    /// Capture time in nanoseconds on the capture source's monotonic clock (e.g. a PipeWire
    /// buffer's `pts`). Carried, never read here; later stages use it for latency accounting.
    pub capture_ns: u64,
    /// The encoded frame is a keyframe (IDR).
    pub keyframe: bool,
    /// Non-zero once packetized: the buffer holds datagrams of this many bytes back to back
    /// (the last may be shorter), ready for one UDP GSO send per burst.
    pub segment_size: u16,
    /// Video mode (resolution/rate) the frame belongs to, as numbered by whoever changes
    /// modes mid-stream (punktfunk/1 renegotiation); 0 for the initial mode.
    pub mode: u16,
    /// The frame interval (1 / frame rate) of the mode the frame belongs to, in nanoseconds;
    /// set by the source, carried unchanged by later stages. The send stage paces each frame
    /// over this interval × `pacing.frame_share`, so pacing follows a mode change from the
    /// first frame of the new mode on. 0: unknown (the send stage uses its own fallback).
    pub interval_ns: u32,
}

impl FrameMeta {
    /// [`FrameMeta::interval_ns`] for a frame rate (0 fps is treated as 1).
    pub fn interval_ns_for_fps(fps: u32) -> u32 {
        1_000_000_000 / fps.max(1)
    }

    /// The frame interval, if the source set one.
    pub fn interval(&self) -> Option<std::time::Duration> {
        (self.interval_ns > 0).then(|| std::time::Duration::from_nanos(u64::from(self.interval_ns)))
    }
}

/// Counter snapshot of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Buffers the pool was built with.
    pub frames: usize,
    /// Capacity of each buffer in bytes.
    pub capacity: usize,
    /// Buffers in the pool right now (not handed out).
    pub available: usize,
    /// Successful [`FramePool::take`] calls.
    pub taken: u64,
    /// [`FramePool::take`] calls that found the pool empty.
    pub misses: u64,
}

#[derive(Debug)]
struct PoolShared {
    free: ArrayQueue<Vec<u8>>,
    capacity: usize,
    taken: AtomicU64,
    misses: AtomicU64,
}

/// A fixed set of equally sized byte buffers. Cloning the handle shares the same buffers.
#[derive(Debug, Clone)]
pub struct FramePool {
    shared: Arc<PoolShared>,
}

impl FramePool {
    /// Allocates `frames` zeroed buffers of `capacity` bytes. The only allocation the pool
    /// ever makes.
    pub fn new(frames: usize, capacity: usize) -> Result<Self, PoolError> {
        if frames == 0 {
            return Err(PoolError::ZeroFrames);
        }
        if capacity == 0 {
            return Err(PoolError::ZeroCapacity);
        }
        let free = ArrayQueue::new(frames);
        for _ in 0..frames {
            // Cannot fail: the queue has exactly `frames` slots and we push `frames` buffers.
            let _ = free.push(vec![0u8; capacity]);
        }
        Ok(Self {
            shared: Arc::new(PoolShared {
                free,
                capacity,
                taken: AtomicU64::new(0),
                misses: AtomicU64::new(0),
            }),
        })
    }

    /// Hands out a buffer (length 0, default metadata), or `None` if all are in use. A `None`
    /// is counted in [`PoolStats::misses`]; the pool never allocates to cover it.
    pub fn take(&self) -> Option<FrameBuf> {
        match self.shared.free.pop() {
            Some(data) => {
                self.shared.taken.fetch_add(1, Ordering::Relaxed);
                Some(FrameBuf {
                    data,
                    len: 0,
                    meta: FrameMeta::default(),
                    home: Arc::clone(&self.shared),
                })
            }
            None => {
                self.shared.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Buffers in the pool right now.
    pub fn available(&self) -> usize {
        self.shared.free.len()
    }

    /// Buffers the pool was built with.
    pub fn frames(&self) -> usize {
        self.shared.free.capacity()
    }

    /// Capacity of each buffer in bytes.
    pub fn buffer_capacity(&self) -> usize {
        self.shared.capacity
    }

    /// A snapshot of the pool's counters.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            frames: self.frames(),
            capacity: self.shared.capacity,
            available: self.available(),
            taken: self.shared.taken.load(Ordering::Relaxed),
            misses: self.shared.misses.load(Ordering::Relaxed),
        }
    }
}

/// A buffer on loan from a [`FramePool`]: bytes `[0, len)` plus [`FrameMeta`].
/// Dropping it returns the buffer to its pool.
#[derive(Debug)]
pub struct FrameBuf {
    /// Always exactly `capacity` bytes long; never grown, shrunk or exposed as a `Vec`.
    data: Vec<u8>,
    len: usize,
    /// Frame metadata, free for the stages to read and write.
    pub meta: FrameMeta,
    home: Arc<PoolShared>,
}

impl FrameBuf {
    /// The frame bytes, `[0, len)`.
    pub fn as_slice(&self) -> &[u8] {
        &self.data[..self.len]
    }

    /// The frame bytes, `[0, len)`, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.data[..self.len]
    }

    /// The whole buffer, `[0, capacity)`, for a writer that fills it in place and then calls
    /// [`FrameBuf::set_len`]. Bytes past `len` are stale (left over from an earlier frame).
    pub fn spare_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// Sets the frame length after writing through [`FrameBuf::spare_mut`].
    pub fn set_len(&mut self, len: usize) -> Result<(), PoolError> {
        if len > self.data.len() {
            return Err(PoolError::FrameTooLarge {
                len,
                capacity: self.data.len(),
            });
        }
        self.len = len;
        Ok(())
    }

    /// Replaces the frame bytes with `bytes`.
    pub fn fill_from(&mut self, bytes: &[u8]) -> Result<(), PoolError> {
        self.len = 0;
        self.extend_from_slice(bytes)
    }

    /// Appends `bytes` to the frame. On error nothing is written.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<(), PoolError> {
        let end = self
            .len
            .checked_add(bytes.len())
            .filter(|&end| end <= self.data.len())
            .ok_or(PoolError::FrameTooLarge {
                len: self.len.saturating_add(bytes.len()),
                capacity: self.data.len(),
            })?;
        self.data[self.len..end].copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// Empties the frame (length 0); the bytes stay allocated.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Bytes in the frame.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the frame holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fixed capacity of the buffer in bytes.
    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Address of the buffer's first byte. Stable for the life of the pool; tests use it to
    /// show that buffers are recycled rather than reallocated.
    pub fn as_ptr(&self) -> *const u8 {
        self.data.as_ptr()
    }
}

impl Drop for FrameBuf {
    fn drop(&mut self) {
        // `Vec::new()` does not allocate; the real buffer goes home.
        let data = std::mem::take(&mut self.data);
        // Cannot fail: the return ring has one slot per buffer the pool made, and a FrameBuf
        // only ever goes back to the pool that made it. Were it to fail, the buffer would be
        // freed, which is a leak of capacity, never of memory.
        let returned = self.home.free.push(data);
        debug_assert!(returned.is_ok(), "frame pool return ring overflowed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_validated() {
        assert_eq!(FramePool::new(0, 8).unwrap_err(), PoolError::ZeroFrames);
        assert_eq!(FramePool::new(2, 0).unwrap_err(), PoolError::ZeroCapacity);
    }

    #[test]
    fn empty_pool_counts_a_miss_and_does_not_grow() {
        let pool = FramePool::new(2, 16).unwrap();
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        assert!(pool.take().is_none());
        assert!(pool.take().is_none());
        let s = pool.stats();
        assert_eq!((s.taken, s.misses, s.available, s.frames), (2, 2, 0, 2));
        drop(a);
        assert_eq!(pool.available(), 1);
        drop(b);
        assert_eq!(pool.available(), 2);
    }

    #[test]
    fn fill_and_bounds() {
        let pool = FramePool::new(1, 4).unwrap();
        let mut buf = pool.take().unwrap();
        assert!(buf.is_empty());
        buf.fill_from(&[1, 2, 3]).unwrap();
        assert_eq!(buf.as_slice(), &[1, 2, 3]);
        assert_eq!(
            buf.extend_from_slice(&[4, 5]),
            Err(PoolError::FrameTooLarge {
                len: 5,
                capacity: 4
            })
        );
        assert_eq!(buf.as_slice(), &[1, 2, 3], "a failed append writes nothing");
        buf.extend_from_slice(&[4]).unwrap();
        assert_eq!(buf.as_slice(), &[1, 2, 3, 4]);
        buf.as_mut_slice()[0] = 9;
        assert_eq!(
            buf.set_len(5),
            Err(PoolError::FrameTooLarge {
                len: 5,
                capacity: 4
            })
        );
        buf.spare_mut()[..2].copy_from_slice(&[7, 7]);
        buf.set_len(2).unwrap();
        assert_eq!(buf.as_slice(), &[7, 7]);
        assert_eq!(buf.capacity(), 4);
        buf.clear();
        assert_eq!(buf.len(), 0);
    }

    #[test]
    fn returned_buffers_are_reset_and_reused() {
        let pool = FramePool::new(3, 64).unwrap();
        let mut ptrs: Vec<*const u8> = Vec::new();
        let held: Vec<FrameBuf> = (0..3).map(|_| pool.take().unwrap()).collect();
        ptrs.extend(held.iter().map(FrameBuf::as_ptr));
        drop(held);
        for i in 0..1000u64 {
            let mut buf = pool.take().unwrap();
            assert!(buf.is_empty());
            assert_eq!(buf.meta, FrameMeta::default());
            assert_eq!(buf.capacity(), 64);
            assert!(
                ptrs.contains(&buf.as_ptr()),
                "buffer {i} was not one of the originals"
            );
            buf.fill_from(&i.to_le_bytes()).unwrap();
            buf.meta = FrameMeta {
                index: i,
                capture_ns: i * 1000,
                keyframe: true,
                segment_size: 8,
                mode: 3,
                interval_ns: 16_666_666,
            };
        }
        assert_eq!(pool.stats().misses, 0);
    }
}
