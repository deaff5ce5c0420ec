//! Wire formats (work in progress: filled in by the packetizer change).
