//! Vulkan: one device, DMA-BUF import, uploads from system memory, OPAQUE_FD export. Acts.
//!
//! ```text
//!  VulkanContext ── Arc<Shared { entry, instance, device }> ──┬── GpuBuffer  (buffer + memory)
//!   │ queue, command pool/buffer, fence, staging buffer        └── GpuImage   (image + memory)
//!   │                                                           each destroys its own objects
//!   ├ import_dmabuf(DmaBufImage) ─► GpuImage   (memory: the DMA-BUF, duplicated fd)
//!   ├ upload / upload_frame ──────► GpuBuffer  (staging copy, then vkCmdCopyBuffer)
//!   ├ upload_image ───────────────► GpuImage   (vkCmdCopyBufferToImage)
//!   ├ copy_image_to_buffer ───────► GpuBuffer  (planes packed, plan::packed_planes)
//!   ├ download ───────────────────► &mut [u8]
//!   └ export_opaque_fd(GpuBuffer) ─► ExportedMemory { fd, allocation_size, … }
//!     import_opaque_fd(ExportedMemory) ─► GpuBuffer (on a second VkDevice of the same GPU)
//! ```
//!
//! Every submission waits on the context's fence before returning (one in flight; the
//! encoder's frame pacing is the only parallelism needed so far). The staging buffer grows to
//! the largest transfer once and is reused, so the steady state allocates no memory.
//!
//! Spec facts used (Vulkan 1.3 specification):
//! * A successful `vkAllocateMemory` with `VkImportMemoryFdInfoKHR` takes ownership of the fd;
//!   on failure the application still owns it ("External Memory Handle Types", fd import), so
//!   a failed import closes our duplicate and leaves the producer's fd alone.
//! * OPAQUE_FD memory can be imported only on a device with the same `deviceUUID` and
//!   `driverUUID` (`VkPhysicalDeviceIDProperties`), with the exporter's `allocationSize` and
//!   memory type; CUDA matches devices by the same UUID (`cuDeviceGetUuid`).
//! * `externalMemoryFeatures & DEDICATED_ONLY` means the memory must be a dedicated allocation;
//!   an importer (CUDA: `CUDA_EXTERNAL_MEMORY_DEDICATED`) must then say so.
//! * An imported DMA-BUF image's contents are defined in `GENERAL` layout only after an
//!   acquire from `VK_QUEUE_FAMILY_FOREIGN_EXT` (`VK_EXT_queue_family_foreign`); without that
//!   extension we transition from `GENERAL` on `QUEUE_FAMILY_IGNORED`, as drivers without it
//!   keep the contents.
use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use ash::vk;

use crate::display::{CapturedFrame, PixelFormat};
use crate::gpu::GpuError;
use crate::gpu::plan::{self, DeviceKind, DeviceSummary, DmaBufImage, FormatInfo};

/// The loader ash opens (`ash::Entry::load`).
pub const LOADER: &str = "libvulkan.so.1";

/// How long one submission may take before [`GpuError::Timeout`].
pub const SUBMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Optional device extensions, enabled where the device has them. `VK_KHR_image_format_list`
/// is core in 1.2 and needed by the modifier extension on 1.1 devices.
const WANTED_EXTENSIONS: [&CStr; 5] = [
    ash::khr::external_memory_fd::NAME,
    ash::ext::external_memory_dma_buf::NAME,
    ash::ext::image_drm_format_modifier::NAME,
    ash::ext::queue_family_foreign::NAME,
    ash::khr::image_format_list::NAME,
];

fn vk_err(call: &'static str) -> impl FnOnce(vk::Result) -> GpuError {
    move |result| GpuError::Vulkan {
        call,
        result: format!("{result:?}"),
    }
}

/// What every buffer and image keeps alive: destroyed last, after all of them.
struct Shared {
    _entry: ash::Entry,
    instance: ash::Instance,
    device: ash::Device,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: every object made from `device` holds an Arc to this and is gone, and the
        // context waited for the device to go idle before dropping its Arc; the device is
        // destroyed before the instance it was made from.
        unsafe {
            self.device.destroy_device(None);
            self.instance.destroy_instance(None);
        }
    }
}

/// Device memory holding a byte range: the target of uploads, the source of exports.
pub struct GpuBuffer {
    shared: Arc<Shared>,
    buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    len: u64,
    allocation_size: u64,
    memory_type_index: u32,
    dedicated: bool,
    exportable: bool,
}

impl std::fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuBuffer")
            .field("len", &self.len)
            .field("allocation_size", &self.allocation_size)
            .field("memory_type_index", &self.memory_type_index)
            .field("dedicated", &self.dedicated)
            .field("exportable", &self.exportable)
            .finish_non_exhaustive()
    }
}

impl GpuBuffer {
    /// Usable bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for a zero-length buffer (never made: [`VulkanContext::create_buffer`] refuses 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the memory allocation behind it (at least [`Self::len`]).
    pub fn allocation_size(&self) -> u64 {
        self.allocation_size
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        // SAFETY: the buffer and memory were made on this device and are ours alone; every
        // submission that used them waited on its fence before returning.
        unsafe {
            self.shared.device.destroy_buffer(self.buffer, None);
            self.shared.device.free_memory(self.memory, None);
        }
    }
}

/// A 2D image: imported from a DMA-BUF, or made for uploads.
pub struct GpuImage {
    shared: Arc<Shared>,
    image: vk::Image,
    memory: vk::DeviceMemory,
    format: &'static FormatInfo,
    extent: vk::Extent2D,
    layout: vk::ImageLayout,
    /// Imported from another driver: the first use acquires it from the foreign queue family.
    foreign: bool,
}

impl std::fmt::Debug for GpuImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuImage")
            .field("format", &self.format.vk_format)
            .field("extent", &self.extent)
            .field("layout", &self.layout)
            .field("foreign", &self.foreign)
            .finish_non_exhaustive()
    }
}

impl GpuImage {
    /// The Vulkan format.
    pub fn format(&self) -> vk::Format {
        self.format.vk_format
    }

    /// Width and height.
    pub fn extent(&self) -> (u32, u32) {
        (self.extent.width, self.extent.height)
    }

    /// Bytes a packed copy of all planes takes ([`VulkanContext::copy_image_to_buffer`]).
    pub fn packed_len(&self) -> u64 {
        plan::packed_len(self.format, self.extent.width, self.extent.height)
    }
}

impl Drop for GpuImage {
    fn drop(&mut self) {
        // SAFETY: as for GpuBuffer: ours alone, no submission in flight.
        unsafe {
            self.shared.device.destroy_image(self.image, None);
            self.shared.device.free_memory(self.memory, None);
        }
    }
}

/// Device memory exported as an OPAQUE_FD: what CUDA's `cuImportExternalMemory` (and another
/// `VkDevice` on the same GPU) imports.
#[derive(Debug)]
pub struct ExportedMemory {
    /// The handle; an import takes it over.
    pub fd: OwnedFd,
    /// Bytes of the allocation (CUDA's `CUDA_EXTERNAL_MEMORY_HANDLE_DESC::size`).
    pub allocation_size: u64,
    /// Bytes in use, from offset 0.
    pub len: u64,
    /// A dedicated allocation (CUDA flag `CUDA_EXTERNAL_MEMORY_DEDICATED`).
    pub dedicated: bool,
    /// The exporter's memory type index (a Vulkan importer must use the same).
    pub memory_type_index: u32,
    /// The exporting device's `deviceUUID` (`cuDeviceGetUuid` of the CUDA device to use).
    pub device_uuid: [u8; 16],
}

