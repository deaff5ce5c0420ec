//! The import plan: what a DMA-BUF (DRM fourcc, modifier, planes) becomes in Vulkan, and which
//! device extensions that takes. Also the device and memory-type choices. Decides only.
//!
//! ```text
//!  DmaBufImage { fourcc 'NV12', modifier, width, height, planes: [fd, offset, stride] × n }
//!        │ plan_import
//!        ▼
//!  ImportPlan { format G8_B8R8_2PLANE_420_UNORM, tiling DRM_FORMAT_MODIFIER_EXT, modifier,
//!               layouts: [VkSubresourceLayout { offset, rowPitch }] × n, fd }
//!        │ needs (IMPORT_EXTENSIONS): VK_KHR_external_memory_fd, VK_EXT_external_memory_dma_buf,
//!        │                            VK_EXT_image_drm_format_modifier
//!        ▼
//!  vkCreateImage + VkImportMemoryFdInfoKHR(DMA_BUF_EXT) (crate::gpu::vulkan)
//! ```
//!
//! Facts this relies on:
//! * DRM fourccs and modifiers are those of the kernel's `include/uapi/drm/drm_fourcc.h`:
//!   `fourcc_code(a, b, c, d) = a | b << 8 | c << 16 | d << 24`, `DRM_FORMAT_MOD_LINEAR = 0`,
//!   `DRM_FORMAT_MOD_INVALID = 0x00ff_ffff_ffff_ffff` ("implicit": the layout is known only to
//!   the driver that made the buffer).
//! * DRM formats name the bits of a little-endian word, most significant first, so
//!   `XRGB8888` is B, G, R, X in memory: `VK_FORMAT_B8G8R8A8_UNORM` (Vulkan names bytes in
//!   memory order). The mapping follows the Vulkan spec's "Format Definition" table.
//! * With `VK_EXT_image_drm_format_modifier`, an image with `tiling =
//!   DRM_FORMAT_MODIFIER_EXT` takes one `VkSubresourceLayout` per *memory* plane (offset and
//!   row pitch; `size` must be 0), `VkImageDrmFormatModifierExplicitCreateInfoEXT`.
//! * A modifier of LINEAR has as many memory planes as the format has planes; other
//!   modifiers may add auxiliary planes (compression metadata), which only the driver can
//!   count (`drmFormatModifierPlaneCount`), so the plan checks the count for LINEAR only.
#![forbid(unsafe_code)]

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd};

use ash::vk;
use thiserror::Error;

/// `fourcc_code` of drm_fourcc.h.
pub const fn fourcc(code: &[u8; 4]) -> u32 {
    code[0] as u32 | (code[1] as u32) << 8 | (code[2] as u32) << 16 | (code[3] as u32) << 24
}

/// DRM fourccs the plan knows (drm_fourcc.h names).
pub mod drm {
    use super::fourcc;
    /// `DRM_FORMAT_XRGB8888` ('XR24'): B, G, R, X bytes.
    pub const XRGB8888: u32 = fourcc(b"XR24");
    /// `DRM_FORMAT_ARGB8888` ('AR24'): B, G, R, A bytes.
    pub const ARGB8888: u32 = fourcc(b"AR24");
    /// `DRM_FORMAT_XBGR8888` ('XB24'): R, G, B, X bytes.
    pub const XBGR8888: u32 = fourcc(b"XB24");
    /// `DRM_FORMAT_ABGR8888` ('AB24'): R, G, B, A bytes.
    pub const ABGR8888: u32 = fourcc(b"AB24");
    /// `DRM_FORMAT_XRGB2101010` ('XR30'): 10-bit B, G, R in a little-endian word.
    pub const XRGB2101010: u32 = fourcc(b"XR30");
    /// `DRM_FORMAT_NV12` ('NV12'): Y plane, then interleaved Cb Cr at half resolution.
    pub const NV12: u32 = fourcc(b"NV12");
    /// `DRM_FORMAT_P010` ('P010'): as NV12 with 16-bit samples, 10 significant high bits.
    pub const P010: u32 = fourcc(b"P010");
    /// `DRM_FORMAT_MOD_LINEAR`: rows one after the other.
    pub const MOD_LINEAR: u64 = 0;
    /// `DRM_FORMAT_MOD_INVALID`: implicit modifier (driver-private layout).
    pub const MOD_INVALID: u64 = 0x00ff_ffff_ffff_ffff;
}

