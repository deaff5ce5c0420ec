//! Which PipeWire node to capture, and whether a registry global is it.
//!
//! Pure: the stream thread hands in each global's id and properties from the registry.
#![forbid(unsafe_code)]

/// The video node a [`super::PipeWireCapture`] connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The node whose `node.name` is this (e.g. `pftest`, or a compositor's output stream).
    Name(String),
    /// The node with this global id (what `pw-cli ls Node` prints, or the portal hands out).
    Id(u32),
    /// Audio only: the monitor of whatever sink the session manager links a sink-capture
    /// stream to (the default sink, what games play into). No registry lookup: the stream
    /// connects with `stream.capture.sink=true` and no `target.object`. Matches no node.
    DefaultSink,
}

/// What a capture takes from its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// Video: nodes of class `Video/Source` or `Stream/Output/Video`.
    Video,
    /// Audio: nodes of class `Audio/Source` (a microphone, a virtual source) or `Audio/Sink`
    /// (its monitor: what is played into it, the usual host capture).
    Audio,
}

impl Media {
    /// Whether a node of `media.class` `class` produces this media.
    pub fn produced_by(self, class: &str) -> bool {
        match self {
            Self::Video => matches!(class, "Video/Source" | "Stream/Output/Video"),
            Self::Audio => matches!(class, "Audio/Source" | "Audio/Sink"),
        }
    }

    /// Whether our input stream must set `stream.capture.sink=true` to read the node: true for
    /// a sink (we capture its monitor ports).
    pub fn capture_sink(self, class: &str) -> bool {
        self == Self::Audio && class == "Audio/Sink"
    }
}

impl Target {
    /// Whether the registry global `id` with properties `prop` (looked up by key) is the
    /// target: a node whose `media.class` produces `media` and whose name or id matches.
    pub fn matches<'a>(
        &self,
        media: Media,
        id: u32,
        prop: impl Fn(&str) -> Option<&'a str>,
    ) -> bool {
        prop("media.class").is_some_and(|class| media.produced_by(class))
            && match self {
                Self::Name(name) => prop("node.name") == Some(name.as_str()),
                Self::Id(want) => *want == id,
                Self::DefaultSink => false,
            }
    }

    /// The `target.object` property value for the stream: the node's `object.serial` when the
    /// registry gave one (what PipeWire ≥ 0.3.44 documents for `target.object`), else its name,
    /// else its id.
    pub fn target_object(&self, serial: Option<&str>) -> String {
        match (serial, self) {
            (Some(serial), _) => serial.to_owned(),
            (None, Self::Name(name)) => name.clone(),
            (None, Self::Id(id)) => id.to_string(),
            (None, Self::DefaultSink) => String::new(),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Name(name) => write!(f, "node.name={name}"),
            Self::Id(id) => write!(f, "id={id}"),
            Self::DefaultSink => f.write_str("the default sink's monitor"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> + 'a {
        move |k| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v)
    }

    #[test]
    fn matches_video_nodes_by_name_or_id() {
        let gst = [("media.class", "Video/Source"), ("node.name", "pftest")];
        let audio = [("media.class", "Audio/Source"), ("node.name", "pftest")];
        let stream = [
            ("media.class", "Stream/Output/Video"),
            ("node.name", "xdpw"),
        ];
        let by_name = Target::Name("pftest".into());
        let v = Media::Video;
        assert!(by_name.matches(v, 36, props(&gst)));
        assert!(!by_name.matches(v, 36, props(&audio)));
        assert!(by_name.matches(Media::Audio, 36, props(&audio)));
        assert!(!by_name.matches(Media::Audio, 36, props(&gst)));
        assert!(!by_name.matches(v, 36, props(&stream)));
        assert!(Target::Name("xdpw".into()).matches(v, 40, props(&stream)));
        assert!(Target::Id(36).matches(v, 36, props(&gst)));
        assert!(!Target::Id(37).matches(v, 36, props(&gst)));
        assert!(!Target::Id(36).matches(v, 36, props(&[])));
        let sink = [("media.class", "Audio/Sink"), ("node.name", "pfsink")];
        assert!(!Target::DefaultSink.matches(Media::Audio, 36, props(&sink)));
        assert!(Media::Audio.produced_by("Audio/Sink"));
        assert!(!Media::Audio.produced_by("Stream/Output/Audio"));
        assert!(Media::Audio.capture_sink("Audio/Sink"));
        assert!(!Media::Audio.capture_sink("Audio/Source"));
        assert!(!Media::Video.capture_sink("Audio/Sink"));
    }

    #[test]
    fn target_object_prefers_the_serial() {
        assert_eq!(
            Target::Name("pftest".into()).target_object(Some("36")),
            "36"
        );
        assert_eq!(Target::Name("pftest".into()).target_object(None), "pftest");
        assert_eq!(Target::Id(7).target_object(None), "7");
        assert_eq!(Target::Name("a".into()).to_string(), "node.name=a");
    }
}
