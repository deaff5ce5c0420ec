//! Stage pipeline configuration (work in progress: filled in by the pipeline change).
