//! The capture thread: PipeWire main loop, registry lookup, input stream, buffer copies.
//!
//! Act: every PipeWire call of the capture lives here; the decisions (format, target, copy
//! plan) are asked of [`super::format`] and [`super::target`].
//!
//! Order of events on the thread: `pipewire::init`, MainLoop, Context, Core (fails when no
//! daemon listens), registry round trip (`core.sync` → `done`) collecting the target node,
//! `started` answered, stream connected, then `param_changed(Format)` fixes the format and
//! `process` runs once per buffer until the caller's quit message ends the loop.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;

use pipewire as pw;
use pw::spa;
use pw::spa::buffer::{ChunkFlags, DataType};
use pw::spa::param::format::{FormatProperties, MediaSubtype, MediaType};
use pw::spa::param::video::VideoInfoRaw;
use pw::spa::pod::{ChoiceValue, Object, Pod, Property, PropertyFlags, Value};
use pw::spa::utils::{Choice, ChoiceEnum, ChoiceFlags, Fraction, Id, Rectangle, SpaTypes};

use super::format::{DataChunk, MAX_DIMENSION, PREFERRED, StreamFormat, VideoRequest, plan_copy};
use super::target::Media;
use super::{CaptureError, Command, DmaBufDescriptor, Shared, Target};

fn pw_error(what: &'static str) -> impl FnOnce(pw::Error) -> CaptureError {
    move |e| CaptureError::PipeWire {
        what,
        error: e.to_string(),
    }
}

/// The thread body. Answers `started` exactly once (Ok once the stream is connected).
pub(super) fn run(
    remote: Option<String>,
    target: Target,
    request: VideoRequest,
    shared: Arc<Shared>,
    commands: pw::channel::Receiver<Command>,
    started: SyncSender<Result<(), CaptureError>>,
) {
    let result = stream_until_quit(remote, &target, request, &shared, commands, &started);
    if let Err(e) = result {
        // Before the stream connected: the caller is waiting for this. After: it reads `ended`.
        let _ = started.try_send(Err(e.clone()));
        shared.end(e);
    } else {
        shared.end(CaptureError::Ended);
    }
}

fn stream_until_quit(
    remote: Option<String>,
    target: &Target,
    request: VideoRequest,
    shared: &Arc<Shared>,
    commands: pw::channel::Receiver<Command>,
    started: &SyncSender<Result<(), CaptureError>>,
) -> Result<(), CaptureError> {
    let (mainloop, _context, core) = open(remote)?;
    // The stream, once connected: a new request renegotiates its format (update_params).
    let live: Rc<RefCell<Option<Rc<pw::stream::Stream>>>> = Rc::new(RefCell::new(None));
    let _commands = commands.attach(mainloop.loop_(), {
        let (mainloop, live, shared) = (mainloop.clone(), Rc::clone(&live), Arc::clone(shared));
        move |command| match command {
            Command::Quit => mainloop.quit(),
            Command::Request(request) => {
                if let Some(stream) = live.borrow().as_ref()
                    && let Err(e) = renegotiate(stream, request)
                {
                    shared.end(e);
                    mainloop.quit();
                }
            }
        }
    });
    let node = find_node(&mainloop, &core, target, Media::Video, shared)?;
    let serial = node.serial.clone();

    let stream = pw::stream::Stream::new(
        &core,
        "punktfunk-capture",
        pw::properties::properties! {
            *pw::keys::MEDIA_TYPE => "Video",
            *pw::keys::MEDIA_CATEGORY => "Capture",
            *pw::keys::MEDIA_ROLE => "Screen",
            // pw::keys::TARGET_OBJECT needs the crate feature v0_3_44; the key is the same string.
            "target.object" => target.target_object(serial.as_deref()),
        },
    )
    .map_err(pw_error("stream"))?;

    let _listener = stream
        .add_local_listener_with_user_data(Arc::clone(shared))
        .state_changed(|_, shared, _old, new| {
            if let pw::stream::StreamState::Error(message) = new {
                shared.end(CaptureError::Stream(message));
            }
        })
        .param_changed(|_, shared, id, param| on_param(shared, id, param))
        .process(on_process)
        .register()
        .map_err(pw_error("stream listener"))?;

    let params = enum_format(request);
    let mut params = [Pod::from_bytes(&params).ok_or(CaptureError::PipeWire {
        what: "EnumFormat pod",
        error: "serialised pod does not parse".into(),
    })?];
    let stream = Rc::new(stream);
    stream
        .connect(
            spa::utils::Direction::Input,
            None,
            pw::stream::StreamFlags::AUTOCONNECT | pw::stream::StreamFlags::MAP_BUFFERS,
            &mut params,
        )
        .map_err(pw_error("stream connect"))?;
    *live.borrow_mut() = Some(Rc::clone(&stream));
    let _ = started.try_send(Ok(()));
    mainloop.run();
    live.borrow_mut().take();
    let _ = stream.disconnect();
    Ok(())
}

