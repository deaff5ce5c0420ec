//! Decisions about PipeWire video formats: which raw formats we take, what a negotiated format
//! means for the frame we hand out, and how one buffer's planes are copied into it.
//!
//! Pure: no PipeWire calls, no clock, no `unsafe`. The stream thread (`super::stream`) feeds
//! it what it read from the format param and from each buffer's `spa_data`/`spa_chunk`, and
//! executes the [`CopyPlan`] it gets back.
//!
//! Output layout (one `Vec<u8>`, planes back to back, rows tightly packed):
//!
//! ```text
//! BGRx/BGRA/RGBx/RGBA   plane 0: height rows of width*4 bytes
//! I420                  plane 0 Y: height rows of width      | plane 1 U, plane 2 V:
//!                                                               ceil(h/2) rows of ceil(w/2)
//! NV12                  plane 0 Y: height rows of width      | plane 1 UV: ceil(h/2) rows of
//!                                                               2*ceil(w/2) (interleaved)
//! ```
//!
//! The producer's buffers may use any stride ≥ the row length (gst's pipewiresink pads rows to 4
//! bytes, compositors to 64 or 256); a planar format may arrive as one `spa_data` per plane or
//! all planes in one `spa_data` (then each plane starts right after the previous one, with
//! chroma strides half the luma stride, the GStreamer/FFmpeg default layout).
#![forbid(unsafe_code)]

use pipewire::spa::param::video::VideoFormat;

/// Largest width or height we accept from a producer (8K plus margin): bounds the frame buffer.
pub const MAX_DIMENSION: u32 = 8192;

/// The raw pixel formats a [`super::PipeWireCapture`] negotiates, in order of preference (the
/// first is what we ask for by default: what compositors and `videotestsrc` produce cheaply).
pub const PREFERRED: [PixelFormat; 6] = [
    PixelFormat::Bgrx,
    PixelFormat::Bgra,
    PixelFormat::Rgbx,
    PixelFormat::Rgba,
    PixelFormat::I420,
    PixelFormat::Nv12,
];

/// The size and frame rate a capture asks its producer for (the EnumFormat it offers).
///
/// A producer with a fixed size (a camera, `videotestsrc`, a monitor stream) fixes its own; a
/// producer that takes the consumer's size (Mutter's `RecordVirtual` stream creates its virtual
/// monitor at the negotiated size) gets exactly `size`. `None` leaves it open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VideoRequest {
    /// Exact `(width, height)` wanted, or any size up to [`MAX_DIMENSION`].
    pub size: Option<(u32, u32)>,
    /// Frames per second wanted (offered as the default of a `0..=max` range, so a producer
    /// with another rate can still link), or any rate defaulting to 60.
    pub framerate: Option<u32>,
}

impl VideoRequest {
    /// Exactly `width`×`height` at `fps` frames per second.
    pub const fn exact(width: u32, height: u32, fps: u32) -> Self {
        Self {
            size: Some((width, height)),
            framerate: Some(fps),
        }
    }

    /// Refuses sizes of 0 or above [`MAX_DIMENSION`] and a rate of 0 or above 1000.
    pub fn validate(self) -> Result<Self, FormatError> {
        if let Some((width, height)) = self.size
            && (width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION)
        {
            return Err(FormatError::Size { width, height });
        }
        if let Some(fps) = self.framerate
            && !(1..=1000).contains(&fps)
        {
            return Err(FormatError::Framerate(fps));
        }
        Ok(self)
    }

    /// The frame rate range offered: `(default, max)`; the minimum is always 0 (any).
    pub fn framerate_range(self) -> (u32, u32) {
        (self.framerate.unwrap_or(60), 1000)
    }
}

/// A raw video pixel format we can copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PixelFormat {
    /// 4 bytes per pixel: blue, green, red, unused.
    Bgrx,
    /// 4 bytes per pixel: blue, green, red, alpha.
    Bgra,
    /// 4 bytes per pixel: red, green, blue, unused.
    Rgbx,
    /// 4 bytes per pixel: red, green, blue, alpha.
    Rgba,
    /// Planar 4:2:0: Y, then U, then V.
    I420,
    /// Semi-planar 4:2:0: Y, then interleaved UV.
    Nv12,
}

