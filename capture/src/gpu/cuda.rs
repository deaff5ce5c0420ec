//! The CUDA driver API, opened at run time: import Vulkan's OPAQUE_FD memory, map it as a
//! device pointer, copy to and from it. Acts (FFI).
//!
//! ```text
//!  CudaDriver::load()            dlopen("libcuda.so.1"), cuInit(0)
//!   └ CudaContext::new(uuid)     the device whose cuDeviceGetUuid == Vulkan's deviceUUID,
//!       │                        its primary context (retained; released on drop)
//!       └ import_opaque_fd(ExportedMemory-like) ─► ExternalBuffer { CUdeviceptr, len }
//!              cuImportExternalMemory(OPAQUE_FD) + cuExternalMemoryGetMappedBuffer
//!              copy_to_host / copy_from_host (cuMemcpyDtoH_v2 / cuMemcpyHtoD_v2)
//!              drop: cuMemFree_v2(ptr), cuDestroyExternalMemory
//! ```
//!
//! Why libloading and not cudarc: we need eleven entry points of one library; cudarc's
//! `dynamic-loading` builds bindings for the whole toolkit and must be told a CUDA version at
//! build time (its default asks `nvcc`, which fails on machines without the toolkit: see
//! docs/capture.md "Zero copy on GPUs"), while the driver ABI of these calls has been stable
//! since CUDA 10 (`cuImportExternalMemory`) and 11 (`cuDevicePrimaryCtxRelease_v2`). The
//! declarations below follow `cuda.h` of CUDA 12 (the `_v2` names are what the `cuMemcpyDtoH`
//! etc. macros expand to), and the struct layouts are asserted at compile time.
//!
//! Facts relied on (CUDA Driver API reference, "External Resource Interoperability"):
//! * On success `cuImportExternalMemory` with `CU_EXTERNAL_MEMORY_HANDLE_TYPE_OPAQUE_FD` takes
//!   ownership of the fd; on failure the caller still owns it.
//! * `size` must be the exporter's allocation size, and `CUDA_EXTERNAL_MEMORY_DEDICATED` set
//!   iff the Vulkan allocation was dedicated.
//! * A pointer from `cuExternalMemoryGetMappedBuffer` is freed with `cuMemFree`, before the
//!   external memory is destroyed.
use std::ffi::{CStr, c_char, c_int, c_uint, c_ulonglong, c_void};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::sync::Arc;

use crate::gpu::GpuError;

/// The library opened (the driver's, not the toolkit's `libcudart`).
pub const LIBRARY: &str = "libcuda.so.1";

type CuResult = c_int;
type CuDevice = c_int;
type CuContext = *mut c_void;
type CuExternalMemory = *mut c_void;
type CuDevicePtr = c_ulonglong;

const CUDA_SUCCESS: CuResult = 0;
/// `CU_EXTERNAL_MEMORY_HANDLE_TYPE_OPAQUE_FD`.
const HANDLE_TYPE_OPAQUE_FD: c_uint = 1;
/// `CUDA_EXTERNAL_MEMORY_DEDICATED`.
const EXTERNAL_MEMORY_DEDICATED: c_uint = 1;

/// `CUDA_EXTERNAL_MEMORY_HANDLE_DESC::handle` (a union of an fd, a win32 handle pair and an
/// NvSciBuf object; 16 bytes, pointer-aligned).
#[repr(C)]
#[derive(Clone, Copy)]
union HandleUnion {
    fd: c_int,
    win32: [*const c_void; 2],
}

/// `CUDA_EXTERNAL_MEMORY_HANDLE_DESC` (cuda.h).
#[repr(C)]
struct ExternalMemoryHandleDesc {
    handle_type: c_uint,
    handle: HandleUnion,
    size: c_ulonglong,
    flags: c_uint,
    reserved: [c_uint; 16],
}