/// Which optional extensions the device was created with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceExtensions {
    /// `VK_KHR_external_memory_fd`.
    pub external_memory_fd: bool,
    /// `VK_EXT_external_memory_dma_buf`.
    pub external_memory_dma_buf: bool,
    /// `VK_EXT_image_drm_format_modifier`.
    pub image_drm_format_modifier: bool,
    /// `VK_EXT_queue_family_foreign`.
    pub queue_family_foreign: bool,
}

impl DeviceExtensions {
    fn has(&self, name: &CStr) -> bool {
        if name == ash::khr::external_memory_fd::NAME {
            self.external_memory_fd
        } else if name == ash::ext::external_memory_dma_buf::NAME {
            self.external_memory_dma_buf
        } else if name == ash::ext::image_drm_format_modifier::NAME {
            self.image_drm_format_modifier
        } else if name == ash::ext::queue_family_foreign::NAME {
            self.queue_family_foreign
        } else {
            false
        }
    }
}

/// Host-visible memory the uploads and downloads go through.
struct Staging {
    buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    len: u64,
}

/// One Vulkan device with a transfer queue.
pub struct VulkanContext {
    shared: Arc<Shared>,
    physical: vk::PhysicalDevice,
    queue: vk::Queue,
    queue_family: u32,
    memory_types: Vec<vk::MemoryPropertyFlags>,
    memory_fd: Option<ash::khr::external_memory_fd::Device>,
    extensions: DeviceExtensions,
    device_uuid: [u8; 16],
    name: String,
    kind: DeviceKind,
    pool: vk::CommandPool,
    cmd: vk::CommandBuffer,
    fence: vk::Fence,
    staging: Option<Staging>,
}

impl std::fmt::Debug for VulkanContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VulkanContext")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("extensions", &self.extensions)
            .finish_non_exhaustive()
    }
}

impl VulkanContext {
    /// Opens the loader, picks a device ([`plan::choose_device`]: a discrete GPU first) and
    /// creates it with the external-memory extensions it has.
    pub fn new() -> Result<Self, GpuError> {
        Self::with_device_uuid(None)
    }

    /// As [`Self::new`], but on the device whose `deviceUUID` is `uuid` when given (a second
    /// context on the same GPU, or the GPU a CUDA device is).
    pub fn with_device_uuid(uuid: Option<[u8; 16]>) -> Result<Self, GpuError> {
        // SAFETY: loading runs the loader's initialisers; libvulkan is a well-behaved library
        // and ash keeps it loaded as long as the Entry (kept in Shared) lives.
        let entry = unsafe { ash::Entry::load() }.map_err(|e| GpuError::Unavailable {
            library: LOADER,
            reason: e.to_string(),
        })?;
        // SAFETY: a global command on a loaded entry.
        let version = unsafe { entry.try_enumerate_instance_version() }
            .map_err(vk_err("vkEnumerateInstanceVersion"))?
            .unwrap_or(vk::API_VERSION_1_0);
        if version < plan::MIN_API_VERSION {
            return Err(GpuError::NoDevice(format!(
                "Vulkan loader is {}.{}, 1.1 needed",
                vk::api_version_major(version),
                vk::api_version_minor(version)
            )));
        }
        let app = vk::ApplicationInfo::default()
            .application_name(c"punktfunk")
            .api_version(vk::API_VERSION_1_2);
        let info = vk::InstanceCreateInfo::default().application_info(&app);
        // SAFETY: `info` and what it points to live across the call.
        let instance = unsafe { entry.create_instance(&info, None) }.map_err(|e| match e {
            vk::Result::ERROR_INCOMPATIBLE_DRIVER => GpuError::Unavailable {
                library: LOADER,
                reason: "no Vulkan driver (ICD) installed".into(),
            },
            e => vk_err("vkCreateInstance")(e),
        })?;
        match Self::open_device(entry, instance.clone(), uuid) {
            Ok(ctx) => Ok(ctx),
            Err(e) => {
                // SAFETY: open_device failed before handing the instance to a Shared, and
                // destroyed any device it made from it.
                unsafe { instance.destroy_instance(None) };
                Err(e)
            }
        }
    }

    fn open_device(
        entry: ash::Entry,
        instance: ash::Instance,
        uuid: Option<[u8; 16]>,
    ) -> Result<Self, GpuError> {
        // SAFETY: a valid instance.
        let physicals = unsafe { instance.enumerate_physical_devices() }
            .map_err(vk_err("vkEnumeratePhysicalDevices"))?;
        let mut summaries = Vec::with_capacity(physicals.len());
        let mut names = Vec::with_capacity(physicals.len());
        let mut families = Vec::with_capacity(physicals.len());
        for &pd in &physicals {
            let mut id = vk::PhysicalDeviceIDProperties::default();
            let mut props = vk::PhysicalDeviceProperties2::default().push_next(&mut id);
            // SAFETY: `pd` came from this instance; the chain lives across the call.
            unsafe { instance.get_physical_device_properties2(pd, &mut props) };
            let p = props.properties;
            // SAFETY: `pd` came from this instance.
            let queues = unsafe { instance.get_physical_device_queue_family_properties(pd) };
            let any = vk::QueueFlags::GRAPHICS | vk::QueueFlags::COMPUTE | vk::QueueFlags::TRANSFER;
            let family = queues
                .iter()
                .position(|q| q.queue_count > 0 && q.queue_flags.intersects(any))
                .and_then(|i| u32::try_from(i).ok());
            names.push(
                p.device_name_as_c_str()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
            families.push(family);
            summaries.push(DeviceSummary {
                kind: DeviceKind::from_vk(p.device_type),
                api_version: p.api_version,
                has_transfer_queue: family.is_some(),
                uuid: id.device_uuid,
            });
        }
        let index = plan::choose_device(&summaries, uuid).ok_or_else(|| {
            GpuError::NoDevice(format!(
                "{} physical device(s) [{}], none with Vulkan 1.1, a transfer queue{}",
                physicals.len(),
                names.join(", "),
                if uuid.is_some() {
                    " and the UUID asked for"
                } else {
                    ""
                }
            ))
        })?;
        let pd = physicals[index];
        let family = families[index].ok_or_else(|| GpuError::NoDevice("no queue".into()))?;
        // SAFETY: `pd` came from this instance.
        let available = unsafe { instance.enumerate_device_extension_properties(pd) }
            .map_err(vk_err("vkEnumerateDeviceExtensionProperties"))?;
        let has = |name: &CStr| {
            available
                .iter()
                .any(|e| e.extension_name_as_c_str().is_ok_and(|n| n == name))
        };
        // VK_KHR_image_format_list only where it is not core (1.1 devices).
        let promoted = |e: &CStr| {
            e == ash::khr::image_format_list::NAME
                && summaries[index].api_version >= vk::API_VERSION_1_2
        };
        let enabled: Vec<&CStr> = WANTED_EXTENSIONS
            .into_iter()
            .filter(|e| has(e) && !promoted(e))
            .collect();
        let enabled_ptrs: Vec<_> = enabled.iter().map(|e| e.as_ptr()).collect();
        let priorities = [1.0f32];
        let queue_info = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(family)
            .queue_priorities(&priorities)];
        let info = vk::DeviceCreateInfo::default()
            .queue_create_infos(&queue_info)
            .enabled_extension_names(&enabled_ptrs);
        // SAFETY: `pd` came from this instance; `info` and its arrays live across the call;
        // every name in `enabled_ptrs` was reported by the device.
        let device =
            unsafe { instance.create_device(pd, &info, None) }.map_err(vk_err("vkCreateDevice"))?;
        let extensions = DeviceExtensions {
            external_memory_fd: enabled.contains(&ash::khr::external_memory_fd::NAME),
            external_memory_dma_buf: enabled.contains(&ash::ext::external_memory_dma_buf::NAME),
            image_drm_format_modifier: enabled.contains(&ash::ext::image_drm_format_modifier::NAME),
            queue_family_foreign: enabled.contains(&ash::ext::queue_family_foreign::NAME),
        };
        let memory_fd = extensions
            .external_memory_fd
            .then(|| ash::khr::external_memory_fd::Device::new(&instance, &device));
        // SAFETY: `pd` came from this instance.
        let mem_props = unsafe { instance.get_physical_device_memory_properties(pd) };
        let memory_types = mem_props
            .memory_types_as_slice()
            .iter()
            .map(|t| t.property_flags)
            .collect();
        // SAFETY: the family was passed in the device's queue create infos with one queue.
        let queue = unsafe { device.get_device_queue(family, 0) };
        let (pool, cmd, fence) = match Self::command_objects(&device, family) {
            Ok(v) => v,
            Err(e) => {
                // SAFETY: nothing made from the device is left (command_objects cleans up
                // after itself); the caller destroys the instance.
                unsafe { device.destroy_device(None) };
                return Err(e);
            }
        };
        let shared = Arc::new(Shared {
            _entry: entry,
            instance,
            device,
        });
        Ok(Self {
            physical: pd,
            queue,
            queue_family: family,
            memory_types,
            memory_fd,
            extensions,
            device_uuid: summaries[index].uuid,
            name: names[index].clone(),
            kind: summaries[index].kind,
            pool,
            cmd,
            fence,
            staging: None,
            shared,
        })
    }

