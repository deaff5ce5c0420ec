//! The zero-copy GPU path (features `vulkan`, `cuda`) on whatever Vulkan driver the machine
//! has: lavapipe (Mesa's CPU driver) on CI, a real GPU elsewhere. Every test name contains
//! `gpu`; the CUDA ones contain `gpu_cuda` (scripts/gpu-check.sh runs them on an NVIDIA
//! machine). No Vulkan loader or driver: the tests skip (tests/skip.rs, feature `vulkan`).
#![cfg(feature = "vulkan")]

use std::os::fd::AsFd;

use punktfunk_capture::display::{CapturedFrame, PixelFormat};
use punktfunk_capture::gpu::GpuError;
use punktfunk_capture::gpu::plan::{DmaBufImage, DmaBufPlane, drm};
use punktfunk_capture::gpu::vulkan::VulkanContext;

mod skip {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/skip.rs"));
}

/// A context on the machine's device, or a recorded skip when there is no Vulkan.
fn context() -> Option<VulkanContext> {
    match VulkanContext::new() {
        Ok(ctx) => {
            eprintln!(
                "vulkan device: {} ({:?}), {:?}",
                ctx.device_name(),
                ctx.device_kind(),
                ctx.extensions()
            );
            Some(ctx)
        }
        Err(e @ (GpuError::Unavailable { .. } | GpuError::NoDevice(_))) => {
            skip::skip("vulkan", e);
            None
        }
        Err(e) => panic!("Vulkan context: {e}"),
    }
}

/// Bytes that differ at every offset a wrong copy could land on.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

#[test]
fn gpu_vulkan_device_opens() {
    let Some(ctx) = context() else { return };
    assert!(!ctx.device_name().is_empty());
    // Two contexts on the same device: what the OPAQUE_FD test and CUDA matching rely on.
    let again = VulkanContext::with_device_uuid(Some(ctx.device_uuid())).expect("same device");
    assert_eq!(again.device_uuid(), ctx.device_uuid());
    assert!(matches!(
        VulkanContext::with_device_uuid(Some([0xee; 16])),
        Err(GpuError::NoDevice(_))
    ));
}

#[test]
fn gpu_dmabuf_import_without_extension_is_unsupported() {
    let Some(ctx) = context() else { return };
    // A memfd stands in for the DMA-BUF: the import must refuse before it reads the fd.
    let fd = rustix::fs::memfd_create("pf-not-a-dmabuf", rustix::fs::MemfdFlags::CLOEXEC)
        .expect("memfd");
    rustix::fs::ftruncate(&fd, 256 * 64).expect("ftruncate");
    let image = DmaBufImage {
        fourcc: drm::XRGB8888,
        modifier: drm::MOD_LINEAR,
        width: 64,
        height: 64,
        planes: [
            Some(DmaBufPlane {
                fd: fd.as_fd(),
                offset: 0,
                stride: 256,
            }),
            None,
            None,
            None,
        ],
    };
    let err = ctx
        .import_dmabuf(&image)
        .expect_err("a memfd is no DMA-BUF");
    eprintln!("import_dmabuf: {err}");
    let ext = ctx.extensions();
    if !ext.external_memory_dma_buf || !ext.image_drm_format_modifier {
        // lavapipe: VK_EXT_external_memory_dma_buf (and the modifier extension) are missing.
        let GpuError::Unsupported { operation, missing } = &err else {
            panic!("expected Unsupported, got {err:?}");
        };
        assert_eq!(*operation, "DMA-BUF import");
        assert!(missing.starts_with("VK_"), "{missing}");
        assert!(err.to_string().contains("device lacks VK_"), "{err}");
    }
    // A bad descriptor is refused by the plan whatever the device.
    let mut implicit = image;
    implicit.modifier = drm::MOD_INVALID;
    assert!(matches!(
        ctx.import_dmabuf(&implicit),
        Err(GpuError::Plan(_))
    ));
}

#[test]
fn gpu_upload_frame_reads_back() {
    let Some(mut ctx) = context() else { return };
    let (w, h, stride) = (1920u32, 1080u32, 1920 * 4 + 64);
    let data = pattern(stride * h as usize, 7);
    let frame = CapturedFrame {
        width: w,
        height: h,
        stride,
        format: PixelFormat::Bgrx,
        capture_us: 1,
        index: 0,
        data: &data,
    };
    let buffer = ctx.create_buffer(data.len() as u64, false).expect("buffer");
    assert_eq!(
        ctx.upload_frame(&frame, &buffer).expect("upload"),
        data.len() as u64
    );
    let mut back = vec![0u8; data.len()];
    ctx.download(&buffer, 0, &mut back).expect("download");
    assert!(back == data, "bytes read back differ");
    // A second frame reuses the staging buffer and overwrites the first.
    let data2 = pattern(data.len(), 99);
    let frame2 = CapturedFrame {
        data: &data2,
        index: 1,
        ..frame
    };
    let t = std::time::Instant::now();
    ctx.upload_frame(&frame2, &buffer).expect("upload 2");
    let up = t.elapsed();
    let t = std::time::Instant::now();
    ctx.download(&buffer, 0, &mut back).expect("download 2");
    let down = t.elapsed();
    assert!(back == data2);
    // Figures for docs/capture.md (the staging buffer exists by now: the steady state).
    eprintln!(
        "1920x1080 BGRx ({} bytes) on {}: upload_frame {up:?}, download {down:?}",
        data.len(),
        ctx.device_name()
    );
    // Misuse is an error, not a crash.
    let short = CapturedFrame {
        data: &data[..100],
        ..frame
    };
    assert!(matches!(
        ctx.upload_frame(&short, &buffer),
        Err(GpuError::InvalidInput(_))
    ));
    assert!(matches!(
        ctx.upload(&data, &buffer, 1),
        Err(GpuError::InvalidInput(_))
    ));
}