/// One plane of a format: its size relative to the picture and bytes per texel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaneInfo {
    /// Picture width divided by this is the plane's width (2 for 4:2:0 chroma).
    pub width_div: u32,
    /// Picture height divided by this is the plane's height.
    pub height_div: u32,
    /// Bytes per texel of the plane (a CbCr pair counts as one texel).
    pub bytes_per_texel: u32,
}

/// A DRM format and its Vulkan twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatInfo {
    /// DRM fourcc.
    pub fourcc: u32,
    /// The Vulkan format with the same memory layout.
    pub vk_format: vk::Format,
    /// The format's planes (1 for packed RGB, 2 for NV12/P010).
    pub planes: &'static [PlaneInfo],
}

const PACKED4: &[PlaneInfo] = &[PlaneInfo {
    width_div: 1,
    height_div: 1,
    bytes_per_texel: 4,
}];
const SEMI_PLANAR_8: &[PlaneInfo] = &[
    PlaneInfo {
        width_div: 1,
        height_div: 1,
        bytes_per_texel: 1,
    },
    PlaneInfo {
        width_div: 2,
        height_div: 2,
        bytes_per_texel: 2,
    },
];
const SEMI_PLANAR_16: &[PlaneInfo] = &[
    PlaneInfo {
        width_div: 1,
        height_div: 1,
        bytes_per_texel: 2,
    },
    PlaneInfo {
        width_div: 2,
        height_div: 2,
        bytes_per_texel: 4,
    },
];

const FORMATS: &[FormatInfo] = &[
    FormatInfo {
        fourcc: drm::XRGB8888,
        vk_format: vk::Format::B8G8R8A8_UNORM,
        planes: PACKED4,
    },
    FormatInfo {
        fourcc: drm::ARGB8888,
        vk_format: vk::Format::B8G8R8A8_UNORM,
        planes: PACKED4,
    },
    FormatInfo {
        fourcc: drm::XBGR8888,
        vk_format: vk::Format::R8G8B8A8_UNORM,
        planes: PACKED4,
    },
    FormatInfo {
        fourcc: drm::ABGR8888,
        vk_format: vk::Format::R8G8B8A8_UNORM,
        planes: PACKED4,
    },
    FormatInfo {
        fourcc: drm::XRGB2101010,
        vk_format: vk::Format::A2R10G10B10_UNORM_PACK32,
        planes: PACKED4,
    },
    FormatInfo {
        fourcc: drm::NV12,
        vk_format: vk::Format::G8_B8R8_2PLANE_420_UNORM,
        planes: SEMI_PLANAR_8,
    },
    FormatInfo {
        fourcc: drm::P010,
        vk_format: vk::Format::G10X6_B10X6R10X6_2PLANE_420_UNORM_3PACK16,
        planes: SEMI_PLANAR_16,
    },
];

/// The format table entry of `fourcc`.
pub fn format_info(fourcc: u32) -> Option<&'static FormatInfo> {
    FORMATS.iter().find(|f| f.fourcc == fourcc)
}

/// The format table entry for a Vulkan format (the first DRM format that maps to it).
pub fn format_info_vk(format: vk::Format) -> Option<&'static FormatInfo> {
    FORMATS.iter().find(|f| f.vk_format == format)
}

/// The DRM fourcc of a PipeWire (SPA) video format when it arrives as a DMA-BUF. SPA names
/// bytes in memory order, DRM the bits of a little-endian word, so SPA `BGRx` is DRM
/// `XRGB8888` (spa/param/video/raw-utils.h and drm_fourcc.h). `I420` (DRM `YUV420`) has no
/// Vulkan mapping here: `None`.
#[cfg(feature = "pipewire")]
pub fn pipewire_fourcc(format: crate::pipewire::PixelFormat) -> Option<u32> {
    use crate::pipewire::PixelFormat as P;
    match format {
        P::Bgrx => Some(drm::XRGB8888),
        P::Bgra => Some(drm::ARGB8888),
        P::Rgbx => Some(drm::XBGR8888),
        P::Rgba => Some(drm::ABGR8888),
        P::Nv12 => Some(drm::NV12),
        _ => None,
    }
}