/// Offers a new EnumFormat on a connected stream: the producer renegotiates and, if it takes the
/// new size, `param_changed(Format)` fixes it and later frames have it.
fn renegotiate(stream: &pw::stream::Stream, request: VideoRequest) -> Result<(), CaptureError> {
    let params = enum_format(request);
    let mut params = [Pod::from_bytes(&params).ok_or(CaptureError::PipeWire {
        what: "EnumFormat pod",
        error: "serialised pod does not parse".into(),
    })?];
    tracing::info!(?request, "pipewire capture: renegotiating");
    stream
        .update_params(&mut params)
        .map_err(pw_error("stream update_params"))
}

/// Main loop, context and core connected to `remote` (default: `$XDG_RUNTIME_DIR/pipewire-0`).
pub(super) fn open(
    remote: Option<String>,
) -> Result<
    (
        pw::main_loop::MainLoop,
        pw::context::Context,
        pw::core::Core,
    ),
    CaptureError,
> {
    pw::init();
    let mainloop = pw::main_loop::MainLoop::new(None).map_err(pw_error("main loop"))?;
    let context = pw::context::Context::new(&mainloop).map_err(pw_error("context"))?;
    let props =
        remote.map(|remote| pw::properties::properties! { *pw::keys::REMOTE_NAME => remote });
    let core = context
        .connect(props)
        .map_err(pw_error("connect to the daemon"))?;
    Ok((mainloop, context, core))
}

/// The target's node, found in the registry; keeps watching it (its removal ends the capture
/// with [`CaptureError::ProducerGone`]) for as long as it lives.
pub(super) struct FoundNode {
    /// The node's `object.serial`, when the registry gave one.
    pub(super) serial: Option<String>,
    /// The node's `media.class`.
    pub(super) class: String,
    _registry: pw::registry::Registry,
    _listener: pw::registry::Listener,
}

/// Anything that can be told the capture ended.
pub(super) trait End: 'static {
    fn end(&self, error: CaptureError);
    fn ended(&self) -> Option<CaptureError>;
}

impl End for Shared {
    fn end(&self, error: CaptureError) {
        Shared::end(self, error);
    }
    fn ended(&self) -> Option<CaptureError> {
        self.lock().ended.clone()
    }
}

