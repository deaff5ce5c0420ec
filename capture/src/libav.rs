//! Encoders (and, for tests and benches, decoders) through FFmpeg's libavcodec: libx264,
//! libx265, libaom-av1 and libsvtav1 in software; h264_nvenc/hevc_nvenc and h264_vaapi/hevc_vaapi
//! selectable by name where the machine has the hardware (feature `libav`).
//!
//! ```text
//!  Frame (any Layout) ─copy or convert─► AVFrame ─avcodec_send_frame─► encoder
//!                                                    ◄─avcodec_receive_packet── AVPacket
//!  AVPacket ─copy─► caller's buffer: one access unit (Annex-B for H.264/HEVC, OBUs for AV1)
//! ```
//!
//! Low-latency settings per encoder, and why (docs/capture.md "Encoders"):
//!
//! | encoder    | settings                                                                  |
//! |------------|---------------------------------------------------------------------------|
//! | libx264    | preset from config (default superfast), tune zerolatency, keyint=infinite, scenecut 0, no B-frames, forced IDR, High / High 4:4:4 |
//! | libx265    | preset ultrafast, tune zerolatency, keyint -1 (infinite), scenecut 0, no B-frames, repeat headers, forced IDR, no info SEI |
//! | libsvtav1  | preset 12, low-delay prediction structure (pred-struct 1), capped CRF 30 (mbr = bitrate), keyint -1, no scene detection; IDR = a new encoder |
//! | libaom-av1 | usage realtime, cpu-used 6, lag-in-frames 0, row-mt, 2×2 tiles, no AQ; key frame on request |
//! | *_nvenc    | preset p1, tune ull, zerolatency, no B-frames, infinite GOP, forced IDR    |
//!
//! All but SVT-AV1: target bitrate with a four-frame VBV (`rc_max_rate = bit_rate`,
//! `rc_buffer_size = 4 × bit_rate / fps`, [`VBV_FRAMES`]); all: BT.709 limited range in the VUI (BT.2020/PQ for 10-bit),
//! parameter sets in band (no global header), one access unit out per frame in: the encoder
//! is asked for its packet right after the frame is sent; SVT-AV1 holds frames back and is
//! drained later ([`pipelined`]).
//!
//! Act: the FFI into libavcodec/libavutil (`ffmpeg-sys-next`, bindings generated against the
//! system headers). Every pointer is owned by one [`LibavEncoder`]/[`LibavDecoder`] and freed
//! on drop. (`unsafe` is allowed for this module in lib.rs.)

use std::ffi::{CStr, CString, c_int};
use std::ptr;
use std::time::{Duration, Instant};

use ffmpeg_sys_next as ff;

use crate::frame::Frame;
use crate::video::{
    EncodeError, EncodedFrame, FrameKind, VideoCodec, VideoEncoder, VideoEncoderConfig, VideoFormat,
};

/// Longest wait for the packet of a frame just sent.
pub const OUTPUT_DEADLINE: Duration = Duration::from_secs(1);

/// The libavcodec encoder this host uses for `format` in software, by preference.
pub fn software_encoder(format: VideoFormat) -> &'static str {
    match format.codec {
        VideoCodec::H264 => "libx264",
        VideoCodec::Hevc => "libx265",
        VideoCodec::Av1 => "libaom-av1",
    }
}

/// Whether this libavcodec has an encoder called `name` (e.g. "libx265", "hevc_nvenc"). Having
/// it does not mean the hardware behind it is there: [`LibavEncoder::new`] finds out.
pub fn has_encoder(name: &str) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string; the call only reads it.
    !unsafe { ff::avcodec_find_encoder_by_name(c.as_ptr()) }.is_null()
}

/// Whether `name` can encode `format` at all (its pixel formats): 10-bit and 4:4:4 need
/// encoders built for them.
pub fn encoder_supports(name: &str, format: VideoFormat) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: valid C string; the returned codec is a static descriptor or null.
    let codec = unsafe { ff::avcodec_find_encoder_by_name(c.as_ptr()) };
    if codec.is_null() {
        return false;
    }
    let want = pixel_format(name, format);
    // SAFETY: codec is a valid static AVCodec; pix_fmts is null or a list ending in NONE.
    let mut p = unsafe { (*codec).pix_fmts };
    if p.is_null() {
        return false;
    }
    loop {
        // SAFETY: within the NONE-terminated list.
        let f = unsafe { *p };
        if f == ff::AVPixelFormat::AV_PIX_FMT_NONE {
            return false;
        }
        if f == want {
            return true;
        }
        // SAFETY: the list continues until NONE.
        p = unsafe { p.add(1) };
    }
}

/// The pixel format fed to `encoder` for `format`. NVENC takes its own layouts; the software
/// encoders planar YUV.
fn pixel_format(encoder: &str, format: VideoFormat) -> ff::AVPixelFormat {
    use ff::AVPixelFormat::*;
    let nvenc = encoder.ends_with("_nvenc");
    match (format.ten_bit, format.yuv444, nvenc) {
        (false, false, _) => AV_PIX_FMT_YUV420P,
        (false, true, _) => AV_PIX_FMT_YUV444P,
        (true, false, false) => AV_PIX_FMT_YUV420P10LE,
        (true, false, true) => AV_PIX_FMT_P010LE,
        (true, true, _) => AV_PIX_FMT_YUV444P10LE,
    }
}

/// libavcodec's message for an error code.
fn av_error(code: c_int) -> String {
    let mut buf = [0 as std::ffi::c_char; 128];
    // SAFETY: buf is writable for its length; av_strerror NUL-terminates within it.
    unsafe { ff::av_strerror(code, buf.as_mut_ptr(), buf.len()) };
    // SAFETY: NUL-terminated by av_strerror (or all zeros).
    let msg = unsafe { CStr::from_ptr(buf.as_ptr()) };
    format!("{} ({code})", msg.to_string_lossy())
}