/// `'XR24'` for printing.
pub fn fourcc_name(fourcc: u32) -> String {
    fourcc
        .to_le_bytes()
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

/// One memory plane of a DMA-BUF, as a producer hands it out (PipeWire `spa_data` +
/// `spa_chunk`, `DmaBufDescriptor` in `crate::pipewire`).
#[derive(Debug, Clone, Copy)]
pub struct DmaBufPlane<'fd> {
    /// The DMA-BUF; several planes usually share one. Borrowed: the import duplicates it.
    pub fd: BorrowedFd<'fd>,
    /// Byte offset of the plane in `fd`.
    pub offset: u64,
    /// Bytes between the starts of two rows (the DRM "pitch").
    pub stride: u64,
}

/// A DMA-BUF image: what `VulkanContext::import_dmabuf` takes.
#[derive(Debug, Clone, Copy)]
pub struct DmaBufImage<'fd> {
    /// DRM fourcc ([`drm`]).
    pub fourcc: u32,
    /// DRM format modifier; [`drm::MOD_LINEAR`] when the producer negotiated none (PipeWire's
    /// `StreamFormat::modifier == None` is a modifier of 0, which is LINEAR).
    pub modifier: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The memory planes in use, `planes[..plane_count]`.
    pub planes: [Option<DmaBufPlane<'fd>>; 4],
}

impl<'fd> DmaBufImage<'fd> {
    /// The memory planes in use, in order.
    pub fn planes(&self) -> impl Iterator<Item = &DmaBufPlane<'fd>> {
        self.planes.iter().map_while(Option::as_ref)
    }
}

/// What the import will create: every field is checked against the descriptor.
#[derive(Debug, Clone, Copy)]
pub struct ImportPlan {
    /// The Vulkan image format.
    pub format: vk::Format,
    /// Always `DRM_FORMAT_MODIFIER_EXT`: an explicit modifier and explicit plane layouts.
    pub tiling: vk::ImageTiling,
    /// The DRM modifier.
    pub modifier: u64,
    /// Picture size.
    pub extent: vk::Extent2D,
    /// Memory planes.
    pub plane_count: usize,
    /// Offset and row pitch of each memory plane (`size`, `array_pitch`, `depth_pitch` 0).
    pub layouts: [vk::SubresourceLayout; 4],
    /// The raw fd all planes live in (the import duplicates it).
    pub fd: i32,
    /// The handle type the memory is imported as.
    pub handle_type: vk::ExternalMemoryHandleTypeFlags,
}

/// Device extensions a DMA-BUF import needs, in the order they are checked (the first one
/// missing is the one reported). `VK_KHR_external_memory_fd` is the fd import itself,
/// `VK_EXT_external_memory_dma_buf` the DMA-BUF handle type, `VK_EXT_image_drm_format_modifier`
/// the explicit modifier and plane layouts.
pub const IMPORT_EXTENSIONS: [&CStr; 3] = [
    ash::khr::external_memory_fd::NAME,
    ash::ext::external_memory_dma_buf::NAME,
    ash::ext::image_drm_format_modifier::NAME,
];

/// Device extensions an OPAQUE_FD export (the handle CUDA's `cuImportExternalMemory` takes)
/// needs.
pub const EXPORT_EXTENSIONS: [&CStr; 1] = [ash::khr::external_memory_fd::NAME];

/// The first of `needed` that `has` says is missing.
pub fn missing_extension(
    needed: &[&'static CStr],
    has: impl Fn(&CStr) -> bool,
) -> Option<&'static CStr> {
    needed.iter().copied().find(|e| !has(e))
}

/// Why a descriptor cannot be imported (the producer's description, not the device).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A DRM format the table does not map.
    #[error("DRM format {0} has no Vulkan mapping here")]
    UnknownFormat(String),
    /// `DRM_FORMAT_MOD_INVALID`: the layout is private to the driver that made the buffer.
    #[error(
        "implicit DRM modifier (DRM_FORMAT_MOD_INVALID): the producer must negotiate an explicit one"
    )]
    ImplicitModifier,
    /// No planes, or a gap in `planes`.
    #[error("DMA-BUF has no planes or a gap between planes")]
    NoPlanes,
    /// Planes in different fds (a disjoint image; not imported here).
    #[error("planes in different DMA-BUF fds (disjoint images are not imported)")]
    Disjoint,
    /// A LINEAR buffer with a plane count other than the format's.
    #[error("{format} LINEAR has {expected} planes, the descriptor {got}")]
    PlaneCount {
        /// The fourcc.
        format: String,
        /// The format's planes.
        expected: usize,
        /// The descriptor's.
        got: usize,
    },
    /// A LINEAR plane whose rows are shorter than the picture's.
    #[error("plane {plane}: stride {stride} below the {min} bytes a row needs")]
    Stride {
        /// The plane.
        plane: usize,
        /// Its stride.
        stride: u64,
        /// Bytes of one row.
        min: u64,
    },
    /// Zero or odd sizes (4:2:0 needs even ones), or above 16384.
    #[error("size {width}x{height} not importable")]
    Size {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
}