    /// The command pool, its one command buffer and the submission fence.
    fn command_objects(
        d: &ash::Device,
        family: u32,
    ) -> Result<(vk::CommandPool, vk::CommandBuffer, vk::Fence), GpuError> {
        let pool_info = vk::CommandPoolCreateInfo::default()
            .queue_family_index(family)
            .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER);
        // SAFETY: a valid device and create info.
        let pool = unsafe { d.create_command_pool(&pool_info, None) }
            .map_err(vk_err("vkCreateCommandPool"))?;
        let alloc = vk::CommandBufferAllocateInfo::default()
            .command_pool(pool)
            .level(vk::CommandBufferLevel::PRIMARY)
            .command_buffer_count(1);
        // SAFETY: `pool` is this device's.
        let made = unsafe { d.allocate_command_buffers(&alloc) }
            .map_err(vk_err("vkAllocateCommandBuffers"))
            .and_then(|c| {
                // SAFETY: a valid device and create info.
                let fence = unsafe { d.create_fence(&vk::FenceCreateInfo::default(), None) }
                    .map_err(vk_err("vkCreateFence"))?;
                Ok((c[0], fence))
            });
        match made {
            Ok((cmd, fence)) => Ok((pool, cmd, fence)),
            Err(e) => {
                // SAFETY: the pool is ours and unused (destroying it frees its buffers).
                unsafe { d.destroy_command_pool(pool, None) };
                Err(e)
            }
        }
    }

    /// The device's name (`llvmpipe (LLVM 15.0.6, 256 bits)`, `NVIDIA H100 80GB HBM3`).
    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// The device's kind.
    pub fn device_kind(&self) -> DeviceKind {
        self.kind
    }

    /// `VkPhysicalDeviceIDProperties::deviceUUID`.
    pub fn device_uuid(&self) -> [u8; 16] {
        self.device_uuid
    }

    /// The optional extensions in use.
    pub fn extensions(&self) -> DeviceExtensions {
        self.extensions
    }

    fn memory_type(
        &self,
        bits: u32,
        required: vk::MemoryPropertyFlags,
        preferred: vk::MemoryPropertyFlags,
    ) -> Result<u32, GpuError> {
        plan::choose_memory_type(bits, &self.memory_types, required, preferred).ok_or_else(|| {
            GpuError::UnsupportedFormat {
                operation: "allocation",
                what: format!("memory type bits {bits:#x} with {required:?}"),
            }
        })
    }

    fn require(&self, operation: &'static str, needed: &[&'static CStr]) -> Result<(), GpuError> {
        match plan::missing_extension(needed, |e| self.extensions.has(e)) {
            Some(missing) => Err(GpuError::Unsupported {
                operation,
                missing: missing.to_string_lossy().into_owned(),
            }),
            None => Ok(()),
        }
    }

    /// A device-local buffer of `len` bytes (transfer source and destination, storage).
    /// `exportable`: its memory can be exported with [`Self::export_opaque_fd`] (needs
    /// `VK_KHR_external_memory_fd`).
    pub fn create_buffer(&self, len: u64, exportable: bool) -> Result<GpuBuffer, GpuError> {
        if len == 0 {
            return Err(GpuError::InvalidInput("zero-length buffer".into()));
        }
        let handle = vk::ExternalMemoryHandleTypeFlags::OPAQUE_FD;
        let usage = vk::BufferUsageFlags::TRANSFER_SRC
            | vk::BufferUsageFlags::TRANSFER_DST
            | vk::BufferUsageFlags::STORAGE_BUFFER;
        let mut dedicated = false;
        if exportable {
            self.require("OPAQUE_FD export", &plan::EXPORT_EXTENSIONS)?;
            let info = vk::PhysicalDeviceExternalBufferInfo::default()
                .usage(usage)
                .handle_type(handle);
            let mut props = vk::ExternalBufferProperties::default();
            // SAFETY: `physical` is this instance's; both structs live across the call.
            unsafe {
                self.shared
                    .instance
                    .get_physical_device_external_buffer_properties(
                        self.physical,
                        &info,
                        &mut props,
                    )
            };
            let features = props.external_memory_properties.external_memory_features;
            if !features.contains(vk::ExternalMemoryFeatureFlags::EXPORTABLE) {
                return Err(GpuError::UnsupportedFormat {
                    operation: "OPAQUE_FD export",
                    what: "buffers (not exportable on this device)".into(),
                });
            }
            dedicated = features.contains(vk::ExternalMemoryFeatureFlags::DEDICATED_ONLY);
        }
        let mut ext_info = vk::ExternalMemoryBufferCreateInfo::default().handle_types(handle);
        let mut info = vk::BufferCreateInfo::default()
            .size(len)
            .usage(usage)
            .sharing_mode(vk::SharingMode::EXCLUSIVE);
        if exportable {
            info = info.push_next(&mut ext_info);
        }
        let d = &self.shared.device;
        // SAFETY: valid device and create info (the chain lives across the call).
        let buffer = unsafe { d.create_buffer(&info, None) }.map_err(vk_err("vkCreateBuffer"))?;
        let bound = self.allocate_for_buffer(buffer, exportable, dedicated);
        match bound {
            Ok((memory, allocation_size, memory_type_index)) => Ok(GpuBuffer {
                shared: self.shared.clone(),
                buffer,
                memory,
                len,
                allocation_size,
                memory_type_index,
                dedicated,
                exportable,
            }),
            Err(e) => {
                // SAFETY: the buffer is ours, unbound and unused.
                unsafe { d.destroy_buffer(buffer, None) };
                Err(e)
            }
        }
    }

    fn allocate_for_buffer(
        &self,
        buffer: vk::Buffer,
        exportable: bool,
        dedicated: bool,
    ) -> Result<(vk::DeviceMemory, u64, u32), GpuError> {
        let d = &self.shared.device;
        // SAFETY: `buffer` is this device's.
        let req = unsafe { d.get_buffer_memory_requirements(buffer) };
        let type_index = self.memory_type(
            req.memory_type_bits,
            vk::MemoryPropertyFlags::empty(),
            vk::MemoryPropertyFlags::DEVICE_LOCAL,
        )?;
        let mut export = vk::ExportMemoryAllocateInfo::default()
            .handle_types(vk::ExternalMemoryHandleTypeFlags::OPAQUE_FD);
        let mut ded = vk::MemoryDedicatedAllocateInfo::default().buffer(buffer);
        let mut info = vk::MemoryAllocateInfo::default()
            .allocation_size(req.size)
            .memory_type_index(type_index);
        if exportable {
            info = info.push_next(&mut export);
        }
        if dedicated {
            info = info.push_next(&mut ded);
        }
        // SAFETY: valid device and allocate info (the chain lives across the call).
        let memory =
            unsafe { d.allocate_memory(&info, None) }.map_err(vk_err("vkAllocateMemory"))?;
        // SAFETY: both are this device's; the memory type was allowed by the requirements.
        if let Err(e) = unsafe { d.bind_buffer_memory(buffer, memory, 0) } {
            // SAFETY: the memory is ours and bound to nothing.
            unsafe { d.free_memory(memory, None) };
            return Err(vk_err("vkBindBufferMemory")(e));
        }
        Ok((memory, req.size, type_index))
    }

    /// Exports `buffer`'s memory as an OPAQUE_FD (`vkGetMemoryFdKHR`). The buffer must have
    /// been made exportable; each call returns a new fd for the same memory.
    pub fn export_opaque_fd(&self, buffer: &GpuBuffer) -> Result<ExportedMemory, GpuError> {
        self.require("OPAQUE_FD export", &plan::EXPORT_EXTENSIONS)?;
        if !buffer.exportable {
            return Err(GpuError::InvalidInput(
                "buffer was not created exportable".into(),
            ));
        }
        let loader = self.memory_fd.as_ref().ok_or(GpuError::Unsupported {
            operation: "OPAQUE_FD export",
            missing: "VK_KHR_external_memory_fd".into(),
        })?;
        let info = vk::MemoryGetFdInfoKHR::default()
            .memory(buffer.memory)
            .handle_type(vk::ExternalMemoryHandleTypeFlags::OPAQUE_FD);
        // SAFETY: the memory was allocated on this device with OPAQUE_FD in its export info.
        let fd = unsafe { loader.get_memory_fd(&info) }.map_err(vk_err("vkGetMemoryFdKHR"))?;
        // SAFETY: vkGetMemoryFdKHR returned a new fd that the application owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(ExportedMemory {
            fd,
            allocation_size: buffer.allocation_size,
            len: buffer.len,
            dedicated: buffer.dedicated,
            memory_type_index: buffer.memory_type_index,
            device_uuid: self.device_uuid,
        })
    }

    /// Imports memory exported by [`Self::export_opaque_fd`] (of this or another context on
    /// the same GPU) as a buffer of `exported.len` bytes. Takes the fd over.
    pub fn import_opaque_fd(&self, exported: ExportedMemory) -> Result<GpuBuffer, GpuError> {
        self.require("OPAQUE_FD import", &plan::EXPORT_EXTENSIONS)?;
        if exported.device_uuid != self.device_uuid {
            return Err(GpuError::InvalidInput(
                "OPAQUE_FD memory from another device (deviceUUID differs)".into(),
            ));
        }
        let handle = vk::ExternalMemoryHandleTypeFlags::OPAQUE_FD;
        let d = &self.shared.device;
        let mut ext_info = vk::ExternalMemoryBufferCreateInfo::default().handle_types(handle);
        let info = vk::BufferCreateInfo::default()
            .size(exported.len)
            .usage(
                vk::BufferUsageFlags::TRANSFER_SRC
                    | vk::BufferUsageFlags::TRANSFER_DST
                    | vk::BufferUsageFlags::STORAGE_BUFFER,
            )
            .sharing_mode(vk::SharingMode::EXCLUSIVE)
            .push_next(&mut ext_info);
        // SAFETY: valid device and create info.
        let buffer = unsafe { d.create_buffer(&info, None) }.map_err(vk_err("vkCreateBuffer"))?;
        // SAFETY: `buffer` is this device's.
        let req = unsafe { d.get_buffer_memory_requirements(buffer) };
        let fail = |e: GpuError| {
            // SAFETY: the buffer is ours, unbound and unused.
            unsafe { d.destroy_buffer(buffer, None) };
            e
        };
        if req.memory_type_bits & (1 << exported.memory_type_index) == 0
            || req.size > exported.allocation_size
        {
            return Err(fail(GpuError::InvalidInput(format!(
                "exported memory (type {}, {} bytes) does not fit the buffer (types {:#x}, {} bytes)",
                exported.memory_type_index,
                exported.allocation_size,
                req.memory_type_bits,
                req.size
            ))));
        }
        let raw = exported.fd.into_raw_fd();
        let mut import = vk::ImportMemoryFdInfoKHR::default()
            .handle_type(handle)
            .fd(raw);
        let mut ded = vk::MemoryDedicatedAllocateInfo::default().buffer(buffer);
        let mut alloc = vk::MemoryAllocateInfo::default()
            .allocation_size(exported.allocation_size)
            .memory_type_index(exported.memory_type_index)
            .push_next(&mut import);
        if exported.dedicated {
            alloc = alloc.push_next(&mut ded);
        }
        // SAFETY: valid device and allocate info; `raw` is an OPAQUE_FD of memory with this
        // size and type on a device with our UUID (checked above).
        let memory = match unsafe { d.allocate_memory(&alloc, None) } {
            Ok(m) => m,
            Err(e) => {
                // SAFETY: a failed import leaves the fd with us (spec, fd import); close it.
                drop(unsafe { OwnedFd::from_raw_fd(raw) });
                return Err(fail(vk_err("vkAllocateMemory (OPAQUE_FD import)")(e)));
            }
        };
        // SAFETY: both are this device's; size and type fit (checked above).
        if let Err(e) = unsafe { d.bind_buffer_memory(buffer, memory, 0) } {
            // SAFETY: ours, bound to nothing.
            unsafe { d.free_memory(memory, None) };
            return Err(fail(vk_err("vkBindBufferMemory")(e)));
        }
        Ok(GpuBuffer {
            shared: self.shared.clone(),
            buffer,
            memory,
            len: exported.len,
            allocation_size: exported.allocation_size,
            memory_type_index: exported.memory_type_index,
            dedicated: exported.dedicated,
            exportable: false,
        })
    }

    /// Imports a DMA-BUF as an image ([`plan::plan_import`]). The producer's fds are
    /// duplicated; the image keeps its own reference to the memory. Refuses with
    /// [`GpuError::Unsupported`] naming the first missing extension of
    /// [`plan::IMPORT_EXTENSIONS`], before touching the fds.
    pub fn import_dmabuf(&self, image: &DmaBufImage<'_>) -> Result<GpuImage, GpuError> {
        let import = plan::plan_import(image)?;
        self.require("DMA-BUF import", &plan::IMPORT_EXTENSIONS)?;
        let info = plan::format_info(image.fourcc).ok_or_else(|| {
            GpuError::InvalidInput("planned format missing from the table".into())
        })?;
        let loader = self.memory_fd.as_ref().ok_or(GpuError::Unsupported {
            operation: "DMA-BUF import",
            missing: "VK_KHR_external_memory_fd".into(),
        })?;
        // Only copied out (copy_image_to_buffer): the fewest usages, the most modifiers that
        // qualify (SAMPLED would also need the format's sampled-image feature).
        let usage = vk::ImageUsageFlags::TRANSFER_SRC;
        self.check_modifier(&import, usage)?;
        let d = &self.shared.device;
        let fd = image.planes[0]
            .as_ref()
            .ok_or(GpuError::InvalidInput("no plane".into()))?
            .fd
            .try_clone_to_owned()?;
        let mut fd_props = vk::MemoryFdPropertiesKHR::default();
        // SAFETY: `fd` is an open DMA-BUF fd we own; the out struct lives across the call.
        unsafe {
            loader.get_memory_fd_properties(import.handle_type, fd.as_raw_fd(), &mut fd_props)
        }
        .map_err(vk_err("vkGetMemoryFdPropertiesKHR"))?;
        let layouts = &import.layouts[..import.plane_count];
        let mut explicit = vk::ImageDrmFormatModifierExplicitCreateInfoEXT::default()
            .drm_format_modifier(import.modifier)
            .plane_layouts(layouts);
        let mut external =
            vk::ExternalMemoryImageCreateInfo::default().handle_types(import.handle_type);
        let create = vk::ImageCreateInfo::default()
            .image_type(vk::ImageType::TYPE_2D)
            .format(import.format)
            .extent(vk::Extent3D {
                width: import.extent.width,
                height: import.extent.height,
                depth: 1,
            })
            .mip_levels(1)
            .array_layers(1)
            .samples(vk::SampleCountFlags::TYPE_1)
            .tiling(import.tiling)
            .usage(usage)
            .sharing_mode(vk::SharingMode::EXCLUSIVE)
            .initial_layout(vk::ImageLayout::UNDEFINED)
            .push_next(&mut external)
            .push_next(&mut explicit);
        // SAFETY: valid device; the create info and its chain live across the call; the
        // modifier and format were checked importable by check_modifier.
        let vk_image = unsafe { d.create_image(&create, None) }.map_err(vk_err("vkCreateImage"))?;
        // SAFETY: `vk_image` is this device's.
        let req = unsafe { d.get_image_memory_requirements(vk_image) };
        let bits = req.memory_type_bits & fd_props.memory_type_bits;
        let memory = self
            .memory_type(
                bits,
                vk::MemoryPropertyFlags::empty(),
                vk::MemoryPropertyFlags::empty(),
            )
            .and_then(|type_index| {
                let raw = fd.into_raw_fd();
                let mut imp = vk::ImportMemoryFdInfoKHR::default()
                    .handle_type(import.handle_type)
                    .fd(raw);
                let mut ded = vk::MemoryDedicatedAllocateInfo::default().image(vk_image);
                let alloc = vk::MemoryAllocateInfo::default()
                    .allocation_size(req.size)
                    .memory_type_index(type_index)
                    .push_next(&mut imp)
                    .push_next(&mut ded);
                // SAFETY: valid device and allocate info; `raw` is a DMA-BUF fd we own and
                // the type is one vkGetMemoryFdPropertiesKHR allowed for it.
                unsafe { d.allocate_memory(&alloc, None) }.map_err(|e| {
                    // SAFETY: a failed import leaves the fd with us; close our duplicate.
                    drop(unsafe { OwnedFd::from_raw_fd(raw) });
                    vk_err("vkAllocateMemory (DMA-BUF import)")(e)
                })
            })
            .and_then(|memory| {
                // SAFETY: both are this device's; a dedicated allocation for this image.
                match unsafe { d.bind_image_memory(vk_image, memory, 0) } {
                    Ok(()) => Ok(memory),
                    Err(e) => {
                        // SAFETY: ours, bound to nothing.
                        unsafe { d.free_memory(memory, None) };
                        Err(vk_err("vkBindImageMemory")(e))
                    }
                }
            });
        match memory {
            Ok(memory) => Ok(GpuImage {
                shared: self.shared.clone(),
                image: vk_image,
                memory,
                format: info,
                extent: import.extent,
                layout: vk::ImageLayout::GENERAL,
                foreign: true,
            }),
            Err(e) => {
                // SAFETY: ours, unbound, unused.
                unsafe { d.destroy_image(vk_image, None) };
                Err(e)
            }
        }
    }

    /// Checks that the device imports `plan`'s format with its modifier and plane count
    /// (`VkDrmFormatModifierPropertiesListEXT`, then `vkGetPhysicalDeviceImageFormatProperties2`
    /// with the DMA-BUF handle type).
    fn check_modifier(
        &self,
        import: &plan::ImportPlan,
        usage: vk::ImageUsageFlags,
    ) -> Result<(), GpuError> {
        let instance = &self.shared.instance;
        let what = || {
            format!(
                "{:?} with modifier {:#018x}, {} plane(s)",
                import.format, import.modifier, import.plane_count
            )
        };
        let mut list = vk::DrmFormatModifierPropertiesListEXT::default();
        let mut props = vk::FormatProperties2::default().push_next(&mut list);
        // SAFETY: valid physical device; the chain lives across the call (first call: count).
        unsafe {
            instance.get_physical_device_format_properties2(
                self.physical,
                import.format,
                &mut props,
            )
        };
        let _ = props;
        let count = list.drm_format_modifier_count as usize;
        let mut modifiers = vec![vk::DrmFormatModifierPropertiesEXT::default(); count];
        let mut list = vk::DrmFormatModifierPropertiesListEXT::default()
            .drm_format_modifier_properties(&mut modifiers);
        let mut props = vk::FormatProperties2::default().push_next(&mut list);
        // SAFETY: as above, with room for `count` entries.
        unsafe {
            instance.get_physical_device_format_properties2(
                self.physical,
                import.format,
                &mut props,
            )
        };
        let _ = props;
        let known = modifiers
            .iter()
            .find(|m| m.drm_format_modifier == import.modifier);
        match known {
            Some(m) if m.drm_format_modifier_plane_count as usize == import.plane_count => {}
            _ => {
                return Err(GpuError::UnsupportedFormat {
                    operation: "DMA-BUF import",
                    what: what(),
                });
            }
        }
        let mut ext =
            vk::PhysicalDeviceExternalImageFormatInfo::default().handle_type(import.handle_type);
        let mut modi = vk::PhysicalDeviceImageDrmFormatModifierInfoEXT::default()
            .drm_format_modifier(import.modifier)
            .sharing_mode(vk::SharingMode::EXCLUSIVE);
        let info = vk::PhysicalDeviceImageFormatInfo2::default()
            .format(import.format)
            .ty(vk::ImageType::TYPE_2D)
            .tiling(import.tiling)
            .usage(usage)
            .push_next(&mut ext)
            .push_next(&mut modi);
        let mut ext_props = vk::ExternalImageFormatProperties::default();
        let mut out = vk::ImageFormatProperties2::default().push_next(&mut ext_props);
        // SAFETY: valid physical device; both chains live across the call.
        let r = unsafe {
            instance.get_physical_device_image_format_properties2(self.physical, &info, &mut out)
        };
        let _ = out;
        let importable = ext_props
            .external_memory_properties
            .external_memory_features
            .contains(vk::ExternalMemoryFeatureFlags::IMPORTABLE);
        if r.is_err() || !importable {
            return Err(GpuError::UnsupportedFormat {
                operation: "DMA-BUF import",
                what: what(),
            });
        }
        Ok(())
    }

    /// A device-local image for uploads (optimal tiling), `format` one of the plan's table.
    pub fn create_image(
        &self,
        width: u32,
        height: u32,
        format: vk::Format,
    ) -> Result<GpuImage, GpuError> {
        let info = plan::format_info_vk(format).ok_or_else(|| GpuError::UnsupportedFormat {
            operation: "image",
            what: format!("{format:?}"),
        })?;
        if width == 0 || height == 0 || width > plan::MAX_DIMENSION || height > plan::MAX_DIMENSION
        {
            return Err(GpuError::InvalidInput(format!(
                "image size {width}x{height}"
            )));
        }
        let d = &self.shared.device;
        let create = vk::ImageCreateInfo::default()
            .image_type(vk::ImageType::TYPE_2D)
            .format(format)
            .extent(vk::Extent3D {
                width,
                height,
                depth: 1,
            })
            .mip_levels(1)
            .array_layers(1)
            .samples(vk::SampleCountFlags::TYPE_1)
            .tiling(vk::ImageTiling::OPTIMAL)
            .usage(vk::ImageUsageFlags::TRANSFER_SRC | vk::ImageUsageFlags::TRANSFER_DST)
            .sharing_mode(vk::SharingMode::EXCLUSIVE)
            .initial_layout(vk::ImageLayout::UNDEFINED);
        // SAFETY: valid device and create info.
        let image = unsafe { d.create_image(&create, None) }.map_err(vk_err("vkCreateImage"))?;
        // SAFETY: `image` is this device's.
        let req = unsafe { d.get_image_memory_requirements(image) };
        let memory = self
            .memory_type(
                req.memory_type_bits,
                vk::MemoryPropertyFlags::empty(),
                vk::MemoryPropertyFlags::DEVICE_LOCAL,
            )
            .and_then(|t| {
                let alloc = vk::MemoryAllocateInfo::default()
                    .allocation_size(req.size)
                    .memory_type_index(t);
                // SAFETY: valid device and allocate info.
                unsafe { d.allocate_memory(&alloc, None) }.map_err(vk_err("vkAllocateMemory"))
            })
            .and_then(|m| {
                // SAFETY: both this device's; the type was allowed by the requirements.
                match unsafe { d.bind_image_memory(image, m, 0) } {
                    Ok(()) => Ok(m),
                    Err(e) => {
                        // SAFETY: ours, bound to nothing.
                        unsafe { d.free_memory(m, None) };
                        Err(vk_err("vkBindImageMemory")(e))
                    }
                }
            });
        match memory {
            Ok(memory) => Ok(GpuImage {
                shared: self.shared.clone(),
                image,
                memory,
                format: info,
                extent: vk::Extent2D { width, height },
                layout: vk::ImageLayout::UNDEFINED,
                foreign: false,
            }),
            Err(e) => {
                // SAFETY: ours, unbound, unused.
                unsafe { d.destroy_image(image, None) };
                Err(e)
            }
        }
    }

    /// A staging buffer of at least `len` bytes (grown once, then reused).
    fn staging(&mut self, len: u64) -> Result<(vk::Buffer, vk::DeviceMemory), GpuError> {
        if let Some(s) = &self.staging
            && s.len >= len
        {
            return Ok((s.buffer, s.memory));
        }
        let d = &self.shared.device;
        if let Some(old) = self.staging.take() {
            // SAFETY: ours; every submission that used it waited on the fence.
            unsafe {
                d.destroy_buffer(old.buffer, None);
                d.free_memory(old.memory, None);
            }
        }
        let len = len.next_power_of_two().max(1 << 16);
        let info = vk::BufferCreateInfo::default()
            .size(len)
            .usage(vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST)
            .sharing_mode(vk::SharingMode::EXCLUSIVE);
        // SAFETY: valid device and create info.
        let buffer = unsafe { d.create_buffer(&info, None) }.map_err(vk_err("vkCreateBuffer"))?;
        // SAFETY: `buffer` is this device's.
        let req = unsafe { d.get_buffer_memory_requirements(buffer) };
        let host = vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT;
        let memory = self
            .memory_type(
                req.memory_type_bits,
                host,
                vk::MemoryPropertyFlags::HOST_CACHED,
            )
            .and_then(|t| {
                let alloc = vk::MemoryAllocateInfo::default()
                    .allocation_size(req.size)
                    .memory_type_index(t);
                // SAFETY: valid device and allocate info.
                unsafe { d.allocate_memory(&alloc, None) }.map_err(vk_err("vkAllocateMemory"))
            })
            .and_then(|m| {
                // SAFETY: both this device's.
                match unsafe { d.bind_buffer_memory(buffer, m, 0) } {
                    Ok(()) => Ok(m),
                    Err(e) => {
                        // SAFETY: ours, bound to nothing.
                        unsafe { d.free_memory(m, None) };
                        Err(vk_err("vkBindBufferMemory")(e))
                    }
                }
            });
        match memory {
            Ok(memory) => {
                self.staging = Some(Staging {
                    buffer,
                    memory,
                    len,
                });
                Ok((buffer, memory))
            }
            Err(e) => {
                // SAFETY: ours, unbound.
                unsafe { d.destroy_buffer(buffer, None) };
                Err(e)
            }
        }
    }

    /// Copies `bytes` into (`to_device`) or out of the staging memory's first bytes.
    fn staging_copy(&self, memory: vk::DeviceMemory, host: HostSide<'_>) -> Result<(), GpuError> {
        let d = &self.shared.device;
        let len = host.len();
        // SAFETY: `memory` is the host-visible, coherent staging memory, at least `len`
        // bytes, not mapped elsewhere and not in use by the device (no submission in flight).
        let ptr = unsafe { d.map_memory(memory, 0, len as u64, vk::MemoryMapFlags::empty()) }
            .map_err(vk_err("vkMapMemory"))?
            .cast::<u8>();
        match host {
            // SAFETY: `ptr` points at `len` mapped bytes that do not overlap `src`.
            HostSide::Read(src) => unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), ptr, len) },
            // SAFETY: as above, into `dst`.
            HostSide::Write(dst) => unsafe {
                std::ptr::copy_nonoverlapping(ptr, dst.as_mut_ptr(), len)
            },
        }
        // SAFETY: mapped above; coherent memory needs no flush.
        unsafe { d.unmap_memory(memory) };
        Ok(())
    }

    /// Records with `record`, submits, and waits for the device to finish.
    fn submit(&self, record: impl FnOnce(&ash::Device, vk::CommandBuffer)) -> Result<(), GpuError> {
        let d = &self.shared.device;
        let begin = vk::CommandBufferBeginInfo::default()
            .flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT);
        // SAFETY: the command buffer is ours and not pending (every submit waits below);
        // its pool allows resetting single buffers.
        unsafe {
            d.reset_command_buffer(self.cmd, vk::CommandBufferResetFlags::empty())
                .map_err(vk_err("vkResetCommandBuffer"))?;
            d.begin_command_buffer(self.cmd, &begin)
                .map_err(vk_err("vkBeginCommandBuffer"))?;
        }
        record(d, self.cmd);
        let cmds = [self.cmd];
        let submit = [vk::SubmitInfo::default().command_buffers(&cmds)];
        let fences = [self.fence];
        // SAFETY: the command buffer was recorded above; the fence is unsignalled (reset after
        // each wait); the queue is used from this context only (&self methods that submit are
        // reached through &mut self callers, see upload/download).
        unsafe {
            d.end_command_buffer(self.cmd)
                .map_err(vk_err("vkEndCommandBuffer"))?;
            d.queue_submit(self.queue, &submit, self.fence)
                .map_err(vk_err("vkQueueSubmit"))?;
        }
        let timeout = SUBMIT_TIMEOUT.as_nanos() as u64;
        // SAFETY: the fence is ours and was just submitted.
        let waited = unsafe { d.wait_for_fences(&fences, true, timeout) };
        match waited {
            Ok(()) => {}
            Err(vk::Result::TIMEOUT) => {
                // The work is still queued: wait for it without a limit before anything reuses
                // the command buffer or staging memory.
                // SAFETY: a valid device.
                let _ = unsafe { d.device_wait_idle() };
                // SAFETY: the fence is signalled now (the device is idle).
                let _ = unsafe { d.reset_fences(&fences) };
                return Err(GpuError::Timeout(SUBMIT_TIMEOUT));
            }
            Err(e) => return Err(vk_err("vkWaitForFences")(e)),
        }
        // SAFETY: the fence is signalled and no longer in use.
        unsafe { d.reset_fences(&fences) }.map_err(vk_err("vkResetFences"))
    }

    /// Copies `src` into `dst` at `offset` (through the staging buffer; waits for the copy).
    pub fn upload(&mut self, src: &[u8], dst: &GpuBuffer, offset: u64) -> Result<(), GpuError> {
        let len = src.len() as u64;
        if len == 0 || offset.checked_add(len).is_none_or(|end| end > dst.len) {
            return Err(GpuError::InvalidInput(format!(
                "{len} bytes at {offset} into a {}-byte buffer",
                dst.len
            )));
        }
        let (staging, memory) = self.staging(len)?;
        self.staging_copy(memory, HostSide::Read(src))?;
        let region = [vk::BufferCopy {
            src_offset: 0,
            dst_offset: offset,
            size: len,
        }];
        self.submit(|d, cmd| {
            // SAFETY: recording into a command buffer in the recording state; both buffers
            // are this device's, the region lies inside both.
            unsafe { d.cmd_copy_buffer(cmd, staging, dst.buffer, &region) }
        })
    }

    /// Copies a system-memory frame (a producer without DMA-BUF: SHM, PipeWire MemFd) into
    /// `dst`, rows as they are (`frame.stride` bytes apart). Returns the bytes copied.
    pub fn upload_frame(
        &mut self,
        frame: &CapturedFrame<'_>,
        dst: &GpuBuffer,
    ) -> Result<u64, GpuError> {
        if frame.format == PixelFormat::DmaBuf {
            return Err(GpuError::InvalidInput(
                "a DMA-BUF frame has no system-memory pixels: import it".into(),
            ));
        }
        let len = frame.format.frame_len(frame.stride, frame.height as usize);
        let data = frame.data.get(..len).ok_or_else(|| {
            GpuError::InvalidInput(format!(
                "frame data {} bytes, its format needs {len}",
                frame.data.len()
            ))
        })?;
        self.upload(data, dst, 0)?;
        Ok(len as u64)
    }

    /// Copies `dst.len()` bytes of `src` from `offset` to the host.
    pub fn download(
        &mut self,
        src: &GpuBuffer,
        offset: u64,
        dst: &mut [u8],
    ) -> Result<(), GpuError> {
        let len = dst.len() as u64;
        if len == 0 || offset.checked_add(len).is_none_or(|end| end > src.len) {
            return Err(GpuError::InvalidInput(format!(
                "{len} bytes at {offset} from a {}-byte buffer",
                src.len
            )));
        }
        let (staging, memory) = self.staging(len)?;
        let region = [vk::BufferCopy {
            src_offset: offset,
            dst_offset: 0,
            size: len,
        }];
        self.submit(|d, cmd| {
            // SAFETY: as in upload, the other way round.
            unsafe { d.cmd_copy_buffer(cmd, src.buffer, staging, &region) }
        })?;
        self.staging_copy(memory, HostSide::Write(dst))
    }

    /// Uploads a packed picture (planes one after the other, rows tightly packed:
    /// [`plan::packed_planes`]) into `image`.
    pub fn upload_image(&mut self, src: &[u8], image: &mut GpuImage) -> Result<(), GpuError> {
        let (w, h) = image.extent();
        let planes = plan::packed_planes(image.format, w, h);
        let len = image.packed_len();
        if src.len() as u64 != len {
            return Err(GpuError::InvalidInput(format!(
                "{} bytes for a {len}-byte picture",
                src.len()
            )));
        }
        let (staging, memory) = self.staging(len)?;
        self.staging_copy(memory, HostSide::Read(src))?;
        let regions = copy_regions(&planes, planes.len() > 1);
        let (old, foreign) = (image.layout, image.foreign);
        let dst_layout = vk::ImageLayout::TRANSFER_DST_OPTIMAL;
        let (barrier, src_stage) = self.layout_barrier(image, old, dst_layout, foreign);
        self.submit(|d, cmd| {
            // SAFETY: recording; the image and staging buffer are this device's, the regions
            // lie inside both (packed_planes of the image's own size).
            unsafe {
                d.cmd_pipeline_barrier(
                    cmd,
                    src_stage,
                    vk::PipelineStageFlags::TRANSFER,
                    vk::DependencyFlags::empty(),
                    &[],
                    &[],
                    &[barrier],
                );
                d.cmd_copy_buffer_to_image(cmd, staging, image.image, dst_layout, &regions);
            }
        })?;
        image.layout = dst_layout;
        image.foreign = false;
        Ok(())
    }

    /// Copies every plane of `image` into `dst` (packed, [`plan::packed_planes`]): the GPU
    /// copy that turns an imported DMA-BUF into linear memory CUDA can import.
    pub fn copy_image_to_buffer(
        &mut self,
        image: &mut GpuImage,
        dst: &GpuBuffer,
    ) -> Result<u64, GpuError> {
        let (w, h) = image.extent();
        let planes = plan::packed_planes(image.format, w, h);
        let len = image.packed_len();
        if len > dst.len {
            return Err(GpuError::InvalidInput(format!(
                "a {len}-byte picture into a {}-byte buffer",
                dst.len
            )));
        }
        let regions = copy_regions(&planes, planes.len() > 1);
        let src_layout = vk::ImageLayout::TRANSFER_SRC_OPTIMAL;
        let (barrier, src_stage) =
            self.layout_barrier(image, image.layout, src_layout, image.foreign);
        self.submit(|d, cmd| {
            // SAFETY: recording; image and buffer are this device's; the regions lie inside
            // both (checked len).
            unsafe {
                d.cmd_pipeline_barrier(
                    cmd,
                    src_stage,
                    vk::PipelineStageFlags::TRANSFER,
                    vk::DependencyFlags::empty(),
                    &[],
                    &[],
                    &[barrier],
                );
                d.cmd_copy_image_to_buffer(cmd, image.image, src_layout, dst.buffer, &regions);
            }
        })?;
        image.layout = src_layout;
        image.foreign = false;
        Ok(len)
    }

    fn layout_barrier(
        &self,
        image: &GpuImage,
        old: vk::ImageLayout,
        new: vk::ImageLayout,
        foreign: bool,
    ) -> (vk::ImageMemoryBarrier<'static>, vk::PipelineStageFlags) {
        // COLOR covers every plane of a non-disjoint multi-planar image (the only kind made
        // or imported here); plane bits are for disjoint ones.
        let aspect = vk::ImageAspectFlags::COLOR;
        // An imported DMA-BUF is acquired from the foreign queue family (the producer's GPU
        // work) where the device has VK_EXT_queue_family_foreign.
        let (src_family, dst_family) = if foreign && self.extensions.queue_family_foreign {
            (vk::QUEUE_FAMILY_FOREIGN_EXT, self.queue_family_index())
        } else {
            (vk::QUEUE_FAMILY_IGNORED, vk::QUEUE_FAMILY_IGNORED)
        };
        // What came before: our own transfer (wait for it), or nothing we recorded (a fresh
        // image, or the producer's work, which the DMA-BUF's implicit sync orders).
        let (src_access, src_stage) = match old {
            vk::ImageLayout::TRANSFER_DST_OPTIMAL => (
                vk::AccessFlags::TRANSFER_WRITE,
                vk::PipelineStageFlags::TRANSFER,
            ),
            vk::ImageLayout::TRANSFER_SRC_OPTIMAL => {
                (vk::AccessFlags::empty(), vk::PipelineStageFlags::TRANSFER)
            }
            _ => (
                vk::AccessFlags::empty(),
                vk::PipelineStageFlags::TOP_OF_PIPE,
            ),
        };
        let dst_access = if new == vk::ImageLayout::TRANSFER_DST_OPTIMAL {
            vk::AccessFlags::TRANSFER_WRITE
        } else {
            vk::AccessFlags::TRANSFER_READ
        };
        let barrier = vk::ImageMemoryBarrier::default()
            .src_access_mask(src_access)
            .dst_access_mask(dst_access)
            .old_layout(old)
            .new_layout(new)
            .src_queue_family_index(src_family)
            .dst_queue_family_index(dst_family)
            .image(image.image)
            .subresource_range(vk::ImageSubresourceRange {
                aspect_mask: aspect,
                base_mip_level: 0,
                level_count: 1,
                base_array_layer: 0,
                layer_count: 1,
            });
        (barrier, src_stage)
    }

    fn queue_family_index(&self) -> u32 {
        self.queue_family
    }
}