fn eagain() -> c_int {
    -libc::EAGAIN
}

/// Encoder buffer (VBV) in frames of the target bitrate, for every encoder but SVT-AV1.
pub const VBV_FRAMES: i64 = 4;

/// Options of one encoder, set on its private context before it is opened.
fn encoder_options(
    name: &str,
    format: VideoFormat,
    config: VideoEncoderConfig,
    preset: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut o: Vec<(&'static str, String)> = Vec::new();
    match name {
        "libx264" => {
            o.push(("preset", preset.unwrap_or("superfast").into()));
            o.push(("tune", "zerolatency".into()));
            o.push(("forced-idr", "1".into()));
            o.push((
                "x264-params",
                "keyint=infinite:min-keyint=1:scenecut=0:bframes=0:aud=0".into(),
            ));
            o.push((
                "profile",
                if format.yuv444 { "high444" } else { "high" }.into(),
            ));
        }
        "libx265" => {
            o.push(("preset", preset.unwrap_or("ultrafast").into()));
            o.push(("tune", "zerolatency".into()));
            o.push(("forced-idr", "1".into()));
            o.push((
                "x265-params",
                format!(
                    "keyint=-1:min-keyint=1:scenecut=0:bframes=0:repeat-headers=1:info=0:\
                     aud=0:log-level=error:vbv-maxrate={0}:vbv-bufsize={1}",
                    config.bitrate_kbps,
                    (config.bitrate_kbps / config.fps).max(1)
                ),
            ));
        }
        "libsvtav1" => {
            o.push(("preset", preset.unwrap_or("12").into()));
            o.push((
                "svtav1-params",
                format!(
                    "pred-struct=1:rc=0:crf=30:mbr={}:keyint=-1:scd=0:lookahead=0:\
                     enable-overlays=0",
                    config.bitrate_kbps
                ),
            ));
        }
        "libaom-av1" => {
            o.push(("usage", "realtime".into()));
            // Not 7 or 8 (the fastest FFmpeg 5.1 accepts): with libaom 3.6 both left one frame
            // of the pattern at 23 dB luma PSNR (aom_round_trip), 6 did not and costs the same
            // at 1080p60 (17.4 vs 16.6 ms per frame; docs/benchmarks.md "Encoders").
            o.push(("cpu-used", preset.unwrap_or("6").into()));
            o.push(("lag-in-frames", "0".into()));
            o.push(("row-mt", "1".into()));
            o.push(("tiles", "2x2".into()));
            o.push(("aq-mode", "0".into()));
            o.push(("enable-cdef", "1".into()));
        }
        n if n.ends_with("_nvenc") => {
            o.push(("preset", preset.unwrap_or("p1").into()));
            o.push(("tune", "ull".into()));
            o.push(("zerolatency", "1".into()));
            o.push(("forced-idr", "1".into()));
            o.push(("rc", "cbr".into()));
            o.push(("delay", "0".into()));
        }
        _ => {}
    }
    o
}

/// A libavcodec encoder behind [`VideoEncoder`].
pub struct LibavEncoder {
    name: String,
    format: VideoFormat,
    preset: Option<String>,
    config: VideoEncoderConfig,
    ctx: *mut ff::AVCodecContext,
    frame: *mut ff::AVFrame,
    packet: *mut ff::AVPacket,
    pts: i64,
    idr_pending: bool,
    /// Frames sent and not yet returned: (pts, index, capture_us), oldest first.
    in_flight: std::collections::VecDeque<(i64, u64, u64)>,
}

// SAFETY: the encoder's context, frame and packet are owned by this value and used only through
// `&mut self`; libavcodec contexts may move between threads as long as calls are not concurrent.
unsafe impl Send for LibavEncoder {}

impl std::fmt::Debug for LibavEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibavEncoder")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("config", &self.config)
            .field("pts", &self.pts)
            .finish_non_exhaustive()
    }
}

impl LibavEncoder {
    /// Opens libavcodec's encoder `name` for `format` at `config`; `preset` overrides the
    /// encoder's default preset (see the table above). The first frame is an IDR.
    pub fn new(
        name: &str,
        format: VideoFormat,
        config: VideoEncoderConfig,
        preset: Option<&str>,
    ) -> Result<Self, EncodeError> {
        config.validate()?;
        quiet_logs();
        let mut e = Self {
            name: name.to_owned(),
            format,
            preset: preset.map(str::to_owned),
            config,
            ctx: ptr::null_mut(),
            frame: ptr::null_mut(),
            packet: ptr::null_mut(),
            pts: 0,
            idr_pending: false,
            in_flight: std::collections::VecDeque::new(),
        };
        e.open()?;
        Ok(e)
    }

    /// The libavcodec encoder's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The picture format produced.
    pub fn format(&self) -> VideoFormat {
        self.format
    }

    fn close(&mut self) {
        // SAFETY: each pointer is null or owned by self; the free functions accept null and
        // reset the pointer.
        unsafe {
            ff::avcodec_free_context(&mut self.ctx);
            ff::av_frame_free(&mut self.frame);
            ff::av_packet_free(&mut self.packet);
        }
    }