/// Largest side accepted (Vulkan's `maxImageDimension2D` is at least 4096; desktop GPUs 16384
/// or more).
pub const MAX_DIMENSION: u32 = 16_384;

/// Checks `image` and turns it into the Vulkan image the import creates.
pub fn plan_import(image: &DmaBufImage<'_>) -> Result<ImportPlan, PlanError> {
    let info =
        format_info(image.fourcc).ok_or(PlanError::UnknownFormat(fourcc_name(image.fourcc)))?;
    if image.modifier == drm::MOD_INVALID {
        return Err(PlanError::ImplicitModifier);
    }
    let subsampled = info.planes.iter().any(|p| p.width_div > 1);
    let (w, h) = (image.width, image.height);
    if w == 0
        || h == 0
        || w > MAX_DIMENSION
        || h > MAX_DIMENSION
        || (subsampled && (w % 2 != 0 || h % 2 != 0))
    {
        return Err(PlanError::Size {
            width: w,
            height: h,
        });
    }
    let plane_count = image.planes().count();
    if plane_count == 0 || image.planes[plane_count..].iter().any(Option::is_some) {
        return Err(PlanError::NoPlanes);
    }
    let fd = image.planes[0].as_ref().map(|p| p.fd.as_raw_fd());
    let fd = fd.ok_or(PlanError::NoPlanes)?;
    if image.planes().any(|p| p.fd.as_raw_fd() != fd) {
        return Err(PlanError::Disjoint);
    }
    if image.modifier == drm::MOD_LINEAR {
        if plane_count != info.planes.len() {
            return Err(PlanError::PlaneCount {
                format: fourcc_name(image.fourcc),
                expected: info.planes.len(),
                got: plane_count,
            });
        }
        for (i, (plane, pinfo)) in image.planes().zip(info.planes).enumerate() {
            let min = u64::from(w / pinfo.width_div) * u64::from(pinfo.bytes_per_texel);
            if plane.stride < min {
                return Err(PlanError::Stride {
                    plane: i,
                    stride: plane.stride,
                    min,
                });
            }
        }
    }
    let mut layouts = [vk::SubresourceLayout::default(); 4];
    for (layout, plane) in layouts.iter_mut().zip(image.planes()) {
        // size must be 0 for VkImageDrmFormatModifierExplicitCreateInfoEXT (VUID-…-size-02267).
        layout.offset = plane.offset;
        layout.row_pitch = plane.stride;
    }
    Ok(ImportPlan {
        format: info.vk_format,
        tiling: vk::ImageTiling::DRM_FORMAT_MODIFIER_EXT,
        modifier: image.modifier,
        extent: vk::Extent2D {
            width: w,
            height: h,
        },
        plane_count,
        layouts,
        fd,
        handle_type: vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT,
    })
}

/// Where each plane of a `width`×`height` picture of `info` lands when copied out of an
/// image into a buffer, planes one after the other, rows tightly packed:
/// `(offset, width, height, row_bytes)` per plane.
pub fn packed_planes(info: &FormatInfo, width: u32, height: u32) -> Vec<(u64, u32, u32, u64)> {
    let mut offset = 0u64;
    info.planes
        .iter()
        .map(|p| {
            let (pw, ph) = (width / p.width_div, height / p.height_div);
            let row = u64::from(pw) * u64::from(p.bytes_per_texel);
            let entry = (offset, pw, ph, row);
            offset += row * u64::from(ph);
            entry
        })
        .collect()
}

/// Bytes a packed copy of the picture takes (the sum of [`packed_planes`]).
pub fn packed_len(info: &FormatInfo, width: u32, height: u32) -> u64 {
    packed_planes(info, width, height)
        .iter()
        .map(|&(_, _, h, row)| row * u64::from(h))
        .sum()
}

