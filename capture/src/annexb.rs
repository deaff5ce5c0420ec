//! H.264 Annex-B bitstream inspection: split an access unit into NAL units, read a slice's
//! type, summarise an SPS.
//!
//! ```text
//!  access unit (Annex-B, ITU-T H.264 Annex B.1)
//!  00 00 00 01 │ 67 …SPS… │ 00 00 00 01 │ 68 …PPS… │ 00 00 01 │ 65 …IDR slice…
//!  start code    NAL: forbidden_zero(1) nal_ref_idc(2) nal_unit_type(5), then RBSP with
//!                emulation prevention (00 00 03 → 00 00)
//! ```
//!
//! The host uses this to check what an encoder produced (IDR with SPS/PPS first,
//! docs/gamestream-protocol-notes.md "Bitstream") and tests use it to prove "no B-frames".
//! Input may be any bytes: malformed data gives `None` or an [`AnnexBError`], never a panic.
//!
//! Pure: no I/O, no allocation.
#![forbid(unsafe_code)]

use thiserror::Error;

/// NAL unit types used here (ITU-T H.264 Table 7-1).
pub mod nal_type {
    /// Coded slice of a non-IDR picture (P, or I without IDR).
    pub const SLICE: u8 = 1;
    /// Coded slice of an IDR picture.
    pub const IDR: u8 = 5;
    /// Supplemental enhancement information.
    pub const SEI: u8 = 6;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
}

/// Errors from parsing bitstream contents (hostile or malformed input).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AnnexBError {
    /// The NAL unit ended before a field did.
    #[error("NAL unit truncated")]
    Truncated,
    /// The NAL unit is not of the type the parser expects.
    #[error("expected NAL type {expected}, got {got}")]
    WrongType {
        /// The type the parser handles.
        expected: u8,
        /// The type found.
        got: u8,
    },
    /// A field has a value the standard does not allow.
    #[error("invalid value in {field}")]
    Invalid {
        /// Field name, as in the standard.
        field: &'static str,
    },
}

/// One NAL unit: header byte and payload, start code removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nal<'a> {
    /// The NAL unit including its header byte (trailing zero bytes removed).
    pub bytes: &'a [u8],
}

impl<'a> Nal<'a> {
    /// `nal_unit_type` (low 5 bits of the header byte); 0 for an empty unit.
    pub fn kind(&self) -> u8 {
        self.bytes.first().map_or(0, |h| h & 0x1f)
    }

    /// The first header byte (0 for an empty unit): HEVC's type is `(header >> 1) & 0x3f`.
    pub fn header(&self) -> u8 {
        self.bytes.first().copied().unwrap_or(0)
    }

    /// `nal_ref_idc` (bits 5–6 of the header byte).
    pub fn ref_idc(&self) -> u8 {
        self.bytes.first().map_or(0, |h| (h >> 5) & 3)
    }

    /// For a slice NAL (type 1 or 5), the slice type of its first slice header.
    pub fn slice_type(&self) -> Option<SliceType> {
        if !matches!(self.kind(), nal_type::SLICE | nal_type::IDR) {
            return None;
        }
        let mut r = BitReader::new(self.bytes.get(1..)?);
        r.ue().ok()?; // first_mb_in_slice
        SliceType::from_code(r.ue().ok()?)
    }
}

/// Slice types (ITU-T H.264 Table 7-6; codes 5–9 mean "all slices of the picture").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SliceType {
    /// P slice.
    P,
    /// B slice.
    B,
    /// I slice.
    I,
    /// SP slice.
    Sp,
    /// SI slice.
    Si,
}

impl SliceType {
    fn from_code(code: u32) -> Option<Self> {
        Some(match code % 5 {
            0 if code < 10 => Self::P,
            1 if code < 10 => Self::B,
            2 if code < 10 => Self::I,
            3 if code < 10 => Self::Sp,
            4 if code < 10 => Self::Si,
            _ => return None,
        })
    }
}

/// Iterator over the NAL units of an Annex-B byte stream (3- or 4-byte start codes).
#[derive(Debug, Clone)]
pub struct NalUnits<'a> {
    rest: &'a [u8],
}