    fn open(&mut self) -> Result<(), EncodeError> {
        self.close();
        let backend = |what: &str| EncodeError::Backend(format!("{}: {what}", self.name));
        let cname = CString::new(self.name.as_str()).map_err(|_| backend("bad encoder name"))?;
        // SAFETY: valid C string.
        let codec = unsafe { ff::avcodec_find_encoder_by_name(cname.as_ptr()) };
        if codec.is_null() {
            return Err(backend("this libavcodec has no such encoder"));
        }
        if !encoder_supports(&self.name, self.format) {
            return Err(backend(&format!("cannot encode {}", self.format)));
        }
        let c = self.config;
        let pix_fmt = pixel_format(&self.name, self.format);
        // SAFETY: codec is a valid descriptor; the context is owned by self from here on and
        // freed by close(). Fields are written before avcodec_open2, as the API requires.
        unsafe {
            self.ctx = ff::avcodec_alloc_context3(codec);
            if self.ctx.is_null() {
                return Err(backend("out of memory"));
            }
            let ctx = &mut *self.ctx;
            ctx.width = c.width as c_int;
            ctx.height = c.height as c_int;
            ctx.pix_fmt = pix_fmt;
            ctx.time_base = ff::AVRational {
                num: 1,
                den: c.fps as c_int,
            };
            ctx.framerate = ff::AVRational {
                num: c.fps as c_int,
                den: 1,
            };
            let bps = i64::from(c.bitrate_kbps) * 1000;
            ctx.bit_rate = bps;
            if self.name == "libsvtav1" {
                // SVT-AV1 takes its buffer in milliseconds (20..=10000) and refuses a maximum
                // rate equal to the target. Its low-delay CBR/VBR (1.4) left single frames of
                // the test pattern at 17 dB luma PSNR; capped CRF (mbr = the bitrate, set in
                // the options) did not: docs/capture.md "Encoders".
                ctx.rc_buffer_size = (bps / 20) as c_int;
            } else {
                ctx.rc_max_rate = bps;
                // Four frames of buffer: with one (Sunshine's choice) x264 at 5 Mbit/s 1080p60
                // left 20 % of the budget unused and lost 3 dB of luma PSNR (docs/benchmarks.md
                // "Encoders").
                ctx.rc_buffer_size = (VBV_FRAMES * bps / i64::from(c.fps)).max(1) as c_int;
            }
            ctx.gop_size = -1;
            ctx.max_b_frames = 0;
            ctx.thread_count = 0;
            ctx.flags |= ff::AV_CODEC_FLAG_LOW_DELAY as c_int;
            ctx.flags2 |= ff::AV_CODEC_FLAG2_FAST as c_int;
            if self.format.ten_bit && self.format.hdr {
                ctx.color_primaries = ff::AVColorPrimaries::AVCOL_PRI_BT2020;
                ctx.color_trc = ff::AVColorTransferCharacteristic::AVCOL_TRC_SMPTE2084;
                ctx.colorspace = ff::AVColorSpace::AVCOL_SPC_BT2020_NCL;
            } else {
                ctx.color_primaries = ff::AVColorPrimaries::AVCOL_PRI_BT709;
                ctx.color_trc = ff::AVColorTransferCharacteristic::AVCOL_TRC_BT709;
                ctx.colorspace = ff::AVColorSpace::AVCOL_SPC_BT709;
            }
            ctx.color_range = ff::AVColorRange::AVCOL_RANGE_MPEG;
            for (key, value) in encoder_options(&self.name, self.format, c, self.preset.as_deref())
            {
                let k = CString::new(key).map_err(|_| backend("bad option"))?;
                let v = CString::new(value).map_err(|_| backend("bad option"))?;
                let r = ff::av_opt_set(ctx.priv_data, k.as_ptr(), v.as_ptr(), 0);
                if r < 0 {
                    return Err(backend(&format!("option {key}: {}", av_error(r))));
                }
            }
            let r = ff::avcodec_open2(self.ctx, codec, ptr::null_mut());
            if r < 0 {
                return Err(backend(&format!("open: {}", av_error(r))));
            }
            self.frame = ff::av_frame_alloc();
            self.packet = ff::av_packet_alloc();
            if self.frame.is_null() || self.packet.is_null() {
                return Err(backend("out of memory"));
            }
            let f = &mut *self.frame;
            f.width = c.width as c_int;
            f.height = c.height as c_int;
            f.format = pix_fmt as c_int;
            let r = ff::av_frame_get_buffer(self.frame, 0);
            if r < 0 {
                return Err(backend(&format!("frame buffer: {}", av_error(r))));
            }
        }
        self.pts = 0;
        self.idr_pending = false;
        self.in_flight.clear();
        Ok(())
    }