/// `CUDA_EXTERNAL_MEMORY_BUFFER_DESC` (cuda.h).
#[repr(C)]
struct ExternalMemoryBufferDesc {
    offset: c_ulonglong,
    size: c_ulonglong,
    flags: c_uint,
    reserved: [c_uint; 16],
}

// The layouts cuda.h gives on LP64: type at 0, the union at 8, size at 24, flags at 32.
const _: () = assert!(std::mem::size_of::<ExternalMemoryHandleDesc>() == 104);
const _: () = assert!(std::mem::offset_of!(ExternalMemoryHandleDesc, size) == 24);
const _: () = assert!(std::mem::size_of::<ExternalMemoryBufferDesc>() == 88);

/// The entry points, resolved once.
struct Api {
    _lib: libloading::Library,
    get_error_name: unsafe extern "C" fn(CuResult, *mut *const c_char) -> CuResult,
    device_get_count: unsafe extern "C" fn(*mut c_int) -> CuResult,
    device_get: unsafe extern "C" fn(*mut CuDevice, c_int) -> CuResult,
    device_get_uuid: unsafe extern "C" fn(*mut [u8; 16], CuDevice) -> CuResult,
    device_get_name: unsafe extern "C" fn(*mut c_char, c_int, CuDevice) -> CuResult,
    primary_ctx_retain: unsafe extern "C" fn(*mut CuContext, CuDevice) -> CuResult,
    primary_ctx_release: unsafe extern "C" fn(CuDevice) -> CuResult,
    ctx_set_current: unsafe extern "C" fn(CuContext) -> CuResult,
    import_external_memory:
        unsafe extern "C" fn(*mut CuExternalMemory, *const ExternalMemoryHandleDesc) -> CuResult,
    get_mapped_buffer: unsafe extern "C" fn(
        *mut CuDevicePtr,
        CuExternalMemory,
        *const ExternalMemoryBufferDesc,
    ) -> CuResult,
    destroy_external_memory: unsafe extern "C" fn(CuExternalMemory) -> CuResult,
    mem_free: unsafe extern "C" fn(CuDevicePtr) -> CuResult,
    memcpy_dtoh: unsafe extern "C" fn(*mut c_void, CuDevicePtr, usize) -> CuResult,
    memcpy_htod: unsafe extern "C" fn(CuDevicePtr, *const c_void, usize) -> CuResult,
}

impl Api {
    fn check(&self, call: &'static str, r: CuResult) -> Result<(), GpuError> {
        if r == CUDA_SUCCESS {
            return Ok(());
        }
        let mut name: *const c_char = std::ptr::null();
        // SAFETY: cuGetErrorName writes a pointer to a static string (or fails for unknown
        // codes, leaving it null).
        let named = unsafe { (self.get_error_name)(r, &mut name) } == CUDA_SUCCESS;
        let name = if named && !name.is_null() {
            // SAFETY: non-null pointers from cuGetErrorName are static NUL-terminated strings.
            unsafe { CStr::from_ptr(name) }
                .to_string_lossy()
                .into_owned()
        } else {
            "unknown CUresult".into()
        };
        Err(GpuError::Cuda {
            call,
            code: r,
            name,
        })
    }
}

/// The loaded, initialised driver.
#[derive(Clone)]
pub struct CudaDriver {
    api: Arc<Api>,
}

impl std::fmt::Debug for CudaDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDriver").finish_non_exhaustive()
    }
}

macro_rules! sym {
    ($lib:expr, $name:literal) => {{
        // SAFETY: the symbol's Rust type is the cuda.h prototype of `$name` (see `Api`); the
        // Library is kept in `Api` as long as the pointer is.
        let s = unsafe { $lib.get(concat!($name, "\0").as_bytes()) }.map_err(|e| {
            GpuError::Unavailable {
                library: LIBRARY,
                reason: format!("missing {}: {e}", $name),
            }
        })?;
        *s
    }};
}