/// Registry round trip (`core.sync` → `done`: every global has been announced by then),
/// looking for `target` among the nodes producing `media`.
pub(super) fn find_node<S: End + Send + Sync>(
    mainloop: &pw::main_loop::MainLoop,
    core: &pw::core::Core,
    target: &Target,
    media: Media,
    shared: &Arc<S>,
) -> Result<FoundNode, CaptureError> {
    // The target's global id (set by `global`, watched by `global_remove`) and object.serial.
    let node: Rc<Cell<Option<u32>>> = Rc::new(Cell::new(None));
    // (object.serial, media.class) of the target once seen.
    type Seen = Option<(Option<String>, String)>;
    let found: Rc<RefCell<Seen>> = Rc::new(RefCell::new(None));
    let done = Rc::new(Cell::new(false));
    let registry = core.get_registry().map_err(pw_error("registry"))?;
    let listener = registry
        .add_listener_local()
        .global({
            let (found, node, target) = (Rc::clone(&found), Rc::clone(&node), target.clone());
            move |global| {
                if global.type_ != pw::types::ObjectType::Node {
                    return;
                }
                let Some(props) = global.props else { return };
                if node.get().is_none() && target.matches(media, global.id, |k| props.get(k)) {
                    node.set(Some(global.id));
                    let serial = props.get("object.serial").map(str::to_owned);
                    let class = props.get("media.class").unwrap_or_default().to_owned();
                    *found.borrow_mut() = Some((serial, class));
                }
            }
        })
        .global_remove({
            let (node, shared) = (Rc::clone(&node), Arc::clone(shared));
            move |id| {
                // The producer's node is gone: nothing more will come (a later node of the
                // same name is another producer; the caller reconnects if it wants one).
                if node.get() == Some(id) {
                    shared.end(CaptureError::ProducerGone);
                }
            }
        })
        .register();
    let pending = core.sync(0).map_err(|e| CaptureError::PipeWire {
        what: "core sync",
        error: e.to_string(),
    })?;
    let _core_listener = core
        .add_listener_local()
        .done({
            let (done, mainloop) = (Rc::clone(&done), mainloop.clone());
            move |id, seq| {
                if id == pw::core::PW_ID_CORE && seq == pending {
                    done.set(true);
                    mainloop.quit();
                }
            }
        })
        .error({
            let mainloop = mainloop.clone();
            let shared = Arc::clone(shared);
            move |id, _seq, res, message| {
                if id == pw::core::PW_ID_CORE {
                    shared.end(CaptureError::Stream(format!("core error {res}: {message}")));
                    mainloop.quit();
                }
            }
        })
        .register();
    mainloop.run();
    if !done.get() {
        // Quit (the caller gave up) or a core error before the round trip finished.
        return Err(shared.ended().unwrap_or(CaptureError::Ended));
    }
    let Some((serial, class)) = found.borrow_mut().take() else {
        return Err(CaptureError::NotFound(target.clone()));
    };
    Ok(FoundNode {
        serial,
        class,
        _registry: registry,
        _listener: listener,
    })
}

/// The one EnumFormat we offer: raw video in [`PREFERRED`] formats; the requested size (or any
/// size) and a rate range defaulting to the requested rate.
fn enum_format(request: VideoRequest) -> Vec<u8> {
    let id = |key: FormatProperties, v: u32| Property {
        key: key.as_raw(),
        flags: PropertyFlags::empty(),
        value: Value::Id(Id(v)),
    };
    let formats = PREFERRED.map(|f| Id(f.to_spa().as_raw()));
    let (fps_default, fps_max) = request.framerate_range();
    let object = Object {
        type_: SpaTypes::ObjectParamFormat.as_raw(),
        id: spa::param::ParamType::EnumFormat.as_raw(),
        properties: vec![
            id(FormatProperties::MediaType, MediaType::Video.as_raw()),
            id(FormatProperties::MediaSubtype, MediaSubtype::Raw.as_raw()),
            Property {
                key: FormatProperties::VideoFormat.as_raw(),
                flags: PropertyFlags::empty(),
                value: Value::Choice(ChoiceValue::Id(Choice(
                    ChoiceFlags::empty(),
                    ChoiceEnum::Enum {
                        default: formats[0],
                        alternatives: formats.to_vec(),
                    },
                ))),
            },
            Property {
                key: FormatProperties::VideoSize.as_raw(),
                flags: PropertyFlags::empty(),
                value: match request.size {
                    Some((width, height)) => Value::Rectangle(Rectangle { width, height }),
                    None => Value::Choice(ChoiceValue::Rectangle(Choice(
                        ChoiceFlags::empty(),
                        ChoiceEnum::Range {
                            default: Rectangle {
                                width: 1920,
                                height: 1080,
                            },
                            min: Rectangle {
                                width: 1,
                                height: 1,
                            },
                            max: Rectangle {
                                width: MAX_DIMENSION,
                                height: MAX_DIMENSION,
                            },
                        },
                    ))),
                },
            },
            Property {
                key: FormatProperties::VideoFramerate.as_raw(),
                flags: PropertyFlags::empty(),
                value: Value::Choice(ChoiceValue::Fraction(Choice(
                    ChoiceFlags::empty(),
                    ChoiceEnum::Range {
                        default: Fraction {
                            num: fps_default,
                            denom: 1,
                        },
                        min: Fraction { num: 0, denom: 1 },
                        max: Fraction {
                            num: fps_max,
                            denom: 1,
                        },
                    },
                ))),
            },
        ],
    };
    // Serialising a pod made of these value types into a growable buffer cannot fail.
    pw::spa::pod::serialize::PodSerializer::serialize(
        std::io::Cursor::new(Vec::new()),
        &Value::Object(object),
    )
    .map(|(cursor, _)| cursor.into_inner())
    .unwrap_or_default()
}