    /// Copies `src` into the AVFrame in the encoder's layout: rows copied as they are where
    /// the layouts match, else sample by sample (4:2:0 chroma repeated over 2×2 for a 4:4:4
    /// picture, 8-bit samples × 4 for a 10-bit one, 10-bit samples in the high bits for P010).
    fn fill(&mut self, src: &Frame) -> Result<(), EncodeError> {
        let layout = src.layout();
        if layout.yuv444() && !self.format.yuv444 {
            return Err(EncodeError::Backend(format!(
                "{}: a {layout} frame for a {} encoder",
                self.name, self.format
            )));
        }
        // SAFETY: self.frame is a valid frame with buffers for the configured size and format
        // (av_frame_get_buffer); make_writable gives us exclusive buffers if the encoder still
        // holds a reference to the previous picture.
        let f = unsafe {
            let r = ff::av_frame_make_writable(self.frame);
            if r < 0 {
                return Err(EncodeError::Backend(format!(
                    "{}: frame buffer: {}",
                    self.name,
                    av_error(r)
                )));
            }
            &mut *self.frame
        };
        let (w, h) = (src.width() as usize, src.height() as usize);
        let (cw, ch) = src.chroma_size();
        let planes: [(&[u8], usize, usize, usize); 3] = [
            (src.y(), src.y_stride(), w, h),
            (src.u(), src.uv_stride(), cw, ch),
            (src.v(), src.uv_stride(), cw, ch),
        ];
        let pix = pixel_format(&self.name, self.format);
        let p010 = pix == ff::AVPixelFormat::AV_PIX_FMT_P010LE;
        let out10 = self.format.ten_bit;
        let same = layout == crate::frame::Layout::of(out10, self.format.yuv444) && !p010;
        let in_bytes = layout.sample_bytes();
        for (i, (data, stride, sw, sh)) in planes.into_iter().enumerate() {
            let (dw, dh) = if i == 0 || self.format.yuv444 {
                (w, h)
            } else {
                (w / 2, h / 2)
            };
            let (ux, uy) = (dw / sw, dh / sh);
            let (dst_plane, ls) = if p010 && i > 0 {
                (f.data[1], f.linesize[1] as usize)
            } else {
                (f.data[i], f.linesize[i] as usize)
            };
            // P010 interleaves Cb and Cr in one plane: 4 bytes per chroma pair.
            let (out_bytes, step, off) = match (p010 && i > 0, out10) {
                (true, _) => (dw * 4, 4, if i == 1 { 0 } else { 2 }),
                (false, true) => (dw * 2, 2, 0),
                (false, false) => (dw, 1, 0),
            };
            for row in 0..dh {
                let s = &data[(row / uy) * stride..][..sw * in_bytes];
                // SAFETY: the destination plane has dh rows of ls ≥ out_bytes bytes (the frame
                // was allocated for this size and pixel format).
                let d =
                    unsafe { std::slice::from_raw_parts_mut(dst_plane.add(row * ls), out_bytes) };
                if same {
                    d.copy_from_slice(s);
                    continue;
                }
                for x in 0..dw {
                    let sx = x / ux;
                    let v10 = if in_bytes == 2 {
                        u16::from_le_bytes([s[2 * sx], s[2 * sx + 1]])
                    } else {
                        u16::from(s[sx]) << 2
                    };
                    let at = x * step + off;
                    if p010 {
                        d[at..at + 2].copy_from_slice(&(v10 << 6).to_le_bytes());
                    } else if out10 {
                        d[at..at + 2].copy_from_slice(&v10.to_le_bytes());
                    } else {
                        d[at] = ((v10 + 2) >> 2).min(255) as u8;
                    }
                }
            }
        }
        Ok(())
    }

    /// Classifies the access unit from the packet's key flag and, for H.264/HEVC, its first
    /// slice's NAL type.
    fn kind(&self, data: &[u8], key: bool) -> FrameKind {
        if key {
            return FrameKind::Idr;
        }
        match self.format.codec {
            VideoCodec::H264 => {
                for nal in crate::annexb::nal_units(data) {
                    match nal.kind() {
                        crate::annexb::nal_type::IDR => return FrameKind::Idr,
                        crate::annexb::nal_type::SLICE => {
                            return match nal.slice_type() {
                                Some(crate::annexb::SliceType::I) => FrameKind::Intra,
                                _ => FrameKind::Predicted,
                            };
                        }
                        _ => {}
                    }
                }
                FrameKind::Predicted
            }
            VideoCodec::Hevc => {
                for nal in crate::annexb::nal_units(data) {
                    let t = hevc_nal_type(nal.header());
                    if (16..=21).contains(&t) {
                        return FrameKind::Idr;
                    }
                    if t < 16 {
                        return FrameKind::Predicted;
                    }
                }
                FrameKind::Predicted
            }
            VideoCodec::Av1 => FrameKind::Predicted,
        }
    }
}

/// Whether `encoder` turns a frame marked `AV_PICTURE_TYPE_I` into a key frame in low-delay
/// mode; for the others an IDR request reopens the encoder.
fn forces_key_frames(encoder: &str) -> bool {
    encoder != "libsvtav1"
}

/// Whether `encoder` returns a frame's packet only after later frames were sent (SVT-AV1's
/// low-delay mode holds 2–3 frames); for these `encode` does not wait (it returns
/// [`FrameKind::Skipped`] when nothing is ready), [`VideoEncoder::drain`] hands out the packets
/// that became ready since, and an access unit carries the index and capture time of the frame
/// it encodes, not of the frame just sent.
pub fn pipelined(encoder: &str) -> bool {
    encoder == "libsvtav1"
}

/// HEVC `nal_unit_type` from the first header byte.
pub fn hevc_nal_type(first_byte: u8) -> u8 {
    (first_byte >> 1) & 0x3f
}

impl Drop for LibavEncoder {
    fn drop(&mut self) {
        self.close();
    }
}

impl VideoEncoder for LibavEncoder {
    fn codec(&self) -> VideoCodec {
        self.format.codec
    }

    fn config(&self) -> VideoEncoderConfig {
        self.config
    }

    fn request_idr(&mut self) {
        self.idr_pending = true;
    }

    fn reconfigure(&mut self, config: VideoEncoderConfig) -> Result<(), EncodeError> {
        if config == self.config {
            return Ok(());
        }
        config.validate()?;
        let old = self.config;
        self.config = config;
        if let Err(e) = self.open() {
            self.config = old;
            self.open()?;
            return Err(e);
        }
        Ok(())
    }

