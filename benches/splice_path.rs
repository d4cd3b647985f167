//! Issue #4 item 6: is `splice(2)` (TCP socket → pipe → unix socket, with each
//! frame's small head written into the pipe first) faster than the buffer path
//! the proxy uses (read into a buffer, `writev` [head, slice])? Both move a
//! request body of a given size from a loopback TCP connection to a unix
//! socket in 16 KiB DATA-frame-sized pieces, each preceded by a 16-byte head
//! (9-byte H2 frame head + 5-byte gRPC prefix + 2 bytes of protobuf key and
//! length, as the proxy writes them). A thread drains each side.

use std::io::{IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::thread;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// The two syscalls this comparison needs and the proxy does not: they live
/// here, not in the library's `sys` module, so the library holds only the
/// `unsafe` it uses (the crate denies `unsafe_code` outside `sys`).
#[allow(unsafe_code)]
mod sys {
    use std::io;
    use std::os::fd::{FromRawFd, OwnedFd, RawFd};

    /// A pipe for `splice(2)`: (read end, write end), non-blocking, close-on-exec.
    pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: fds is a valid array of two ints for the kernel to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors are fresh and owned by nobody else.
        Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
    }

    /// Move up to `len` bytes between two descriptors (one must be a pipe)
    /// without copying them through user space.
    pub fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
        let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
        // SAFETY: null offsets mean "current position"; no memory is passed.
        let n = unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, flags) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

const PIECE: usize = 16 * 1024;
const HEAD: [u8; 16] = [0u8; 16];

struct Pair {
    client: TcpStream,
    server: TcpStream,
    unix_in: UnixStream,
    drain: thread::JoinHandle<()>,
}

fn pair(total: usize) -> Pair {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let (unix_in, mut unix_out) = UnixStream::pair().unwrap();
    // Until the writer hangs up: a read that returns a piece short of PIECE
    // costs an extra head, so the byte count is not known in advance (a
    // drain that stopped at a precomputed count made the writer fail with
    // EPIPE on a loaded machine).
    let drain = thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0usize;
        loop {
            match unix_out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        assert!(got >= total, "drained {got} of at least {total} bytes");
    });
    Pair { client, server, unix_in, drain }
}

fn feed(mut client: TcpStream, total: usize) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let chunk = vec![7u8; 256 * 1024];
        let mut sent = 0;
        while sent < total {
            let n = (total - sent).min(chunk.len());
            client.write_all(&chunk[..n]).unwrap();
            sent += n;
        }
    })
}

/// The proxy's path: read into a buffer, writev(head, slice).
fn buffer_path(total: usize) {
    let Pair { client, mut server, mut unix_in, drain } = pair(total);
    let feeder = feed(client, total);
    let mut buf = vec![0u8; 64 * 1024];
    let mut moved = 0;
    while moved < total {
        let want = (total - moved).min(buf.len());
        let n = server.read(&mut buf[..want]).unwrap();
        for piece in buf[..n].chunks(PIECE) {
            let mut iov = [IoSlice::new(&HEAD), IoSlice::new(piece)];
            let mut slices = &mut iov[..];
            while !slices.is_empty() {
                let w = unix_in.write_vectored(slices).unwrap();
                IoSlice::advance_slices(&mut slices, w);
            }
        }
        moved += n;
    }
    feeder.join().unwrap();
    drop(unix_in);
    drain.join().unwrap();
}

/// The splice path: head into the pipe, splice socket → pipe → unix socket.
fn splice_path(total: usize) {
    let Pair { client, server, unix_in, drain } = pair(total);
    let feeder = feed(client, total);
    let (pipe_r, pipe_w) = sys::pipe().unwrap();
    let mut pipe_w_file = std::fs::File::from(pipe_w.try_clone().unwrap());
    let mut moved = 0;
    while moved < total {
        let want = (total - moved).min(PIECE);
        pipe_w_file.write_all(&HEAD).unwrap();
        let mut in_pipe = HEAD.len();
        let mut got = 0;
        while got < want {
            match sys::splice(server.as_raw_fd(), pipe_w.as_raw_fd(), want - got) {
                Ok(0) => panic!("eof"),
                Ok(n) => {
                    got += n;
                    in_pipe += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        while in_pipe > 0 {
            match sys::splice(pipe_r.as_raw_fd(), unix_in.as_raw_fd(), in_pipe) {
                Ok(n) => in_pipe -= n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        moved += want;
    }
    feeder.join().unwrap();
    drop(unix_in);
    drain.join().unwrap();
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("body_transport");
    group.sample_size(10);
    for size in [64 * 1024, 1 << 20, 32 << 20] {
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("buffer_writev", size), &size, |b, &s| b.iter(|| buffer_path(s)));
        group.bench_with_input(BenchmarkId::new("splice_pipe", size), &size, |b, &s| b.iter(|| splice_path(s)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