fn on_param(shared: &mut Arc<Shared>, id: u32, param: Option<&Pod>) {
    let Some(param) = param else { return };
    if id != spa::param::ParamType::Format.as_raw() {
        return;
    }
    let Ok((MediaType::Video, MediaSubtype::Raw)) = spa::param::format_utils::parse_format(param)
    else {
        shared.end(CaptureError::Stream(
            "producer fixed a non-raw-video format".into(),
        ));
        return;
    };
    let mut info = VideoInfoRaw::new();
    if let Err(e) = info.parse(param) {
        shared.end(CaptureError::Stream(format!(
            "unparsable video format: {e}"
        )));
        return;
    }
    let size = info.size();
    match StreamFormat::accept(info.format(), size.width, size.height, info.modifier()) {
        Ok(format) => {
            tracing::info!(?format, "pipewire capture: format fixed");
            shared.lock().format = Some(format);
        }
        Err(e) => shared.end(e.into()),
    }
}

fn on_process(stream: &pw::stream::StreamRef, shared: &mut Arc<Shared>) {
    // Take the newest buffer; older queued ones go straight back (latest wins here too).
    let Some(mut buffer) = stream.dequeue_buffer() else {
        return;
    };
    while let Some(newer) = stream.dequeue_buffer() {
        buffer = newer;
    }
    let capture_us = crate::clock::monotonic_us();
    let Some(format) = shared.lock().format else {
        shared.lock().stats.buffers_dropped += 1;
        return;
    };
    let datas = buffer.datas_mut();
    if datas.is_empty() {
        shared.lock().stats.buffers_dropped += 1;
        return;
    }
    if datas[0].type_() == DataType::DmaBuf {
        let mut d = DmaBufDescriptor {
            format,
            fds: [-1; 4],
            offsets: [0; 4],
            strides: [0; 4],
            planes: datas.len().min(4),
            modifier: format.modifier,
        };
        for (i, data) in datas.iter().take(4).enumerate() {
            d.fds[i] = data.as_raw().fd;
            d.offsets[i] = data.chunk().offset();
            d.strides[i] = data.chunk().stride();
        }
        let mut m = shared.lock();
        m.stats.dmabuf_buffers += 1;
        m.last_dmabuf = Some(d);
        return;
    }

    let mut chunks = [DataChunk {
        offset: 0,
        size: 0,
        stride: 0,
        mapped: 0,
    }; 4];
    let n = datas.len().min(4);
    for (c, data) in chunks.iter_mut().zip(datas.iter_mut()) {
        let chunk = data.chunk();
        if chunk.flags().contains(ChunkFlags::CORRUPTED) {
            shared.lock().stats.buffers_dropped += 1;
            return;
        }
        *c = DataChunk {
            offset: chunk.offset() as usize,
            size: chunk.size() as usize,
            stride: chunk.stride(),
            // Unmapped (MAP_BUFFERS could not map it): nothing to read.
            mapped: data.data().map_or(0, |d| d.len()),
        };
    }
    let plan = match plan_copy(&format, &chunks[..n]) {
        Ok(plan) => plan,
        Err(e) => {
            tracing::debug!(%e, "pipewire capture: buffer dropped");
            shared.lock().stats.buffers_dropped += 1;
            return;
        }
    };

    let mut frame = shared.take_spare();
    frame.data.resize(plan.frame_len, 0);
    for copy in plan.as_slice() {
        // plan_copy checked every range against the chunk and the mapping.
        let Some(src) = datas[copy.data].data() else {
            return;
        };
        for row in 0..copy.rows {
            let s = copy.src_offset + row * copy.src_stride;
            let d = copy.dst_offset + row * copy.dst_stride;
            frame.data[d..d + copy.row_len].copy_from_slice(&src[s..s + copy.row_len]);
        }
    }
    let (planes, _) = format.output_layout();
    frame.format = format.format;
    frame.width = format.width;
    frame.height = format.height;
    frame.planes = planes;
    frame.capture_us = capture_us;
    let mut m = shared.lock();
    frame.sequence = m.stats.frames_captured;
    m.stats.copy_us += crate::clock::monotonic_us().saturating_sub(capture_us);
    drop(m);
    shared.publish(frame);
}