/// Splits `stream` into NAL units. Bytes before the first start code are skipped.
pub fn nal_units(stream: &[u8]) -> NalUnits<'_> {
    let rest = match find_start_code(stream) {
        Some((_, end)) => &stream[end..],
        None => &[],
    };
    NalUnits { rest }
}

/// Finds the next `00 00 01`; returns (index of its first byte, index after it).
fn find_start_code(s: &[u8]) -> Option<(usize, usize)> {
    s.windows(3)
        .position(|w| w == [0, 0, 1])
        .map(|i| (i, i + 3))
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = Nal<'a>;

    fn next(&mut self) -> Option<Nal<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let (mut body, next) = match find_start_code(self.rest) {
            Some((start, end)) => (&self.rest[..start], &self.rest[end..]),
            None => (self.rest, &[][..]),
        };
        self.rest = next;
        // A 4-byte start code's leading zero, and trailing_zero_8bits, belong to no NAL.
        while let [head @ .., 0] = body {
            body = head;
        }
        Some(Nal { bytes: body })
    }
}

/// The picture size announced by the first SPS of an access unit (keyframes carry one).
pub fn sps_size(access_unit: &[u8]) -> Option<(u32, u32)> {
    nal_units(access_unit)
        .find(|n| n.kind() == 7)
        .and_then(|n| SpsSummary::parse(n).ok())
        .map(|s| (s.width, s.height))
}

/// The fields of a sequence parameter set that matter to a streaming host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpsSummary {
    /// `profile_idc` (66 baseline, 77 main, 100 high).
    pub profile_idc: u8,
    /// `constraint_set0..5` flags byte.
    pub constraint_flags: u8,
    /// `level_idc` (e.g. 31 for level 3.1).
    pub level_idc: u8,
    /// `seq_parameter_set_id`.
    pub id: u32,
    /// `max_num_ref_frames`.
    pub max_num_ref_frames: u32,
    /// Picture width in pixels after cropping.
    pub width: u32,
    /// Picture height in pixels after cropping.
    pub height: u32,
}