    fn encode(&mut self, frame: &Frame, out: &mut [u8]) -> Result<EncodedFrame, EncodeError> {
        frame.expect_size(self.config.width, self.config.height)?;
        if self.idr_pending && self.pts > 0 && !forces_key_frames(&self.name) {
            // SVT-AV1 1.4 forces key frames only in random-access CRF/CQP mode: a new encoder
            // starts with one (sequence header included).
            self.open()?;
        }
        self.fill(frame)?;
        let name = &self.name;
        // SAFETY: ctx, frame and packet are valid and owned by self (open() succeeded: encode
        // is unreachable otherwise, as new() and reconfigure() fail without them).
        unsafe {
            let f = &mut *self.frame;
            f.pts = self.pts;
            f.pict_type = if self.idr_pending && self.pts > 0 {
                ff::AVPictureType::AV_PICTURE_TYPE_I
            } else {
                ff::AVPictureType::AV_PICTURE_TYPE_NONE
            };
            if self.in_flight.len() >= 64 {
                self.in_flight.pop_front();
            }
            self.in_flight
                .push_back((self.pts, frame.index, frame.capture_us));
            self.pts += 1;
            let r = ff::avcodec_send_frame(self.ctx, self.frame);
            if r < 0 {
                self.idr_pending = true;
                return Err(EncodeError::Backend(format!(
                    "{name}: send: {}",
                    av_error(r)
                )));
            }
        }
        let wait = !pipelined(&self.name);
        match self.receive(out, wait)? {
            Some(e) => Ok(e),
            // Its packet comes out with a later call (`drain` or the next frame's).
            None => Ok(EncodedFrame {
                len: 0,
                kind: FrameKind::Skipped,
                index: frame.index,
                capture_us: frame.capture_us,
            }),
        }
    }

    fn drain(&mut self, out: &mut [u8]) -> Result<Option<EncodedFrame>, EncodeError> {
        if !self.has_pending() {
            return Ok(None);
        }
        self.receive(out, false)
    }

    fn has_pending(&self) -> bool {
        pipelined(&self.name) && !self.in_flight.is_empty()
    }
}

impl LibavEncoder {
    /// Takes the next packet into `out`: waits for it up to [`OUTPUT_DEADLINE`] when `wait`,
    /// else returns `None` if there is none yet.
    fn receive(&mut self, out: &mut [u8], wait: bool) -> Result<Option<EncodedFrame>, EncodeError> {
        let name = &self.name;
        let start = Instant::now();
        // SAFETY: ctx and packet are valid and owned by self; the packet's data is read only
        // between a successful receive and its unref.
        unsafe {
            loop {
                let r = ff::avcodec_receive_packet(self.ctx, self.packet);
                if r == eagain() {
                    if !wait {
                        return Ok(None);
                    }
                    if start.elapsed() > OUTPUT_DEADLINE {
                        self.idr_pending = true;
                        return Err(EncodeError::Backend(format!(
                            "{name}: no packet within {OUTPUT_DEADLINE:?} of its frame"
                        )));
                    }
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
                if r < 0 {
                    self.idr_pending = true;
                    return Err(EncodeError::Backend(format!(
                        "{name}: receive: {}",
                        av_error(r)
                    )));
                }
                break;
            }
            let p = &*self.packet;
            let (mut index, mut capture_us) = (0, 0);
            while let Some((pts, i, c)) = self.in_flight.pop_front() {
                (index, capture_us) = (i, c);
                if pts >= p.pts {
                    break;
                }
            }
            let len = p.size as usize;
            let key = p.flags & ff::AV_PKT_FLAG_KEY as c_int != 0;
            if len > out.len() {
                ff::av_packet_unref(self.packet);
                self.idr_pending = true;
                return Err(EncodeError::OutputTooSmall {
                    needed: len,
                    capacity: out.len(),
                });
            }
            if len > 0 {
                out[..len].copy_from_slice(std::slice::from_raw_parts(p.data, len));
            }
            ff::av_packet_unref(self.packet);
            let kind = if len == 0 {
                FrameKind::Skipped
            } else {
                self.kind(&out[..len], key)
            };
            if kind == FrameKind::Idr {
                self.idr_pending = false;
            }
            Ok(Some(EncodedFrame {
                len,
                kind,
                index,
                capture_us,
            }))
        }
    }
}

/// Lowers libavcodec's log level to errors, once per process: x264 and x265 otherwise print
/// their statistics on every encoder close (each IDR request of SVT-AV1, each mode change).
fn quiet_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: av_log_set_level only stores an integer.
    ONCE.call_once(|| unsafe { ff::av_log_set_level(ff::AV_LOG_ERROR as c_int) });
}

/// One decoded picture: planes of 8-bit samples (10-bit streams are shifted down to 8 bits),
/// 4:2:0 chroma (4:4:4 is subsampled by taking every other sample), and the stream's bit depth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedPicture {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bits per sample of the decoded stream (8 or 10).
    pub bit_depth: u8,
    /// Whether the stream's chroma was 4:4:4.
    pub yuv444: bool,
    /// Luma, `width × height`.
    pub y: Vec<u8>,
    /// Cb, `width/2 × height/2` (4:4:4: `width × height`).
    pub u: Vec<u8>,
    /// Cr, `width/2 × height/2` (4:4:4: `width × height`).
    pub v: Vec<u8>,
}

/// A libavcodec decoder (the system's default for the codec: h264, hevc, libdav1d), for tests
/// and benches that check what an encoder produced.
pub struct LibavDecoder {
    ctx: *mut ff::AVCodecContext,
    frame: *mut ff::AVFrame,
    packet: *mut ff::AVPacket,
}

// SAFETY: as for LibavEncoder: owned pointers, used through &mut self only.
unsafe impl Send for LibavDecoder {}

impl std::fmt::Debug for LibavDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibavDecoder").finish_non_exhaustive()
    }
}