/// The [`DmaBufImage`] of a DMA-BUF PipeWire handed out (`PipeWireCapture::last_dmabuf`).
///
/// # Safety
///
/// Every fd in `desc.fds[..desc.planes]` must stay open for `'fd`. PipeWire guarantees a
/// buffer's fds only while the buffer is dequeued (`pipewire::DmaBufDescriptor`), so the
/// wiring imports inside the stream's process callback; the import duplicates the fd, and the
/// image keeps the DMA-BUF alive after the buffer is queued back.
#[cfg(feature = "pipewire")]
pub unsafe fn pipewire_dmabuf<'fd>(
    desc: &crate::pipewire::DmaBufDescriptor,
) -> Result<DmaBufImage<'fd>, GpuError> {
    use std::os::fd::BorrowedFd;
    let fourcc =
        plan::pipewire_fourcc(desc.format.format).ok_or_else(|| GpuError::UnsupportedFormat {
            operation: "DMA-BUF import",
            what: format!("PipeWire format {:?}", desc.format.format),
        })?;
    let mut planes = [None; 4];
    for (i, plane) in planes.iter_mut().enumerate().take(desc.planes.min(4)) {
        let fd = i32::try_from(desc.fds[i])
            .ok()
            .filter(|fd| *fd >= 0)
            .ok_or_else(|| GpuError::InvalidInput(format!("plane {i}: fd {}", desc.fds[i])))?;
        let stride = u64::try_from(desc.strides[i])
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| {
                GpuError::InvalidInput(format!("plane {i}: stride {}", desc.strides[i]))
            })?;
        *plane = Some(plan::DmaBufPlane {
            // SAFETY: the caller guarantees the fd stays open for 'fd; it is non-negative.
            fd: unsafe { BorrowedFd::borrow_raw(fd) },
            offset: u64::from(desc.offsets[i]),
            stride,
        });
    }
    Ok(DmaBufImage {
        fourcc,
        modifier: desc.format.modifier.unwrap_or(plan::drm::MOD_LINEAR),
        width: desc.format.width,
        height: desc.format.height,
        planes,
    })
}

