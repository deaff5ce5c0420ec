//! A TUN device opened by name (act; the only `unsafe` of this crate): the testbed creates a
//! persistent `tun` interface in its router namespace (`ip tuntap add … mode tun`) and the
//! relay, started in that namespace, attaches to it with `TUNSETIFF`.
//!
//! Each `read` returns one IP packet (no packet-information header: `IFF_NO_PI`); each `write`
//! injects one, as if it arrived on the interface.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;

/// `TUNSETIFF` = `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// `IFF_TUN`: layer-3 packets.
const IFF_TUN: libc::c_short = 0x0001;
/// `IFF_NO_PI`: no 4-byte packet-information header.
const IFF_NO_PI: libc::c_short = 0x1000;

/// An open TUN device.
#[derive(Debug)]
pub struct Tun {
    file: File,
}

impl Tun {
    /// Attaches to the TUN interface `name` of this process's network namespace, non-blocking.
    pub fn open(name: &str) -> io::Result<Self> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("interface name {name:?} is not 1..{} bytes", libc::IFNAMSIZ),
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")?;
        // struct ifreq: the name, then a union whose first member here is the short flags.
        let mut req = [0u8; 40];
        req[..name.len()].copy_from_slice(name.as_bytes());
        req[16..18].copy_from_slice(&(IFF_TUN | IFF_NO_PI).to_ne_bytes());
        // SAFETY: `req` is a 40-byte buffer laid out as `struct ifreq` (16-byte name, then the
        // flags); the kernel reads and writes within it; the fd is open.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, req.as_mut_ptr()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = file.as_raw_fd();
        // SAFETY: F_GETFL on an open fd reads its flags; no memory is passed.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: F_SETFL on an open fd with an int argument; no memory is passed.
        let r = unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { file })
    }

    /// Reads one packet into `buf`; `Ok(None)` when none is waiting.
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.file.read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Injects one packet.
    pub fn send(&mut self, packet: &[u8]) -> io::Result<()> {
        self.file.write(packet).map(|_| ())
    }
}
