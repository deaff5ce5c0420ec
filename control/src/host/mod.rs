//! The act half of the GameStream host: files, sockets, servers and the CLI client.