impl LibavDecoder {
    /// Opens the default decoder for `codec`, single-threaded (one picture out per packet in).
    pub fn new(codec: VideoCodec) -> Result<Self, EncodeError> {
        quiet_logs();
        let id = match codec {
            VideoCodec::H264 => ff::AVCodecID::AV_CODEC_ID_H264,
            VideoCodec::Hevc => ff::AVCodecID::AV_CODEC_ID_HEVC,
            VideoCodec::Av1 => ff::AVCodecID::AV_CODEC_ID_AV1,
        };
        // SAFETY: plain lookups and allocations; every pointer is owned by the returned value.
        unsafe {
            let dec = ff::avcodec_find_decoder(id);
            if dec.is_null() {
                return Err(EncodeError::Backend(format!("no {} decoder", codec.name())));
            }
            let mut d = Self {
                ctx: ff::avcodec_alloc_context3(dec),
                frame: ff::av_frame_alloc(),
                packet: ff::av_packet_alloc(),
            };
            if d.ctx.is_null() || d.frame.is_null() || d.packet.is_null() {
                return Err(EncodeError::Backend("out of memory".into()));
            }
            (*d.ctx).thread_count = 1;
            let r = ff::avcodec_open2(d.ctx, dec, ptr::null_mut());
            if r < 0 {
                d.ctx = ptr::null_mut();
                return Err(EncodeError::Backend(format!(
                    "decoder open: {}",
                    av_error(r)
                )));
            }
            Ok(d)
        }
    }

    /// Decodes one access unit; `None` if the decoder has no picture for it (yet).
    pub fn decode(&mut self, data: &[u8]) -> Result<Option<DecodedPicture>, EncodeError> {
        // SAFETY: owned, valid pointers; the packet borrows `data` only for the send call
        // (libavcodec copies unreferenced packet data).
        unsafe {
            let p = &mut *self.packet;
            p.data = data.as_ptr().cast_mut();
            p.size = data.len() as c_int;
            let r = ff::avcodec_send_packet(self.ctx, self.packet);
            p.data = ptr::null_mut();
            p.size = 0;
            if r < 0 {
                return Err(EncodeError::Backend(format!("decode: {}", av_error(r))));
            }
            let r = ff::avcodec_receive_frame(self.ctx, self.frame);
            if r == eagain() {
                return Ok(None);
            }
            if r < 0 {
                return Err(EncodeError::Backend(format!("decode: {}", av_error(r))));
            }
            let f = &*self.frame;
            let (w, h) = (f.width as usize, f.height as usize);
            use ff::AVPixelFormat::*;
            let fmt: ff::AVPixelFormat = std::mem::transmute(f.format);
            let (depth, yuv444) = match fmt {
                AV_PIX_FMT_YUV420P | AV_PIX_FMT_YUVJ420P => (8, false),
                AV_PIX_FMT_YUV444P | AV_PIX_FMT_YUVJ444P => (8, true),
                AV_PIX_FMT_YUV420P10LE => (10, false),
                AV_PIX_FMT_YUV444P10LE => (10, true),
                other => {
                    ff::av_frame_unref(self.frame);
                    return Err(EncodeError::Backend(format!(
                        "decoded pixel format {other:?} not handled"
                    )));
                }
            };
            let sample = |plane: usize, x: usize, y: usize| -> u8 {
                let ls = f.linesize[plane] as usize;
                if depth == 8 {
                    *f.data[plane].add(y * ls + x)
                } else {
                    let p = f.data[plane].add(y * ls + 2 * x);
                    (u16::from_le_bytes([*p, *p.add(1)]) >> 2) as u8
                }
            };
            let mut pic = DecodedPicture {
                width: w as u32,
                height: h as u32,
                bit_depth: depth,
                yuv444,
                y: Vec::with_capacity(w * h),
                u: Vec::with_capacity(w * h / 4),
                v: Vec::with_capacity(w * h / 4),
            };
            for y in 0..h {
                for x in 0..w {
                    pic.y.push(sample(0, x, y));
                }
            }
            let (cw, ch) = if yuv444 { (w, h) } else { (w / 2, h / 2) };
            for y in 0..ch {
                for x in 0..cw {
                    pic.u.push(sample(1, x, y));
                    pic.v.push(sample(2, x, y));
                }
            }
            ff::av_frame_unref(self.frame);
            Ok(Some(pic))
        }
    }
}

impl Drop for LibavDecoder {
    fn drop(&mut self) {
        // SAFETY: owned pointers (or null), freed once.
        unsafe {
            ff::avcodec_free_context(&mut self.ctx);
            ff::av_frame_free(&mut self.frame);
            ff::av_packet_free(&mut self.packet);
        }
    }
}