impl CudaDriver {
    /// Opens `libcuda.so.1` and calls `cuInit(0)`. No NVIDIA driver:
    /// [`GpuError::Unavailable`] naming the library.
    pub fn load() -> Result<Self, GpuError> {
        // SAFETY: libcuda's initialisers are the NVIDIA driver's own; loading it has no
        // preconditions beyond a sane process (no fork-unsafe state is touched here).
        let lib =
            unsafe { libloading::Library::new(LIBRARY) }.map_err(|e| GpuError::Unavailable {
                library: LIBRARY,
                reason: e.to_string(),
            })?;
        let init: unsafe extern "C" fn(c_uint) -> CuResult = sym!(lib, "cuInit");
        let api = Api {
            get_error_name: sym!(lib, "cuGetErrorName"),
            device_get_count: sym!(lib, "cuDeviceGetCount"),
            device_get: sym!(lib, "cuDeviceGet"),
            device_get_uuid: sym!(lib, "cuDeviceGetUuid"),
            device_get_name: sym!(lib, "cuDeviceGetName"),
            primary_ctx_retain: sym!(lib, "cuDevicePrimaryCtxRetain"),
            primary_ctx_release: sym!(lib, "cuDevicePrimaryCtxRelease_v2"),
            ctx_set_current: sym!(lib, "cuCtxSetCurrent"),
            import_external_memory: sym!(lib, "cuImportExternalMemory"),
            get_mapped_buffer: sym!(lib, "cuExternalMemoryGetMappedBuffer"),
            destroy_external_memory: sym!(lib, "cuDestroyExternalMemory"),
            mem_free: sym!(lib, "cuMemFree_v2"),
            memcpy_dtoh: sym!(lib, "cuMemcpyDtoH_v2"),
            memcpy_htod: sym!(lib, "cuMemcpyHtoD_v2"),
            _lib: lib,
        };
        // SAFETY: cuInit takes flags that must be 0; it may be called more than once.
        let r = unsafe { init(0) };
        api.check("cuInit", r).map_err(|e| match e {
            // CUDA_ERROR_NO_DEVICE (100), CUDA_ERROR_INSUFFICIENT_DRIVER (35): a driver
            // without a usable GPU.
            GpuError::Cuda { code: 100 | 35, .. } => GpuError::NoDevice(e.to_string()),
            e => e,
        })?;
        Ok(Self { api: Arc::new(api) })
    }

    /// `(ordinal, name, uuid)` of every CUDA device.
    pub fn devices(&self) -> Result<Vec<(i32, String, [u8; 16])>, GpuError> {
        let a = &self.api;
        let mut count = 0;
        // SAFETY: an out pointer to a live int.
        a.check("cuDeviceGetCount", unsafe {
            (a.device_get_count)(&mut count)
        })?;
        let mut out = Vec::with_capacity(count.max(0) as usize);
        for ordinal in 0..count {
            let mut dev = 0;
            // SAFETY: an out pointer to a live int; `ordinal` < count.
            a.check("cuDeviceGet", unsafe { (a.device_get)(&mut dev, ordinal) })?;
            let mut uuid = [0u8; 16];
            // SAFETY: CUuuid is 16 bytes; `dev` is valid.
            a.check("cuDeviceGetUuid", unsafe {
                (a.device_get_uuid)(&mut uuid, dev)
            })?;
            let mut name = [0 as c_char; 256];
            // SAFETY: the buffer holds `len` bytes; the driver NUL-terminates within them.
            a.check("cuDeviceGetName", unsafe {
                (a.device_get_name)(name.as_mut_ptr(), name.len() as c_int, dev)
            })?;
            // SAFETY: NUL-terminated within the buffer (above).
            let name = unsafe { CStr::from_ptr(name.as_ptr()) };
            out.push((dev, name.to_string_lossy().into_owned(), uuid));
        }
        Ok(out)
    }
}

/// A retained primary context; released when the last holder (context or buffer) drops.
struct Ctx {
    driver: CudaDriver,
    device: CuDevice,
    context: CuContext,
}

