//! Stage rings and buffer pools (work in progress: filled in by the pipeline change).