/// PSNR in dB of `b` against `a` (equal-length 8-bit planes); 99 for identical planes.
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let n = a.len().min(b.len()).max(1);
    let sse: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| {
            let d = f64::from(*x) - f64::from(*y);
            d * d
        })
        .sum();
    if sse == 0.0 {
        return 99.0;
    }
    10.0 * (255.0 * 255.0 * n as f64 / sse).log10()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Layout;
    use crate::pattern::TestPattern;

    fn cfg(width: u32, height: u32) -> VideoEncoderConfig {
        VideoEncoderConfig {
            width,
            height,
            fps: 60,
            bitrate_kbps: 4_000,
        }
    }

    /// Encodes 40 frames (IDR requested at 20), decodes each access unit, checks kinds, size,
    /// depth, that the picture resembles its source and that its stamp reads back.
    fn round_trip(name: &str, format: VideoFormat) {
        round_trip_from(name, format, Layout::I420);
    }

    /// The 8-bit luma of `f` (10-bit samples' top 8 bits).
    fn luma8(f: &Frame) -> Vec<u8> {
        if f.layout().ten_bit() {
            f.y()
                .chunks_exact(2)
                .map(|s| (u16::from_le_bytes([s[0], s[1]]) >> 2) as u8)
                .collect()
        } else {
            f.y().to_vec()
        }
    }

    /// Encodes 40 pattern frames rendered in `source` (HDR colours when it is 10-bit) as
    /// `format` with `name`, decodes each and checks size, depth, chroma, luma PSNR, stamps
    /// and IDRs; a 4:4:4 source's one-pixel chroma stripes must come back.
    fn round_trip_from(name: &str, format: VideoFormat, source: Layout) {
        let (w, h) = (320, 240);
        let mut enc = LibavEncoder::new(name, format, cfg(w, h), None).unwrap();
        let mut dec = LibavDecoder::new(format.codec).unwrap();
        let mut pat = TestPattern::new(w, h)
            .unwrap()
            .with_format(source, source.ten_bit());
        let mut frame = pat.new_frame();
        let mut out = vec![0u8; enc.max_encoded_len()];
        let mut frames = Vec::new();
        let mut decoded = 0;
        let mut idr_after_request = false;
        for n in 0..40u64 {
            if n == 20 {
                enc.request_idr();
            }
            pat.render(&mut frame, n, n * 16_667).unwrap();
            frames.push(frame.clone());
            let mut outs = Vec::new();
            let e = enc.encode(&frame, &mut out).unwrap();
            if e.kind == FrameKind::Skipped {
                assert!(pipelined(name), "{name}: frame {n} skipped");
            } else {
                outs.push((e, out[..e.len].to_vec()));
            }
            while let Some(e) = enc.drain(&mut out).unwrap() {
                outs.push((e, out[..e.len].to_vec()));
            }
            for (e, au) in outs {
                let i = e.index;
                assert!(i <= n && n - i <= 8, "{name}: frame {i} out at {n}");
                if i == 0 || (i == 20 && !pipelined(name)) {
                    assert_eq!(e.kind, FrameKind::Idr, "{name} {format}: frame {i}");
                } else if i < 20 || !pipelined(name) {
                    assert_ne!(e.kind, FrameKind::Idr, "{name} {format}: frame {i}");
                }
                idr_after_request |= i >= 20 && e.kind == FrameKind::Idr;
                if e.kind == FrameKind::Idr {
                    check_key_frame(name, format.codec, &au);
                }
                let pic = dec.decode(&au).unwrap().expect("a picture per access unit");
                assert_eq!((pic.width, pic.height), (w, h));
                assert_eq!(pic.bit_depth, if format.ten_bit { 10 } else { 8 });
                assert_eq!(pic.yuv444, format.yuv444);
                let q = psnr(&luma8(&frames[i as usize]), &pic.y);
                if source.yuv444() {
                    // Ramp band, chroma stripes one pixel wide: ±32 around neutral in 8 bits.
                    let row = &pic.u[235 * w as usize..][..w as usize];
                    let swing = row
                        .windows(2)
                        .map(|p| (i32::from(p[0]) - i32::from(p[1])).abs())
                        .sum::<i32>()
                        / (w as i32 - 1);
                    assert!(
                        swing > 40,
                        "{name} {format}: frame {i} chroma detail {swing}"
                    );
                }
                assert!(q > 25.0, "{name} {format}: frame {i} luma PSNR {q:.1} dB");
                let stamp = crate::stamp::read_stamp(&pic.y, w as usize, h as usize, w as usize)
                    .expect("stamp");
                assert_eq!(u64::from(stamp.frame), i);
                decoded += 1;
            }
        }
        // A pipelined encoder still holds its last few frames, and the ones in flight when an
        // IDR request rebuilt it are gone.
        let least = if pipelined(name) { 26 } else { 40 };
        assert!(decoded >= least, "{name}: {decoded} of 40 frames out");
        assert!(idr_after_request, "{name}: no IDR after the request");
    }

    /// Parameter sets in band, in the order clients look for (docs/streaming.md "Codecs").
    fn check_key_frame(name: &str, codec: VideoCodec, au: &[u8]) {
        match codec {
            VideoCodec::H264 => {
                let first = crate::annexb::nal_units(au)
                    .map(|n| n.kind())
                    .find(|k| *k != crate::annexb::nal_type::SEI)
                    .unwrap();
                assert_eq!(first, crate::annexb::nal_type::SPS, "{name}");
            }
            VideoCodec::Hevc => {
                let types: Vec<u8> = crate::annexb::nal_units(au)
                    .map(|n| hevc_nal_type(n.header()))
                    .filter(|t| *t != 39 && *t != 35)
                    .collect();
                assert_eq!(types[..3], [32, 33, 34], "{name}: {types:?}");
                assert!((16..=21).contains(&types[3]), "{name}: {types:?}");
            }
            VideoCodec::Av1 => {
                // A sequence header OBU (type 1) in every key frame.
                let types = av1_obu_types(au);
                assert!(types.contains(&1), "{name}: {types:?}");
            }
        }
    }

    /// OBU types of a low-overhead AV1 stream (obu_has_size_field set, as encoders write).
    fn av1_obu_types(mut data: &[u8]) -> Vec<u8> {
        let mut types = Vec::new();
        while let Some((&h, rest)) = data.split_first() {
            types.push((h >> 3) & 0x0f);
            let mut rest = if h & 0x04 != 0 { &rest[1..] } else { rest };
            if h & 0x02 == 0 {
                break;
            }
            let mut size = 0usize;
            for i in 0..8 {
                let b = rest[0];
                rest = &rest[1..];
                size |= usize::from(b & 0x7f) << (7 * i);
                if b & 0x80 == 0 {
                    break;
                }
            }
            data = &rest[size.min(rest.len())..];
        }
        types
    }

    #[test]
    fn x264_round_trip() {
        round_trip("libx264", VideoFormat::of(VideoCodec::H264));
    }

    #[test]
    fn x264_444_round_trip() {
        round_trip(
            "libx264",
            VideoFormat {
                yuv444: true,
                ..VideoFormat::of(VideoCodec::H264)
            },
        );
    }

    #[test]
    fn x265_round_trip() {
        round_trip("libx265", VideoFormat::of(VideoCodec::Hevc));
    }

    #[test]
    fn x265_main10_round_trip() {
        round_trip(
            "libx265",
            VideoFormat {
                ten_bit: true,
                ..VideoFormat::of(VideoCodec::Hevc)
            },
        );
    }

    #[test]
    fn x265_444_round_trip() {
        round_trip(
            "libx265",
            VideoFormat {
                yuv444: true,
                ..VideoFormat::of(VideoCodec::Hevc)
            },
        );
    }

    #[test]
    fn x265_444_from_a_444_source_keeps_chroma_detail() {
        let f = VideoFormat {
            yuv444: true,
            ..VideoFormat::of(VideoCodec::Hevc)
        };
        round_trip_from("libx265", f, Layout::I444);
    }

    #[test]
    fn x265_main10_from_a_ten_bit_hdr_source() {
        let f = VideoFormat {
            ten_bit: true,
            hdr: true,
            ..VideoFormat::of(VideoCodec::Hevc)
        };
        round_trip_from("libx265", f, Layout::I420P10);
    }

    #[test]
    fn x265_ten_bit_444_round_trip() {
        let f = VideoFormat {
            ten_bit: true,
            yuv444: true,
            hdr: true,
            ..VideoFormat::of(VideoCodec::Hevc)
        };
        round_trip_from("libx265", f, Layout::I444P10);
    }

    #[test]
    fn aom_ten_bit_444_round_trip() {
        let f = VideoFormat {
            ten_bit: true,
            yuv444: true,
            hdr: true,
            ..VideoFormat::of(VideoCodec::Av1)
        };
        round_trip_from("libaom-av1", f, Layout::I444P10);
    }

    #[test]
    fn a_444_frame_for_a_420_encoder_is_an_error() {
        let mut enc = LibavEncoder::new(
            "libx265",
            VideoFormat::of(VideoCodec::Hevc),
            cfg(320, 240),
            None,
        )
        .unwrap();
        let f = Frame::with_layout(320, 240, Layout::I444).unwrap();
        let mut out = vec![0u8; enc.max_encoded_len()];
        assert!(enc.encode(&f, &mut out).is_err());
    }

    #[test]
    fn aom_round_trip() {
        round_trip("libaom-av1", VideoFormat::of(VideoCodec::Av1));
    }

    #[test]
    fn aom_main10_round_trip() {
        round_trip(
            "libaom-av1",
            VideoFormat {
                ten_bit: true,
                ..VideoFormat::of(VideoCodec::Av1)
            },
        );
    }

    #[test]
    fn aom_444_round_trip() {
        round_trip(
            "libaom-av1",
            VideoFormat {
                yuv444: true,
                ..VideoFormat::of(VideoCodec::Av1)
            },
        );
    }

    #[test]
    fn svtav1_round_trip() {
        round_trip("libsvtav1", VideoFormat::of(VideoCodec::Av1));
    }

    #[test]
    fn svtav1_main10_round_trip() {
        round_trip(
            "libsvtav1",
            VideoFormat {
                ten_bit: true,
                ..VideoFormat::of(VideoCodec::Av1)
            },
        );
    }

    #[test]
    fn unknown_encoder_and_unsupported_format_fail_cleanly() {
        assert!(!has_encoder("no_such_encoder"));
        assert!(
            LibavEncoder::new(
                "no_such_encoder",
                VideoFormat::of(VideoCodec::H264),
                cfg(320, 240),
                None
            )
            .is_err()
        );
        let av1_444 = VideoFormat {
            yuv444: true,
            ..VideoFormat::of(VideoCodec::Av1)
        };
        assert!(!encoder_supports("libsvtav1", av1_444));
        assert!(LibavEncoder::new("libsvtav1", av1_444, cfg(320, 240), None).is_err());
    }

    #[test]
    fn reconfigure_changes_size_and_starts_with_an_idr() {
        let mut enc = LibavEncoder::new(
            "libx264",
            VideoFormat::of(VideoCodec::H264),
            cfg(320, 240),
            None,
        )
        .unwrap();
        let mut out = vec![0u8; cfg(640, 480).max_encoded_len()];
        let mut small = TestPattern::new(320, 240).unwrap();
        let mut f = small.new_frame();
        small.render(&mut f, 0, 0).unwrap();
        assert!(enc.encode(&f, &mut out).unwrap().is_keyframe());
        small.render(&mut f, 1, 0).unwrap();
        assert!(!enc.encode(&f, &mut out).unwrap().is_keyframe());
        enc.reconfigure(cfg(640, 480)).unwrap();
        assert!(enc.encode(&f, &mut out).is_err());
        let mut big = TestPattern::new(640, 480).unwrap();
        let mut g = big.new_frame();
        big.render(&mut g, 2, 0).unwrap();
        let e = enc.encode(&g, &mut out).unwrap();
        assert!(e.is_keyframe());
        let (w, h) = crate::annexb::sps_size(&out[..e.len]).unwrap();
        assert_eq!((w, h), (640, 480));
    }
}
