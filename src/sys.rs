//! The only module with `unsafe`: thin wrappers over the few syscalls that
//! std and mio do not expose — signal delivery through a signalfd, reaping
//! children, tying children to our lifetime, and counting our own resources.
//!
//! Every wrapper returns `io::Result` and keeps the raw call in one small
//! block with a `// SAFETY:` line.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Signals the event loop handles itself. They are blocked for the whole
/// (single-threaded) process and read from a signalfd, so no handler code runs
/// asynchronously. PID 1 gets no default action for unhandled signals, so this
/// is also what makes SIGTERM work when we are the container's init.
const HANDLED: [libc::c_int; 4] = [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

fn handled_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset only write into the local set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in HANDLED {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// A signalfd delivering the handled signals; SIGPIPE is ignored so a peer
/// that closes early gives EPIPE instead of killing us.
pub struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    pub fn new() -> io::Result<SignalFd> {
        let set = handled_set();
        // SAFETY: blocking signals for this thread; the set is valid.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // SAFETY: setting a disposition to SIG_IGN installs no handler code.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        // SAFETY: the set is valid; -1 asks for a new descriptor.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        Ok(SignalFd { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Next pending signal number, or None when drained.
    pub fn read(&self) -> io::Result<Option<i32>> {
        let mut info = std::mem::MaybeUninit::<libc::signalfd_siginfo>::uninit();
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: the buffer is exactly one signalfd_siginfo long.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), info.as_mut_ptr().cast(), size) };
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock => Ok(None),
                io::ErrorKind::Interrupted => self.read(),
                _ => Err(err),
            };
        }
        if n as usize != size {
            return Ok(None);
        }
        // SAFETY: the kernel filled the whole struct (n == size).
        let info = unsafe { info.assume_init() };
        Ok(Some(info.ssi_signo as i32))
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Run in a forked child before exec: undo the parent's signal blocking, put
/// the child in its own process group (so we can signal its whole tree), and
/// ask the kernel to SIGKILL it if we die, so children are never orphaned.
/// Only async-signal-safe calls.
pub fn child_pre_exec() -> io::Result<()> {
    let set = handled_set();
    // SAFETY: async-signal-safe calls on valid arguments, in the forked child.
    unsafe {
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        if libc::setpgid(0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Install `child_pre_exec` as the hook run between fork and exec.
pub fn set_pre_exec(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook only makes async-signal-safe calls (see child_pre_exec)
    // and touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(child_pre_exec);
    }
}

/// How a reaped process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// Reap one exited process of any kind (children and, as PID 1, adopted
/// orphans). None when nothing is left to reap right now.
pub fn reap_any() -> Option<(i32, ExitStatus)> {
    let mut status = 0;
    // SAFETY: WNOHANG never blocks; status is a valid out-pointer.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    if pid <= 0 {
        return None;
    }
    let exit = if libc::WIFEXITED(status) {
        ExitStatus::Code(libc::WEXITSTATUS(status))
    } else {
        ExitStatus::Signal(libc::WTERMSIG(status))
    };
    Some((pid, exit))
}

/// Send `sig` to the process group led by `pid` (children lead their own).
pub fn kill_group(pid: i32, sig: i32) {
    // SAFETY: kill has no memory effects; a stale pid only yields ESRCH.
    unsafe {
        if libc::kill(-pid, sig) != 0 {
            libc::kill(pid, sig);
        }
    }
}

/// Raise the soft descriptor limit to the hard limit; returns the new soft
/// limit, which bounds how many connections we may hold.
pub fn raise_nofile_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit read and write the local struct only.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    }
}

/// Wall clock in milliseconds since the Unix epoch (Noslated's deadline scale).
pub fn epoch_millis() -> f64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(_) => 0.0,
    }
}

/// Return freed heap memory to the kernel (glibc keeps it otherwise, so RSS
/// would stay at a burst's peak).
pub fn trim_heap() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `read(2)` straight into the spare capacity of `buf` (no zero-filling
/// first: that memset of up to 64 KiB per read cost more than the rest of
/// the proxy together), at most `max` bytes. Returns the bytes read; 0 is
/// end of stream.
pub fn read_into(fd: RawFd, buf: &mut bytes::BytesMut, max: usize) -> io::Result<usize> {
    loop {
        let spare = buf.spare_capacity_mut();
        let len = max.min(spare.len());
        let spare = &mut spare[..len];
        // SAFETY: the kernel writes at most spare.len() bytes into the spare
        // capacity, which the BytesMut owns and nobody else references.
        let n = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), spare.len()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        let n = n as usize;
        // SAFETY: read(2) initialised exactly the first n spare bytes.
        unsafe { buf.set_len(buf.len() + n) };
        return Ok(n);
    }
}