#[test]
fn gpu_image_upload_copies_back_packed() {
    let Some(mut ctx) = context() else { return };
    let mut image = ctx
        .create_image(64, 32, punktfunk_capture::gpu::vk::Format::B8G8R8A8_UNORM)
        .expect("image");
    let src = pattern(image.packed_len() as usize, 3);
    ctx.upload_image(&src, &mut image).expect("upload to image");
    let out = ctx.create_buffer(image.packed_len(), true).expect("buffer");
    let n = ctx
        .copy_image_to_buffer(&mut image, &out)
        .expect("image → buffer");
    assert_eq!(n, src.len() as u64);
    let mut back = vec![0u8; src.len()];
    ctx.download(&out, 0, &mut back).expect("download");
    assert!(back == src, "image round trip changed the pixels");
}

#[test]
fn gpu_opaque_fd_export_imports_on_second_device() {
    let Some(mut a) = context() else { return };
    if !a.extensions().external_memory_fd {
        skip::skip("vulkan", "device lacks VK_KHR_external_memory_fd");
        return;
    }
    let len = 1920 * 1080 * 4;
    let buffer = a.create_buffer(len, true).expect("exportable buffer");
    let data = pattern(len as usize, 11);
    a.upload(&data, &buffer, 0).expect("upload");
    let exported = a.export_opaque_fd(&buffer).expect("export");
    assert!(exported.allocation_size >= len);
    eprintln!(
        "exported: {} bytes (allocation {}), memory type {}, dedicated {}",
        exported.len, exported.allocation_size, exported.memory_type_index, exported.dedicated
    );
    // A second VkDevice (its own instance too), as CUDA would be: same memory, not a copy.
    let mut b = VulkanContext::with_device_uuid(Some(a.device_uuid())).expect("second device");
    let imported = b.import_opaque_fd(exported).expect("import");
    let mut back = vec![0u8; len as usize];
    b.download(&imported, 0, &mut back).expect("download on b");
    assert!(back == data, "bytes read back through the import differ");
    // Writes through b show up in a.
    let data2 = pattern(4096, 5);
    b.upload(&data2, &imported, 8192).expect("upload on b");
    let mut back2 = vec![0u8; 4096];
    a.download(&buffer, 8192, &mut back2)
        .expect("download on a");
    assert!(back2 == data2, "memory is not shared");
    drop(imported);
    drop(b);
    // A buffer not made exportable cannot be exported.
    let plain = a.create_buffer(4096, false).expect("buffer");
    assert!(matches!(
        a.export_opaque_fd(&plain),
        Err(GpuError::InvalidInput(_))
    ));
}

/// Without an NVIDIA driver the CUDA side must say so, naming the library, not crash. With
/// one, it lists the devices. (This is not a CUDA test: `gpu_cuda_imports_vulkan_opaque_fd`
/// is.)
#[cfg(feature = "cuda")]
#[test]
fn gpu_cuda_missing_driver_is_a_clear_error() {
    use punktfunk_capture::gpu::cuda::{CudaDriver, LIBRARY};
    match CudaDriver::load() {
        Ok(driver) => {
            let devices = driver
                .devices()
                .expect("cuDeviceGetCount works once cuInit did");
            eprintln!("libcuda present: {devices:?}");
        }
        Err(e @ GpuError::Unavailable { library, .. }) => {
            assert_eq!(library, LIBRARY);
            let text = e.to_string();
            assert!(text.starts_with("libcuda.so.1 unavailable: "), "{text}");
            eprintln!("as expected here: {text}");
        }
        // A driver without a GPU (cuInit: CUDA_ERROR_NO_DEVICE).
        Err(e @ GpuError::NoDevice(_)) => eprintln!("libcuda without a device: {e}"),
        Err(e) => panic!("unexpected CUDA error: {e:?}"),
    }
}

