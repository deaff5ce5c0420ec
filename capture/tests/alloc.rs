//! The per-frame paths allocate nothing on the Rust heap once set up: pattern render, stamp
//! read, H.264 encode into a caller buffer, tone fill and Opus encode. (openh264 and libopus
//! manage their own C/C++ memory, which this allocator does not see.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use punktfunk_capture::audio::{OpusConfig, OpusEncoder, ToneSource};
use punktfunk_capture::h264::OpenH264Encoder;
use punktfunk_capture::pattern::TestPattern;
use punktfunk_capture::{VideoEncoder, VideoEncoderConfig, read_stamp};

struct CountingAlloc;

thread_local! {
    // Const-initialised and without a destructor: reading it never allocates or registers
    // anything, so it is safe to touch from inside the allocator.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_allocation() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

fn allocations_on_this_thread() -> u64 {
    ALLOCATIONS.try_with(Cell::get).unwrap_or(0)
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is exactly `System`'s; counting touches only a thread-local `Cell`.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: forwarded unchanged; `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[test]
fn steady_state_allocates_nothing() {
    let config = VideoEncoderConfig {
        width: 640,
        height: 360,
        fps: 60,
        bitrate_kbps: 3_000,
    };
    let mut pattern = TestPattern::new(640, 360).unwrap().with_noise(true);
    let mut frame = pattern.new_frame();
    let mut enc = OpenH264Encoder::new(config).unwrap();
    let mut out = vec![0u8; enc.max_encoded_len()];

    let audio = OpusConfig::stereo();
    let mut tone = ToneSource::for_channels(2).unwrap();
    let mut opus = OpusEncoder::new(audio).unwrap();
    let mut pcm = vec![0f32; audio.pcm_len()];
    let mut packet = vec![0u8; audio.cbr_packet_len()];

    // Warm up: the first encode initialises openh264 (and the IDR path).
    pattern.render(&mut frame, 0, 0).unwrap();
    enc.encode(&frame, &mut out).unwrap();

    let before = allocations_on_this_thread();
    for i in 1..30u64 {
        if i == 15 {
            enc.request_idr();
        }
        pattern.render(&mut frame, i, i * 16_667).unwrap();
        assert!(read_stamp(frame.y(), 640, 360, 640).is_some());
        let e = enc.encode(&frame, &mut out).unwrap();
        assert!(e.len > 0);
        for _ in 0..3 {
            tone.fill_f32(&mut pcm).unwrap();
            assert_eq!(opus.encode_f32(&pcm, &mut packet).unwrap(), 60);
        }
    }
    assert_eq!(allocations_on_this_thread() - before, 0);
}