impl PixelFormat {
    /// Our format for a SPA video format, if we take it.
    pub fn from_spa(format: VideoFormat) -> Option<Self> {
        Some(match format {
            VideoFormat::BGRx => Self::Bgrx,
            VideoFormat::BGRA => Self::Bgra,
            VideoFormat::RGBx => Self::Rgbx,
            VideoFormat::RGBA => Self::Rgba,
            VideoFormat::I420 => Self::I420,
            VideoFormat::NV12 => Self::Nv12,
            _ => return None,
        })
    }

    /// The SPA video format (what goes into the EnumFormat param).
    pub fn to_spa(self) -> VideoFormat {
        match self {
            Self::Bgrx => VideoFormat::BGRx,
            Self::Bgra => VideoFormat::BGRA,
            Self::Rgbx => VideoFormat::RGBx,
            Self::Rgba => VideoFormat::RGBA,
            Self::I420 => VideoFormat::I420,
            Self::Nv12 => VideoFormat::NV12,
        }
    }

    /// Number of planes.
    pub fn planes(self) -> usize {
        match self {
            Self::Bgrx | Self::Bgra | Self::Rgbx | Self::Rgba => 1,
            Self::I420 => 3,
            Self::Nv12 => 2,
        }
    }

    /// Bytes per row and number of rows of `plane` at `width`×`height`, tightly packed.
    fn plane_size(self, plane: usize, width: u32, height: u32) -> (usize, usize) {
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        match (self, plane) {
            (Self::Bgrx | Self::Bgra | Self::Rgbx | Self::Rgba, _) => (w * 4, h),
            (Self::I420 | Self::Nv12, 0) => (w, h),
            (Self::I420, _) => (cw, ch),
            (Self::Nv12, _) => (cw * 2, ch),
        }
    }
}

/// Why a format param or a buffer was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The producer fixed a format we do not copy (it ignored our EnumFormat).
    #[error("unsupported video format {0:?}")]
    Unsupported(VideoFormat),
    /// Width or height 0 or above [`MAX_DIMENSION`].
    #[error("video size {width}x{height} out of range (1..={MAX_DIMENSION})")]
    Size {
        /// Offered width.
        width: u32,
        /// Offered height.
        height: u32,
    },
    /// A buffer's data does not hold the planes the format needs (short chunk, stride smaller
    /// than a row, offsets past the mapping): the frame is dropped and counted.
    #[error("buffer too small for plane {plane}: needs {needed} bytes, chunk has {have}")]
    ShortBuffer {
        /// The plane that did not fit.
        plane: usize,
        /// Bytes the plane needs in the chunk.
        needed: usize,
        /// Bytes the chunk (or mapping) provides.
        have: usize,
    },
    /// A frame rate of 0 or above 1000 was asked for (local misuse).
    #[error("frame rate {0} out of range (1..=1000)")]
    Framerate(u32),
    /// Fewer `spa_data` than the planes need, and not a single one holding them all.
    #[error("{datas} data blocks for a {planes}-plane format")]
    Planes {
        /// Number of `spa_data` in the buffer.
        datas: usize,
        /// Planes the format has.
        planes: usize,
    },
}

/// A negotiated video format: what each frame of the stream will be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFormat {
    /// Pixel format.
    pub format: PixelFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// DRM format modifier when the producer offered one (DMA-BUF), else `None`.
    pub modifier: Option<u64>,
}