/// The chain the NVENC path uses: Vulkan memory, exported as an OPAQUE_FD, imported by CUDA
/// (`cuImportExternalMemory`), read and written through a device pointer, the bytes equal on
/// both sides. Needs an NVIDIA GPU with its Vulkan and CUDA drivers: scripts/gpu-check.sh.
#[cfg(feature = "cuda")]
#[test]
#[ignore = "needs libcuda.so.1 and an NVIDIA GPU with Vulkan: run scripts/gpu-check.sh"]
fn gpu_cuda_imports_vulkan_opaque_fd() {
    use std::time::Instant;

    use punktfunk_capture::gpu::cuda::{CudaContext, CudaDriver};

    let driver = match CudaDriver::load() {
        Ok(d) => d,
        Err(e) => {
            skip::skip("cuda", e);
            return;
        }
    };
    let Some(mut vk) = context() else { return };
    let cuda = CudaContext::new(&driver, Some(vk.device_uuid())).unwrap_or_else(|e| {
        panic!(
            "Vulkan picked {} ({:?}), which is no CUDA device: {e}",
            vk.device_name(),
            vk.device_kind()
        )
    });
    eprintln!("vulkan {} = cuda {}", vk.device_name(), cuda.device_name());
    let len = 1920 * 1080 * 4;
    let buffer = vk.create_buffer(len, true).expect("exportable buffer");
    let data = pattern(len as usize, 21);
    let t = Instant::now();
    vk.upload(&data, &buffer, 0).expect("vulkan upload");
    eprintln!("vulkan upload of {len} bytes: {:?}", t.elapsed());
    let exported = vk.export_opaque_fd(&buffer).expect("export");
    eprintln!(
        "exported {} bytes, allocation {}, dedicated {}",
        exported.len, exported.allocation_size, exported.dedicated
    );
    let t = Instant::now();
    let mapped = cuda
        .import_opaque_fd(exported.into())
        .expect("cuImportExternalMemory");
    eprintln!(
        "cuda import + map: {:?}, device pointer {:#x}",
        t.elapsed(),
        mapped.device_ptr()
    );
    let mut back = vec![0u8; len as usize];
    let t = Instant::now();
    mapped.copy_to_host(0, &mut back).expect("cuMemcpyDtoH");
    eprintln!("cuMemcpyDtoH of {len} bytes: {:?}", t.elapsed());
    assert!(back == data, "CUDA reads other bytes than Vulkan wrote");
    // And back: CUDA writes, Vulkan reads.
    let data2 = pattern(65_536, 77);
    mapped.copy_from_host(4096, &data2).expect("cuMemcpyHtoD");
    let mut back2 = vec![0u8; data2.len()];
    vk.download(&buffer, 4096, &mut back2)
        .expect("vulkan download");
    assert!(back2 == data2, "Vulkan reads other bytes than CUDA wrote");
    drop(mapped);
}

/// The encode stage runs on its own thread: the contexts and buffers must move there.
#[test]
fn gpu_types_are_send() {
    fn send<T: Send>() {}
    send::<VulkanContext>();
    send::<punktfunk_capture::gpu::vulkan::GpuBuffer>();
    send::<punktfunk_capture::gpu::vulkan::GpuImage>();
    #[cfg(feature = "cuda")]
    {
        send::<punktfunk_capture::gpu::cuda::CudaContext>();
        send::<punktfunk_capture::gpu::cuda::ExternalBuffer>();
    }
}

/// What PipeWire records of a DMA-BUF becomes the import's descriptor (fourcc from the SPA
/// format, LINEAR for "no modifier"), and goes the same way as a hand-made one.
#[cfg(feature = "pipewire")]
#[test]
fn gpu_pipewire_descriptor_becomes_an_import() {
    use std::os::fd::AsRawFd;

    use punktfunk_capture::gpu::vulkan::pipewire_dmabuf;
    use punktfunk_capture::pipewire::{DmaBufDescriptor, PixelFormat as Pw, StreamFormat};

    let fd =
        rustix::fs::memfd_create("pf-pw-dmabuf", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
    let mut desc = DmaBufDescriptor {
        format: StreamFormat {
            format: Pw::Bgrx,
            width: 64,
            height: 64,
            modifier: None,
        },
        fds: [i64::from(fd.as_raw_fd()), -1, -1, -1],
        offsets: [0; 4],
        strides: [256, 0, 0, 0],
        planes: 1,
        modifier: None,
    };
    // SAFETY: `fd` stays open until the end of the test, past every use of `image`.
    let image = unsafe { pipewire_dmabuf(&desc) }.expect("BGRx maps");
    assert_eq!(
        (image.fourcc, image.modifier),
        (drm::XRGB8888, drm::MOD_LINEAR)
    );
    let plane = image.planes[0].expect("one plane");
    assert_eq!(
        (plane.fd.as_raw_fd(), plane.offset, plane.stride),
        (fd.as_raw_fd(), 0, 256)
    );
    assert!(image.planes[1].is_none());
    if let Some(ctx) = context()
        && !ctx.extensions().external_memory_dma_buf
    {
        assert!(matches!(
            ctx.import_dmabuf(&image),
            Err(GpuError::Unsupported { .. })
        ));
    }
    desc.format.format = Pw::I420;
    // SAFETY: as above.
    let i420 = unsafe { pipewire_dmabuf(&desc) };
    assert!(matches!(i420, Err(GpuError::UnsupportedFormat { .. })));
    desc.format.format = Pw::Bgrx;
    desc.strides[0] = -4;
    // SAFETY: as above.
    let negative = unsafe { pipewire_dmabuf(&desc) };
    assert!(matches!(negative, Err(GpuError::InvalidInput(_))));
}
