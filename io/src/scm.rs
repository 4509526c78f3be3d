//! Reading from a connection together with the descriptors passed alongside (SCM_RIGHTS), with
//! rustix's safe `recvmsg`.

use std::io::{self, IoSliceMut, Read};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags};

/// Most descriptors accepted with one read; the kernel closes any beyond (MSG_CTRUNC). QEMU's
/// socket chardev uses the same bound (`TCP_MAX_FDS`).
pub const MAX_FDS_PER_READ: usize = 16;

/// Read into `buf` from a Unix stream socket, collecting passed descriptors into `fds`.
/// Returns the bytes read (0 at end of stream) and whether the kernel cut descriptors
/// (MSG_CTRUNC: more than [`MAX_FDS_PER_READ`] were passed; the kernel closed the rest).
pub fn recv_with_fds(
    sock: impl AsFd,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<(usize, bool)> {
    recv_with_fds_flags(sock, buf, fds, RecvFlags::empty())
}

/// [`recv_with_fds`] with more `recvmsg` flags (`MSG_PEEK`: the bytes stay queued, and the
/// kernel passes copies of any descriptors).
pub fn recv_with_fds_flags(
    sock: impl AsFd,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    flags: RecvFlags,
) -> io::Result<(usize, bool)> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_READ))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg(
        sock,
        &mut iov,
        &mut control,
        RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT | flags,
    )
    .map_err(io::Error::from)?;
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = m {
            fds.extend(received);
        }
    }
    Ok((msg.bytes, msg.flags.contains(ReturnFlags::CTRUNC)))
}

/// Read from a stream that cannot carry descriptors (TCP).
pub fn recv_plain(mut sock: impl Read, buf: &mut [u8]) -> io::Result<usize> {
    sock.read(buf)
}