/// What kind of device a Vulkan physical device is (`VkPhysicalDeviceType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeviceKind {
    /// A GPU of its own: NVENC/CUDA live here.
    Discrete,
    /// A GPU sharing the CPU's memory.
    Integrated,
    /// A virtualised GPU.
    Virtual,
    /// Anything else.
    Other,
    /// A CPU implementation (lavapipe): works everywhere, last choice.
    Cpu,
}

impl DeviceKind {
    /// From `VkPhysicalDeviceProperties::deviceType`.
    pub fn from_vk(t: vk::PhysicalDeviceType) -> Self {
        match t {
            vk::PhysicalDeviceType::DISCRETE_GPU => Self::Discrete,
            vk::PhysicalDeviceType::INTEGRATED_GPU => Self::Integrated,
            vk::PhysicalDeviceType::VIRTUAL_GPU => Self::Virtual,
            vk::PhysicalDeviceType::CPU => Self::Cpu,
            _ => Self::Other,
        }
    }
}

/// What the choice looks at for one physical device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceSummary {
    /// Its kind.
    pub kind: DeviceKind,
    /// `VkPhysicalDeviceProperties::apiVersion`.
    pub api_version: u32,
    /// A queue family with transfer (graphics, compute or transfer) exists.
    pub has_transfer_queue: bool,
    /// `VkPhysicalDeviceIDProperties::deviceUUID` (CUDA's `cuDeviceGetUuid` returns the same).
    pub uuid: [u8; 16],
}

/// Lowest device API version used (external memory, dedicated allocations and
/// `vkGetPhysicalDeviceExternalBufferProperties` are core in Vulkan 1.1).
pub const MIN_API_VERSION: u32 = vk::API_VERSION_1_1;

/// Index of the device to use: the one whose UUID is `uuid` when given (to match a CUDA
/// device), else the first of the best kind (discrete, integrated, virtual, other, CPU) that
/// has Vulkan 1.1 and a transfer queue.
pub fn choose_device(devices: &[DeviceSummary], uuid: Option<[u8; 16]>) -> Option<usize> {
    let usable = |d: &DeviceSummary| d.api_version >= MIN_API_VERSION && d.has_transfer_queue;
    let candidates = devices.iter().enumerate().filter(|(_, d)| usable(d));
    match uuid {
        Some(u) => candidates
            .filter(|(_, d)| d.uuid == u)
            .map(|(i, _)| i)
            .next(),
        None => candidates.min_by_key(|(i, d)| (d.kind, *i)).map(|(i, _)| i),
    }
}