impl StreamFormat {
    /// Takes or refuses a format the producer fixed (the `Format` param of `param_changed`).
    /// `modifier` is the raw `spa_video_info_raw.modifier`; 0 with no DMA-BUF is "none".
    pub fn accept(
        format: VideoFormat,
        width: u32,
        height: u32,
        modifier: u64,
    ) -> Result<Self, FormatError> {
        let format = PixelFormat::from_spa(format).ok_or(FormatError::Unsupported(format))?;
        if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
            return Err(FormatError::Size { width, height });
        }
        Ok(Self {
            format,
            width,
            height,
            modifier: (modifier != 0).then_some(modifier),
        })
    }

    /// Offset and stride of each plane in the frame we hand out (see the module docs), and the
    /// total length.
    pub fn output_layout(&self) -> (Planes, usize) {
        let mut planes = Planes::default();
        let mut offset = 0;
        for p in 0..self.format.planes() {
            let (row, rows) = self.format.plane_size(p, self.width, self.height);
            planes.0[p] = Plane {
                offset,
                stride: row,
            };
            offset += row * rows;
        }
        planes.1 = self.format.planes();
        (planes, offset)
    }
}

/// Offset and stride of one plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Plane {
    /// Byte offset of the plane's first row.
    pub offset: usize,
    /// Bytes from one row to the next.
    pub stride: usize,
}

/// Up to three planes and how many are in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Planes(pub [Plane; 3], pub usize);

impl Planes {
    /// The planes in use.
    pub fn as_slice(&self) -> &[Plane] {
        &self.0[..self.1]
    }
}

/// What one `spa_data` of a buffer said: its chunk's offset, size and stride, and how many bytes
/// are mapped (`maxsize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataChunk {
    /// `spa_chunk.offset`: where valid data starts in the mapping.
    pub offset: usize,
    /// `spa_chunk.size`: valid bytes from `offset`.
    pub size: usize,
    /// `spa_chunk.stride`: bytes per row of the first plane in this data (≤ 0: unknown, rows
    /// are then taken as tightly packed).
    pub stride: i32,
    /// `spa_data.maxsize`: bytes mapped.
    pub mapped: usize,
}

/// One plane's copy: `rows` rows of `row_len` bytes from data `data` at `src_offset` (stride
/// `src_stride`) to the frame at `dst_offset` (stride `dst_stride`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlaneCopy {
    /// Index of the `spa_data` to read.
    pub data: usize,
    /// Offset of the plane's first row in that data's mapping.
    pub src_offset: usize,
    /// Source stride.
    pub src_stride: usize,
    /// Offset of the plane in the output frame.
    pub dst_offset: usize,
    /// Output stride.
    pub dst_stride: usize,
    /// Bytes copied per row.
    pub row_len: usize,
    /// Rows.
    pub rows: usize,
}

/// The copies that turn one buffer into one frame, and the frame's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CopyPlan {
    /// One entry per plane; `planes` are in use.
    pub copies: [PlaneCopy; 3],
    /// Planes in use.
    pub planes: usize,
    /// Length of the output frame.
    pub frame_len: usize,
}

impl CopyPlan {
    /// The plane copies in use.
    pub fn as_slice(&self) -> &[PlaneCopy] {
        &self.copies[..self.planes]
    }
}