// SAFETY: a CUDA context handle may be used from any thread once made current there, which
// every operation does first; the driver API is thread-safe.
unsafe impl Send for Ctx {}
// SAFETY: as Send; no method mutates Rust-side state.
unsafe impl Sync for Ctx {}

impl Ctx {
    fn make_current(&self) -> Result<(), GpuError> {
        let a = &self.driver.api;
        // SAFETY: `context` is retained (valid until our drop).
        a.check("cuCtxSetCurrent", unsafe {
            (a.ctx_set_current)(self.context)
        })
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        let a = &self.driver.api;
        // SAFETY: retained once in CudaContext::new; every buffer that used it holds this Arc
        // and is gone.
        unsafe { (a.primary_ctx_release)(self.device) };
    }
}

/// A CUDA device's primary context, made current on the calling thread by each operation.
pub struct CudaContext {
    ctx: Arc<Ctx>,
    name: String,
}

impl std::fmt::Debug for CudaContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaContext")
            .field("device", &self.ctx.device)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What [`CudaContext::import_opaque_fd`] takes: the fields of the Vulkan export
/// (`crate::gpu::vulkan::ExportedMemory`), so this module does not need the `vulkan` feature.
#[derive(Debug)]
pub struct OpaqueFdMemory {
    /// The OPAQUE_FD; taken over by a successful import.
    pub fd: OwnedFd,
    /// Bytes of the exporter's allocation.
    pub allocation_size: u64,
    /// Bytes mapped, from offset 0.
    pub len: u64,
    /// The exporter's allocation was dedicated.
    pub dedicated: bool,
}

/// Imported external memory mapped as a device pointer (what NVENC registers as a
/// `NV_ENC_INPUT_RESOURCE_TYPE_CUDADEVICEPTR`).
pub struct ExternalBuffer {
    ctx: Arc<Ctx>,
    memory: CuExternalMemory,
    ptr: CuDevicePtr,
    len: u64,
}

// SAFETY: as Ctx: plain driver handles, usable from any thread once the context is current,
// which every method makes it.
unsafe impl Send for ExternalBuffer {}

impl std::fmt::Debug for ExternalBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalBuffer")
            .field("ptr", &format_args!("{:#x}", self.ptr))
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl CudaContext {
    /// The primary context of the device whose UUID is `uuid` (a Vulkan device's
    /// `deviceUUID`), or of device 0 when `None`.
    pub fn new(driver: &CudaDriver, uuid: Option<[u8; 16]>) -> Result<Self, GpuError> {
        let devices = driver.devices()?;
        let (device, name, _) = devices
            .into_iter()
            .find(|(_, _, u)| uuid.is_none_or(|want| *u == want))
            .ok_or_else(|| {
                GpuError::NoDevice(match uuid {
                    Some(_) => "no CUDA device with the Vulkan device's UUID".into(),
                    None => "no CUDA device".into(),
                })
            })?;
        let a = &driver.api;
        let mut context: CuContext = std::ptr::null_mut();
        // SAFETY: an out pointer to a live handle; `device` came from cuDeviceGet.
        a.check("cuDevicePrimaryCtxRetain", unsafe {
            (a.primary_ctx_retain)(&mut context, device)
        })?;
        Ok(Self {
            ctx: Arc::new(Ctx {
                driver: driver.clone(),
                device,
                context,
            }),
            name,
        })
    }

    /// The device's name.
    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// Imports OPAQUE_FD memory and maps its first `memory.len` bytes.
    pub fn import_opaque_fd(&self, memory: OpaqueFdMemory) -> Result<ExternalBuffer, GpuError> {
        if memory.len == 0 || memory.len > memory.allocation_size {
            return Err(GpuError::InvalidInput(format!(
                "map {} bytes of a {}-byte allocation",
                memory.len, memory.allocation_size
            )));
        }
        self.ctx.make_current()?;
        let a = &self.ctx.driver.api;
        let desc = ExternalMemoryHandleDesc {
            handle_type: HANDLE_TYPE_OPAQUE_FD,
            handle: HandleUnion {
                fd: memory.fd.as_raw_fd(),
            },
            size: memory.allocation_size,
            flags: if memory.dedicated {
                EXTERNAL_MEMORY_DEDICATED
            } else {
                0
            },
            reserved: [0; 16],
        };
        let mut ext: CuExternalMemory = std::ptr::null_mut();
        // SAFETY: `desc` is a valid descriptor that lives across the call; the fd is open.
        let r = unsafe { (a.import_external_memory)(&mut ext, &desc) };
        a.check("cuImportExternalMemory", r)?;
        // The driver owns the fd now (on failure above, `memory.fd` closes it on drop).
        let _ = memory.fd.into_raw_fd();
        let buf = ExternalMemoryBufferDesc {
            offset: 0,
            size: memory.len,
            flags: 0,
            reserved: [0; 16],
        };
        let mut ptr: CuDevicePtr = 0;
        // SAFETY: `ext` was just imported; the range lies inside its size (checked above).
        let r = unsafe { (a.get_mapped_buffer)(&mut ptr, ext, &buf) };
        if let Err(e) = a.check("cuExternalMemoryGetMappedBuffer", r) {
            // SAFETY: imported above, nothing mapped from it.
            unsafe { (a.destroy_external_memory)(ext) };
            return Err(e);
        }
        Ok(ExternalBuffer {
            ctx: self.ctx.clone(),
            memory: ext,
            ptr,
            len: memory.len,
        })
    }
}

