//! The error of the GPU layer. Pure.
#![forbid(unsafe_code)]

use thiserror::Error;

/// Errors of [`crate::gpu`]. Keeps apart: a driver or library that is not there (the machine),
/// a device that lacks an extension or format (the hardware), a descriptor or buffer that does
/// not fit (the caller), and a driver call that failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GpuError {
    /// A run-time library could not be opened or lacks a symbol (no Vulkan loader or ICD, no
    /// NVIDIA driver).
    #[error("{library} unavailable: {reason}")]
    Unavailable {
        /// The library (`libvulkan.so.1`, `libcuda.so.1`).
        library: &'static str,
        /// The loader's or driver's words.
        reason: String,
    },
    /// The library loaded but offers no usable device.
    #[error("no usable device: {0}")]
    NoDevice(String),
    /// The device lacks an extension an operation needs.
    #[error("{operation} unsupported: device lacks {missing}")]
    Unsupported {
        /// What was asked (`DMA-BUF import`, `OPAQUE_FD export`).
        operation: &'static str,
        /// The missing extension, e.g. `VK_EXT_external_memory_dma_buf`.
        missing: String,
    },
    /// The device has the extensions but not this format, modifier or handle type.
    #[error("{operation} unsupported for {what}")]
    UnsupportedFormat {
        /// What was asked.
        operation: &'static str,
        /// The format, modifier or handle type, in words.
        what: String,
    },
    /// The producer's DMA-BUF description cannot be imported.
    #[cfg(feature = "vulkan")]
    #[error(transparent)]
    Plan(#[from] crate::gpu::plan::PlanError),
    /// A size, offset or handle does not fit (local misuse).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A Vulkan call failed.
    #[error("{call} failed: {result}")]
    Vulkan {
        /// The call.
        call: &'static str,
        /// `VkResult`, by name.
        result: String,
    },
    /// A CUDA driver API call failed.
    #[error("{call} failed: {name} ({code})")]
    Cuda {
        /// The call.
        call: &'static str,
        /// `CUresult`.
        code: i32,
        /// `cuGetErrorName` of it.
        name: String,
    },
    /// The device did not finish within the deadline.
    #[error("GPU work not done within {0:?}")]
    Timeout(std::time::Duration),
    /// OS I/O (duplicating an fd).
    #[error("GPU I/O: {0}")]
    Io(#[from] std::io::Error),
}