/// Plans the copy of one buffer (its mapped `spa_data` chunks) in `format` into the output
/// layout. Every source range it returns lies inside `chunk.offset .. chunk.offset+chunk.size`
/// and inside the mapping, so the caller's slicing cannot go out of bounds.
pub fn plan_copy(format: &StreamFormat, datas: &[DataChunk]) -> Result<CopyPlan, FormatError> {
    let n = format.format.planes();
    let (out, frame_len) = format.output_layout();
    let separate = datas.len() >= n;
    if !separate && datas.len() != 1 {
        return Err(FormatError::Planes {
            datas: datas.len(),
            planes: n,
        });
    }
    let mut plan = CopyPlan {
        planes: n,
        frame_len,
        ..CopyPlan::default()
    };
    // Single-data planar layout: planes follow each other; chroma stride is half the luma's
    // (I420) or equal to it (NV12).
    let mut packed_offset = 0usize;
    let mut luma_stride = 0usize;
    for p in 0..n {
        let (row_len, rows) = format.format.plane_size(p, format.width, format.height);
        let (data, chunk, stride, start) = if separate {
            let c = datas[p];
            let stride = if c.stride > 0 {
                c.stride as usize
            } else {
                row_len
            };
            (p, c, stride, 0)
        } else {
            let c = datas[0];
            let stride = if p == 0 {
                luma_stride = if c.stride > 0 {
                    c.stride as usize
                } else {
                    row_len
                };
                luma_stride
            } else if format.format == PixelFormat::I420 {
                luma_stride.div_ceil(2)
            } else {
                luma_stride
            };
            (0, c, stride, packed_offset)
        };
        if stride < row_len {
            return Err(FormatError::ShortBuffer {
                plane: p,
                needed: row_len,
                have: stride,
            });
        }
        // The last row need only be row_len long (no padding after it).
        let needed = start + stride * (rows - 1) + row_len;
        let have = chunk.size.min(chunk.mapped.saturating_sub(chunk.offset));
        if needed > have {
            return Err(FormatError::ShortBuffer {
                plane: p,
                needed,
                have,
            });
        }
        packed_offset = start + stride * rows;
        plan.copies[p] = PlaneCopy {
            data,
            src_offset: chunk.offset + start,
            src_stride: stride,
            dst_offset: out.0[p].offset,
            dst_stride: out.0[p].stride,
            row_len,
            rows,
        };
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(format: PixelFormat, width: u32, height: u32) -> StreamFormat {
        StreamFormat {
            format,
            width,
            height,
            modifier: None,
        }
    }

    fn chunk(offset: usize, size: usize, stride: i32) -> DataChunk {
        DataChunk {
            offset,
            size,
            stride,
            mapped: offset + size,
        }
    }

    #[test]
    fn video_requests() {
        let r = VideoRequest::exact(1280, 720, 60);
        assert_eq!(r.validate(), Ok(r));
        assert_eq!(r.framerate_range(), (60, 1000));
        assert_eq!(VideoRequest::default().framerate_range(), (60, 1000));
        assert_eq!(
            VideoRequest::exact(0, 720, 60).validate(),
            Err(FormatError::Size {
                width: 0,
                height: 720
            })
        );
        assert!(VideoRequest::exact(8193, 720, 60).validate().is_err());
        assert_eq!(
            VideoRequest::exact(1280, 720, 0).validate(),
            Err(FormatError::Framerate(0))
        );
        assert!(VideoRequest::default().validate().is_ok());
    }

    #[test]
    fn spa_round_trip_and_refusals() {
        for f in PREFERRED {
            assert_eq!(PixelFormat::from_spa(f.to_spa()), Some(f));
        }
        assert_eq!(PixelFormat::from_spa(VideoFormat::YUY2), None);
        assert_eq!(
            StreamFormat::accept(VideoFormat::YUY2, 320, 240, 0),
            Err(FormatError::Unsupported(VideoFormat::YUY2))
        );
        assert_eq!(
            StreamFormat::accept(VideoFormat::BGRx, 0, 240, 0),
            Err(FormatError::Size {
                width: 0,
                height: 240
            })
        );
        assert!(StreamFormat::accept(VideoFormat::BGRx, 8193, 240, 0).is_err());
        let ok = StreamFormat::accept(VideoFormat::NV12, 1920, 1080, 0x0100_0000_0000_0002);
        assert_eq!(ok.map(|f| f.modifier), Ok(Some(0x0100_0000_0000_0002)));
        assert_eq!(
            StreamFormat::accept(VideoFormat::BGRA, 2, 2, 0).map(|f| f.modifier),
            Ok(None)
        );
    }

    #[test]
    fn output_layouts() {
        let (p, len) = fmt(PixelFormat::Bgrx, 320, 240).output_layout();
        assert_eq!(
            (p.as_slice(), len),
            (
                &[Plane {
                    offset: 0,
                    stride: 1280
                }][..],
                320 * 240 * 4
            )
        );
        let (p, len) = fmt(PixelFormat::I420, 5, 3).output_layout();
        assert_eq!(
            p.as_slice(),
            &[
                Plane {
                    offset: 0,
                    stride: 5
                },
                Plane {
                    offset: 15,
                    stride: 3
                },
                Plane {
                    offset: 21,
                    stride: 3
                }
            ]
        );
        assert_eq!(len, 27);
        let (p, len) = fmt(PixelFormat::Nv12, 5, 3).output_layout();
        assert_eq!(
            p.as_slice(),
            &[
                Plane {
                    offset: 0,
                    stride: 5
                },
                Plane {
                    offset: 15,
                    stride: 6
                }
            ]
        );
        assert_eq!(len, 27);
    }

    #[test]
    fn packed_with_padded_stride() {
        // 320 px BGRx rows padded to 1536 bytes, data starting 64 bytes into the mapping.
        let f = fmt(PixelFormat::Bgrx, 320, 240);
        let plan = plan_copy(&f, &[chunk(64, 1536 * 239 + 1280, 1536)]).expect("fits");
        assert_eq!(
            plan.as_slice(),
            &[PlaneCopy {
                data: 0,
                src_offset: 64,
                src_stride: 1536,
                dst_offset: 0,
                dst_stride: 1280,
                row_len: 1280,
                rows: 240
            }]
        );
        assert_eq!(plan.frame_len, 320 * 240 * 4);
        // One byte short of the last row.
        assert_eq!(
            plan_copy(&f, &[chunk(64, 1536 * 239 + 1279, 1536)]),
            Err(FormatError::ShortBuffer {
                plane: 0,
                needed: 1536 * 239 + 1280,
                have: 1536 * 239 + 1279
            })
        );
        // A stride smaller than a row.
        assert!(matches!(
            plan_copy(&f, &[chunk(0, 1 << 20, 1000)]),
            Err(FormatError::ShortBuffer {
                plane: 0,
                needed: 1280,
                have: 1000
            })
        ));
        // Unknown stride (0): tightly packed.
        let plan = plan_copy(&f, &[chunk(0, 1280 * 240, 0)]).expect("fits");
        assert_eq!(plan.copies[0].src_stride, 1280);
    }

    #[test]
    fn the_mapping_bounds_the_chunk() {
        // A chunk claiming more bytes than are mapped is cut to the mapping.
        let f = fmt(PixelFormat::Rgba, 4, 4);
        let c = DataChunk {
            offset: 16,
            size: 64,
            stride: 16,
            mapped: 70,
        };
        assert_eq!(
            plan_copy(&f, &[c]),
            Err(FormatError::ShortBuffer {
                plane: 0,
                needed: 64,
                have: 54
            })
        );
    }

    #[test]
    fn planar_in_one_data_and_in_several() {
        // I420 320x240 in one data, stride 320: Y 76800, U and V 19200 each.
        let f = fmt(PixelFormat::I420, 320, 240);
        let plan = plan_copy(&f, &[chunk(0, 115_200, 320)]).expect("fits");
        let offs: Vec<_> = plan
            .as_slice()
            .iter()
            .map(|c| (c.src_offset, c.src_stride))
            .collect();
        assert_eq!(offs, [(0, 320), (76_800, 160), (96_000, 160)]);
        assert!(plan_copy(&f, &[chunk(0, 115_199, 320)]).is_err());
        // NV12 as two datas with their own strides.
        let f = fmt(PixelFormat::Nv12, 320, 240);
        let plan =
            plan_copy(&f, &[chunk(0, 384 * 240, 384), chunk(8, 384 * 120, 384)]).expect("fits");
        let c = plan.as_slice();
        assert_eq!(
            (c[1].data, c[1].src_offset, c[1].src_stride, c[1].row_len),
            (1, 8, 384, 320)
        );
        assert_eq!((c[1].dst_offset, c[1].rows), (76_800, 120));
        // Two datas for a three-plane format.
        assert_eq!(
            plan_copy(
                &fmt(PixelFormat::I420, 4, 4),
                &[chunk(0, 16, 4), chunk(0, 4, 2)]
            ),
            Err(FormatError::Planes {
                datas: 2,
                planes: 3
            })
        );
    }
}