impl ExternalBuffer {
    /// The device pointer.
    pub fn device_ptr(&self) -> u64 {
        self.ptr
    }

    /// Mapped bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Never true (an import of 0 bytes is refused).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn range(&self, offset: u64, len: usize) -> Result<CuDevicePtr, GpuError> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.len && len > 0 => Ok(self.ptr + offset),
            _ => Err(GpuError::InvalidInput(format!(
                "{len} bytes at {offset} of a {}-byte mapping",
                self.len
            ))),
        }
    }

    /// Copies `dst.len()` bytes from `offset` to the host (synchronous).
    pub fn copy_to_host(&self, offset: u64, dst: &mut [u8]) -> Result<(), GpuError> {
        let src = self.range(offset, dst.len())?;
        self.ctx.make_current()?;
        let a = &self.ctx.driver.api;
        // SAFETY: `src..src+len` lies inside the mapping; `dst` is a live host buffer of len.
        let r = unsafe { (a.memcpy_dtoh)(dst.as_mut_ptr().cast(), src, dst.len()) };
        a.check("cuMemcpyDtoH", r)
    }

    /// Copies `src` to `offset` (synchronous).
    pub fn copy_from_host(&self, offset: u64, src: &[u8]) -> Result<(), GpuError> {
        let dst = self.range(offset, src.len())?;
        self.ctx.make_current()?;
        let a = &self.ctx.driver.api;
        // SAFETY: as copy_to_host, the other way round.
        let r = unsafe { (a.memcpy_htod)(dst, src.as_ptr().cast(), src.len()) };
        a.check("cuMemcpyHtoD", r)
    }
}

impl Drop for ExternalBuffer {
    fn drop(&mut self) {
        let a = &self.ctx.driver.api;
        // SAFETY: the pointer was mapped from `memory`, which we imported; the pointer is
        // freed first (CUDA reference: cuExternalMemoryGetMappedBuffer). The context (kept
        // alive by our Arc) is made current so cuMemFree finds it.
        unsafe {
            (a.ctx_set_current)(self.ctx.context);
            (a.mem_free)(self.ptr);
            (a.destroy_external_memory)(self.memory);
        }
    }
}

#[cfg(feature = "vulkan")]
impl From<crate::gpu::vulkan::ExportedMemory> for OpaqueFdMemory {
    fn from(e: crate::gpu::vulkan::ExportedMemory) -> Self {
        Self {
            fd: e.fd,
            allocation_size: e.allocation_size,
            len: e.len,
            dedicated: e.dedicated,
        }
    }
}