enum HostSide<'a> {
    Read(&'a [u8]),
    Write(&'a mut [u8]),
}

impl HostSide<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Read(s) => s.len(),
            Self::Write(s) => s.len(),
        }
    }
}

/// One `VkBufferImageCopy` per plane of a packed layout.
fn copy_regions(planes: &[(u64, u32, u32, u64)], multi_planar: bool) -> Vec<vk::BufferImageCopy> {
    planes
        .iter()
        .enumerate()
        .map(|(i, &(offset, w, h, _))| {
            let aspect = match (multi_planar, i) {
                (false, _) => vk::ImageAspectFlags::COLOR,
                (true, 0) => vk::ImageAspectFlags::PLANE_0,
                (true, 1) => vk::ImageAspectFlags::PLANE_1,
                (true, _) => vk::ImageAspectFlags::PLANE_2,
            };
            vk::BufferImageCopy {
                buffer_offset: offset,
                buffer_row_length: 0,
                buffer_image_height: 0,
                image_subresource: vk::ImageSubresourceLayers {
                    aspect_mask: aspect,
                    mip_level: 0,
                    base_array_layer: 0,
                    layer_count: 1,
                },
                image_offset: vk::Offset3D::default(),
                image_extent: vk::Extent3D {
                    width: w,
                    height: h,
                    depth: 1,
                },
            }
        })
        .collect()
}

impl Drop for VulkanContext {
    fn drop(&mut self) {
        let d = &self.shared.device;
        // SAFETY: waits for everything this context submitted, then destroys what only it
        // uses; buffers and images keep the device itself alive through `shared`.
        unsafe {
            let _ = d.device_wait_idle();
            if let Some(s) = self.staging.take() {
                d.destroy_buffer(s.buffer, None);
                d.free_memory(s.memory, None);
            }
            d.destroy_fence(self.fence, None);
            d.destroy_command_pool(self.pool, None);
        }
    }
}