impl SpsSummary {
    /// Parses an SPS NAL unit (ITU-T H.264 7.3.2.1.1), header byte included.
    pub fn parse(nal: Nal<'_>) -> Result<Self, AnnexBError> {
        if nal.kind() != nal_type::SPS {
            return Err(AnnexBError::WrongType {
                expected: nal_type::SPS,
                got: nal.kind(),
            });
        }
        let mut r = BitReader::new(nal.bytes.get(1..).ok_or(AnnexBError::Truncated)?);
        let profile_idc = r.bits(8)? as u8;
        let constraint_flags = r.bits(8)? as u8;
        let level_idc = r.bits(8)? as u8;
        let id = r.ue()?;
        let mut chroma_format_idc = 1;
        if matches!(
            profile_idc,
            100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
        ) {
            chroma_format_idc = r.ue()?;
            if chroma_format_idc == 3 {
                r.bits(1)?; // separate_colour_plane_flag
            }
            r.ue()?; // bit_depth_luma_minus8
            r.ue()?; // bit_depth_chroma_minus8
            r.bits(1)?; // qpprime_y_zero_transform_bypass_flag
            if r.bits(1)? == 1 {
                let lists = if chroma_format_idc == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if r.bits(1)? == 1 {
                        skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }
        r.ue()?; // log2_max_frame_num_minus4
        match r.ue()? {
            0 => {
                r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
            }
            1 => {
                r.bits(1)?; // delta_pic_order_always_zero_flag
                r.se()?; // offset_for_non_ref_pic
                r.se()?; // offset_for_top_to_bottom_field
                let n = r.ue()?;
                if n > 255 {
                    return Err(AnnexBError::Invalid {
                        field: "num_ref_frames_in_pic_order_cnt_cycle",
                    });
                }
                for _ in 0..n {
                    r.se()?;
                }
            }
            2 => {}
            _ => {
                return Err(AnnexBError::Invalid {
                    field: "pic_order_cnt_type",
                });
            }
        }
        let max_num_ref_frames = r.ue()?;
        r.bits(1)?; // gaps_in_frame_num_value_allowed_flag
        let width_mbs = r.ue()?.checked_add(1).ok_or(AnnexBError::Invalid {
            field: "pic_width_in_mbs_minus1",
        })?;
        let height_units = r.ue()?.checked_add(1).ok_or(AnnexBError::Invalid {
            field: "pic_height_in_map_units_minus1",
        })?;
        let frame_mbs_only = r.bits(1)?;
        if frame_mbs_only == 0 {
            r.bits(1)?; // mb_adaptive_frame_field_flag
        }
        r.bits(1)?; // direct_8x8_inference_flag
        let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0, 0, 0, 0);
        if r.bits(1)? == 1 {
            crop_l = r.ue()?;
            crop_r = r.ue()?;
            crop_t = r.ue()?;
            crop_b = r.ue()?;
        }
        // Crop units (7.4.2.1.1): 4:2:0 crops in 2×2 (×2 vertically for field coding).
        let (unit_x, unit_y) = match chroma_format_idc {
            0 | 3 => (1, 2 - frame_mbs_only),
            1 => (2, 2 * (2 - frame_mbs_only)),
            _ => (2, 2 - frame_mbs_only),
        };
        let invalid = |field| AnnexBError::Invalid { field };
        let full_w = width_mbs.checked_mul(16).ok_or(invalid("width"))?;
        let full_h = height_units
            .checked_mul(16 * (2 - frame_mbs_only))
            .ok_or(invalid("height"))?;
        let crop_w = crop_l
            .checked_add(crop_r)
            .and_then(|c| c.checked_mul(unit_x))
            .ok_or(invalid("frame_crop"))?;
        let crop_h = crop_t
            .checked_add(crop_b)
            .and_then(|c| c.checked_mul(unit_y))
            .ok_or(invalid("frame_crop"))?;
        Ok(Self {
            profile_idc,
            constraint_flags,
            level_idc,
            id,
            max_num_ref_frames,
            width: full_w.checked_sub(crop_w).ok_or(invalid("frame_crop"))?,
            height: full_h.checked_sub(crop_h).ok_or(invalid("frame_crop"))?,
        })
    }
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: u32) -> Result<(), AnnexBError> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            let delta = i64::from(r.se()?);
            next = (last + delta + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// MSB-first bit reader over an RBSP that drops emulation-prevention bytes on the fly.
struct BitReader<'a> {
    data: &'a [u8],
    byte: usize,
    bit: u32,
    zeros: u32,
    current: Option<u8>,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            byte: 0,
            bit: 0,
            zeros: 0,
            current: None,
        }
    }

    fn load(&mut self) -> Result<u8, AnnexBError> {
        if let Some(b) = self.current {
            return Ok(b);
        }
        loop {
            let b = *self.data.get(self.byte).ok_or(AnnexBError::Truncated)?;
            if self.zeros >= 2 && b == 3 {
                // emulation_prevention_three_byte (7.4.1): skip it.
                self.zeros = 0;
                self.byte += 1;
                continue;
            }
            self.zeros = if b == 0 { self.zeros + 1 } else { 0 };
            self.current = Some(b);
            return Ok(b);
        }
    }

    fn bit(&mut self) -> Result<u32, AnnexBError> {
        let b = self.load()?;
        let v = u32::from(b >> (7 - self.bit)) & 1;
        self.bit += 1;
        if self.bit == 8 {
            self.bit = 0;
            self.byte += 1;
            self.current = None;
        }
        Ok(v)
    }

    fn bits(&mut self, n: u32) -> Result<u32, AnnexBError> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Ok(v)
    }

    /// Unsigned Exp-Golomb (9.1).
    fn ue(&mut self) -> Result<u32, AnnexBError> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(AnnexBError::Invalid {
                    field: "exp-golomb",
                });
            }
        }
        let rest = self.bits(zeros)?;
        // zeros ≤ 31, so (1 << zeros) - 1 + rest fits in u32 except for the 32-bit edge case.
        ((1u64 << zeros) - 1 + u64::from(rest))
            .try_into()
            .map_err(|_| AnnexBError::Invalid {
                field: "exp-golomb",
            })
    }

    /// Signed Exp-Golomb (9.1.1).
    fn se(&mut self) -> Result<i32, AnnexBError> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        i32::try_from(v).map_err(|_| AnnexBError::Invalid {
            field: "exp-golomb",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// SPS made by `ffmpeg -f lavfi -i testsrc=size=1280x720 -pix_fmt yuv420p -frames:v 1
    /// -c:v libx264 -profile:v high -f h264`, emulation prevention bytes included. Fields as
    /// ffmpeg's `trace_headers` bitstream filter reads them: High (100), level 3.1,
    /// max_num_ref_frames 4, 80×45 macroblocks, no cropping.
    const SPS_720P: [u8; 26] = [
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
    ];

    /// The same at 1920x1080: level 4.0, 120×68 macroblocks, frame_crop_bottom_offset 4
    /// (8 lines).
    const SPS_1080P: [u8; 27] = [
        0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00,
        0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc6, 0x58,
    ];

    #[test]
    fn splits_start_codes() {
        let s = [
            0xff, 0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5, 0, 0,
        ];
        let nals: Vec<_> = nal_units(&s).collect();
        assert_eq!(nals.len(), 3);
        assert_eq!(nals[0].bytes, [0x67, 1, 2]);
        assert_eq!(nals[1].bytes, [0x68, 3]);
        assert_eq!(nals[2].bytes, [0x65, 4, 5]);
        let kinds: Vec<u8> = nals.iter().map(Nal::kind).collect();
        assert_eq!(kinds, [nal_type::SPS, nal_type::PPS, nal_type::IDR]);
        assert_eq!(nals[0].ref_idc(), 3);
        assert_eq!(nal_units(&[1, 2, 3]).count(), 0);
    }

    #[test]
    fn slice_types() {
        // first_mb_in_slice = 0 ("1"), slice_type 7 ("0001000") → I; 5 ("00110") → P.
        assert_eq!(
            Nal {
                bytes: &[0x65, 0b1000_1000]
            }
            .slice_type(),
            Some(SliceType::I)
        );
        assert_eq!(
            Nal {
                bytes: &[0x41, 0b1001_1000]
            }
            .slice_type(),
            Some(SliceType::P)
        );
        // slice_type 6 ("00111") → B.
        assert_eq!(
            Nal {
                bytes: &[0x41, 0b1001_1100]
            }
            .slice_type(),
            Some(SliceType::B)
        );
        assert_eq!(
            Nal {
                bytes: &[0x67, 0x80]
            }
            .slice_type(),
            None
        );
        assert_eq!(Nal { bytes: &[0x41] }.slice_type(), None);
    }

    #[test]
    fn sps_720p_high() {
        let sps = SpsSummary::parse(Nal { bytes: &SPS_720P }).unwrap();
        assert_eq!(sps.profile_idc, 100);
        assert_eq!(sps.level_idc, 31);
        assert_eq!(sps.max_num_ref_frames, 4);
        assert_eq!((sps.width, sps.height), (1280, 720));
        let sps = SpsSummary::parse(Nal { bytes: &SPS_1080P }).unwrap();
        assert_eq!((sps.profile_idc, sps.level_idc), (100, 40));
        assert_eq!(sps.max_num_ref_frames, 4);
        assert_eq!((sps.width, sps.height), (1920, 1080));
    }

    #[test]
    fn sps_errors() {
        assert!(matches!(
            SpsSummary::parse(Nal { bytes: &[0x68, 1] }),
            Err(AnnexBError::WrongType { .. })
        ));
        assert_eq!(
            SpsSummary::parse(Nal {
                bytes: &SPS_720P[..6]
            }),
            Err(AnnexBError::Truncated)
        );
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            for nal in nal_units(&data) {
                let _ = nal.slice_type();
                let _ = SpsSummary::parse(nal);
            }
            let mut with_header = vec![0x67];
            with_header.extend_from_slice(&data);
            let _ = SpsSummary::parse(Nal { bytes: &with_header });
        }
    }
}