/// The memory type for an allocation: allowed by `type_bits`, with all of `required`, and
/// with `preferred` too where one has it.
pub fn choose_memory_type(
    type_bits: u32,
    types: &[vk::MemoryPropertyFlags],
    required: vk::MemoryPropertyFlags,
    preferred: vk::MemoryPropertyFlags,
) -> Option<u32> {
    let allowed = |i: usize, f: &vk::MemoryPropertyFlags| {
        i < 32 && type_bits & (1 << i) != 0 && f.contains(required)
    };
    let pick = |want: vk::MemoryPropertyFlags| {
        types
            .iter()
            .enumerate()
            .find(|(i, f)| allowed(*i, f) && f.contains(want))
            .map(|(i, _)| i as u32)
    };
    pick(preferred).or_else(|| pick(vk::MemoryPropertyFlags::empty()))
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    fn plane(fd: BorrowedFd<'_>, offset: u64, stride: u64) -> Option<DmaBufPlane<'_>> {
        Some(DmaBufPlane { fd, offset, stride })
    }

    #[test]
    fn fourcc_codes_match_drm_fourcc_h() {
        // drm_fourcc.h: #define DRM_FORMAT_XRGB8888 fourcc_code('X', 'R', '2', '4') = 0x34325258
        assert_eq!(drm::XRGB8888, 0x3432_5258);
        assert_eq!(drm::NV12, 0x3231_564e);
        assert_eq!(fourcc_name(drm::ABGR8888), "AB24");
        assert_eq!(fourcc_name(0x0000_0001), "????");
    }

    #[test]
    fn bgrx_linear_single_plane() {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        let image = DmaBufImage {
            fourcc: drm::XRGB8888,
            modifier: drm::MOD_LINEAR,
            width: 1920,
            height: 1080,
            planes: [plane(fd, 0, 7680), None, None, None],
        };
        let p = plan_import(&image).expect("valid");
        assert_eq!(p.format, vk::Format::B8G8R8A8_UNORM);
        assert_eq!(p.tiling, vk::ImageTiling::DRM_FORMAT_MODIFIER_EXT);
        assert_eq!(p.plane_count, 1);
        assert_eq!((p.layouts[0].offset, p.layouts[0].row_pitch), (0, 7680));
        assert_eq!(p.layouts[0].size, 0, "explicit layouts must have size 0");
        assert_eq!(
            p.handle_type,
            vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT
        );
        assert_eq!(p.fd, fd.as_raw_fd());
    }

    #[test]
    fn nv12_two_planes_one_fd() {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        // 1920x1080 NV12 as a GPU hands it out: Y rows padded to 2048, CbCr after 1088 rows.
        let image = DmaBufImage {
            fourcc: drm::NV12,
            modifier: drm::MOD_LINEAR,
            width: 1920,
            height: 1080,
            planes: [plane(fd, 0, 2048), plane(fd, 2048 * 1088, 2048), None, None],
        };
        let p = plan_import(&image).expect("valid");
        assert_eq!(p.format, vk::Format::G8_B8R8_2PLANE_420_UNORM);
        assert_eq!(p.plane_count, 2);
        assert_eq!(p.layouts[1].offset, 2048 * 1088);
    }

    #[test]
    fn vendor_modifier_keeps_auxiliary_planes() {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        // I915_FORMAT_MOD_Y_TILED_GEN12_RC_CCS (fourcc_mod_code(INTEL, 6)): XRGB8888 with a
        // compression-control plane; the driver counts its planes, not the plan.
        let modifier = (0x01u64 << 56) | 6;
        let image = DmaBufImage {
            fourcc: drm::XRGB8888,
            modifier,
            width: 1280,
            height: 720,
            planes: [plane(fd, 0, 5120), plane(fd, 3_686_400, 512), None, None],
        };
        let p = plan_import(&image).expect("valid");
        assert_eq!((p.plane_count, p.modifier), (2, modifier));
    }

    #[test]
    fn refusals() {
        let stdin = std::io::stdin();
        let stdout = std::io::stdout();
        let (a, b) = (stdin.as_fd(), stdout.as_fd());
        let base = DmaBufImage {
            fourcc: drm::XRGB8888,
            modifier: drm::MOD_LINEAR,
            width: 64,
            height: 64,
            planes: [plane(a, 0, 256), None, None, None],
        };
        assert!(plan_import(&base).is_ok());
        fn refused<'a>(base: DmaBufImage<'a>, f: impl FnOnce(&mut DmaBufImage<'a>)) -> PlanError {
            let mut d = base;
            f(&mut d);
            plan_import(&d).expect_err("refused")
        }
        assert_eq!(
            refused(base, |d| d.fourcc = fourcc(b"YUYV")),
            PlanError::UnknownFormat("YUYV".into())
        );
        assert_eq!(
            refused(base, |d| d.modifier = drm::MOD_INVALID),
            PlanError::ImplicitModifier
        );
        assert_eq!(refused(base, |d| d.planes[0] = None), PlanError::NoPlanes);
        assert_eq!(
            refused(base, |d| d.planes[2] = plane(a, 0, 256)),
            PlanError::NoPlanes
        );
        assert_eq!(
            refused(base, |d| d.planes[1] = plane(b, 0, 256)),
            PlanError::Disjoint
        );
        assert!(matches!(
            refused(base, |d| d.planes[1] = plane(a, 0, 256)),
            PlanError::PlaneCount {
                expected: 1,
                got: 2,
                ..
            }
        ));
        assert_eq!(
            refused(base, |d| d.planes[0] = plane(a, 0, 255)),
            PlanError::Stride {
                plane: 0,
                stride: 255,
                min: 256
            }
        );
        assert!(matches!(
            refused(base, |d| d.width = 0),
            PlanError::Size { .. }
        ));
        assert!(matches!(
            refused(base, |d| d.height = MAX_DIMENSION + 1),
            PlanError::Size { .. }
        ));
        // 4:2:0 needs even sizes.
        let mut nv12 = base;
        nv12.fourcc = drm::NV12;
        nv12.width = 63;
        nv12.planes = [plane(a, 0, 64), plane(a, 4096, 64), None, None];
        assert!(matches!(plan_import(&nv12), Err(PlanError::Size { .. })));
    }

    #[test]
    fn extensions_reported_in_order() {
        let lavapipe = |e: &CStr| e == ash::khr::external_memory_fd::NAME;
        assert_eq!(
            missing_extension(&IMPORT_EXTENSIONS, lavapipe),
            Some(ash::ext::external_memory_dma_buf::NAME)
        );
        assert_eq!(missing_extension(&EXPORT_EXTENSIONS, lavapipe), None);
        assert_eq!(
            missing_extension(&IMPORT_EXTENSIONS, |_| false),
            Some(ash::khr::external_memory_fd::NAME)
        );
        assert_eq!(missing_extension(&IMPORT_EXTENSIONS, |_| true), None);
    }

    #[cfg(feature = "pipewire")]
    #[test]
    fn pipewire_formats_map_to_drm() {
        use crate::pipewire::PixelFormat as P;
        assert_eq!(pipewire_fourcc(P::Bgrx), Some(drm::XRGB8888));
        assert_eq!(pipewire_fourcc(P::Rgba), Some(drm::ABGR8888));
        assert_eq!(pipewire_fourcc(P::Nv12), Some(drm::NV12));
        assert_eq!(pipewire_fourcc(P::I420), None);
        // Every mapped format has a Vulkan twin with the same byte order.
        let bgrx = format_info(drm::XRGB8888).map(|f| f.vk_format);
        assert_eq!(bgrx, Some(vk::Format::B8G8R8A8_UNORM));
    }

    #[test]
    fn packed_nv12_layout() {
        let info = format_info(drm::NV12).expect("in the table");
        assert_eq!(
            packed_planes(info, 64, 32),
            vec![(0, 64, 32, 64), (64 * 32, 32, 16, 64)]
        );
        assert_eq!(packed_len(info, 64, 32), 64 * 32 * 3 / 2);
        let bgrx = format_info_vk(vk::Format::B8G8R8A8_UNORM).expect("in the table");
        assert_eq!(packed_len(bgrx, 64, 32), 64 * 32 * 4);
    }

    #[test]
    fn device_choice() {
        let d = |kind, api_version, q, u: u8| DeviceSummary {
            kind,
            api_version,
            has_transfer_queue: q,
            uuid: [u; 16],
        };
        let v13 = vk::API_VERSION_1_3;
        let list = [
            d(DeviceKind::Cpu, v13, true, 1),
            d(DeviceKind::Integrated, v13, true, 2),
            d(DeviceKind::Discrete, vk::API_VERSION_1_0, true, 3),
            d(DeviceKind::Discrete, v13, false, 4),
            d(DeviceKind::Discrete, v13, true, 5),
        ];
        assert_eq!(choose_device(&list, None), Some(4));
        assert_eq!(choose_device(&list[..4], None), Some(1));
        assert_eq!(choose_device(&list[..1], None), Some(0));
        assert_eq!(choose_device(&list, Some([2; 16])), Some(1));
        // A UUID match still needs a usable device.
        assert_eq!(choose_device(&list, Some([3; 16])), None);
        assert_eq!(choose_device(&[], None), None);
    }

    #[test]
    fn memory_type_choice() {
        use vk::MemoryPropertyFlags as M;
        let types = [
            M::HOST_VISIBLE | M::HOST_COHERENT,
            M::DEVICE_LOCAL,
            M::DEVICE_LOCAL | M::HOST_VISIBLE | M::HOST_COHERENT,
        ];
        assert_eq!(
            choose_memory_type(0b111, &types, M::empty(), M::DEVICE_LOCAL),
            Some(1)
        );
        assert_eq!(
            choose_memory_type(0b101, &types, M::empty(), M::DEVICE_LOCAL),
            Some(2)
        );
        assert_eq!(
            choose_memory_type(0b001, &types, M::empty(), M::DEVICE_LOCAL),
            Some(0)
        );
        assert_eq!(
            choose_memory_type(0b010, &types, M::HOST_VISIBLE, M::empty()),
            None
        );
        assert_eq!(choose_memory_type(0, &types, M::empty(), M::empty()), None);
    }
}
