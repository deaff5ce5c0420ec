//! The zero-copy GPU path: frames that stay in GPU memory from the compositor to the encoder.
//!
//! ```text
//!  compositor ──DMA-BUF (fd, fourcc, modifier, planes)──► vulkan::VulkanContext::import_dmabuf
//!  (PipeWire)                                               │ VkImage on the DMA-BUF's memory
//!                                                           ▼ copy_image_to_buffer (GPU copy)
//!  producer without DMA-BUF ──CapturedFrame (SHM)──► upload ──► GpuBuffer (exportable memory)
//!                                                           │ export_opaque_fd
//!                                                           ▼ OPAQUE_FD + size
//!                                  cuda::CudaContext::import_opaque_fd ──► CUdeviceptr
//!                                                           │ (NVENC takes CUDA device
//!                                                           ▼  pointers: not built here)
//! ```
//!
//! Why through Vulkan: the kernel hands frames out as DMA-BUFs, and CUDA cannot import a
//! DMA-BUF (its `CUexternalMemoryHandleType` has OPAQUE_FD, not DMA-BUF); Vulkan can import the
//! DMA-BUF (`VK_EXT_external_memory_dma_buf`) and export memory as an OPAQUE_FD that CUDA
//! imports (`cuImportExternalMemory`), on the same physical device (matched by UUID).
//!
//! Modules: [`plan`] decides (format and modifier mapping, device and memory-type choice; pure,
//! `#![forbid(unsafe_code)]`); [`vulkan`] (feature `vulkan`) and [`cuda`] (feature `cuda`) act:
//! they are FFI and hold this crate's `unsafe`, each block with its `SAFETY` reason. Both
//! libraries are opened at run time (`libvulkan.so.1` by ash's `loaded` feature,
//! `libcuda.so.1` by libloading), so neither feature needs anything at build time and a
//! machine without them gets [`GpuError::Unavailable`], not a failed start.
//!
//! What it does not do (yet): NVENC (the `nvidia-video-codec-sdk` crate needs the CUDA toolkit
//! at build time, docs/capture.md "Zero copy on GPUs"), VA-API, semaphores shared with CUDA (a
//! copy waits on a fence), disjoint multi-fd DMA-BUFs.
//!
//! # Example
//!
//! ```no_run
//! # #[cfg(feature = "vulkan")] {
//! use punktfunk_capture::gpu::vulkan::VulkanContext;
//!
//! let mut vk = VulkanContext::new()?;
//! let buffer = vk.create_buffer(4096, true)?; // exportable device memory
//! vk.upload(&[7u8; 4096], &buffer, 0)?;
//! let exported = vk.export_opaque_fd(&buffer)?; // what cuImportExternalMemory takes
//! # let _ = exported;
//! # }
//! # Ok::<(), punktfunk_capture::gpu::GpuError>(())
//! ```

#[cfg(feature = "cuda")]
pub mod cuda;
mod error;
#[cfg(feature = "vulkan")]
pub mod plan;
#[cfg(feature = "vulkan")]
pub mod vulkan;

/// The Vulkan types the API takes (formats), re-exported so callers need no `ash` dependency.
#[cfg(feature = "vulkan")]
pub use ash::vk;
pub use error::GpuError;
