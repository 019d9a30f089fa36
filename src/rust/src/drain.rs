//! One thread drains the captured output of all workers.
//!
//! A worker whose output is kept in memory (for diagnosing its death) writes to two pipes;
//! someone must read them or the worker blocks once a pipe is full. Instead of a thread per
//! pipe, one thread polls all of them and appends what it reads to each worker's buffer.
//! It starts with the first pipe and ends when the last one has closed (every worker
//! exited), so a session without such workers has no thread at all.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::children::{Output, OUTPUT_CAP};

struct Stream {
    fd: OwnedFd,
    output: Output,
}

#[derive(Default)]
struct State {
    streams: Vec<Stream>,
    running: bool,
    handle: Option<JoinHandle<()>>,
}

static STOP: AtomicBool = AtomicBool::new(false);

fn state() -> MutexGuard<'static, State> {
    static STATE: OnceLock<Mutex<State>> = OnceLock::new();
    STATE.get_or_init(|| Mutex::new(State::default())).lock().unwrap_or_else(|p| p.into_inner())
}

/// The pipe that wakes the thread when a stream is added or a stop is asked for:
/// (read end, write end), both non-blocking; None if no pipe could be made.
fn wake() -> Option<(RawFd, RawFd)> {
    static WAKE: OnceLock<Option<(OwnedFd, OwnedFd)>> = OnceLock::new();
    WAKE.get_or_init(|| {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return None;
        }
        // SAFETY: pipe2 succeeded: both descriptors are new and owned by nobody else.
        Some(unsafe { (<OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fds[0]), <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fds[1])) })
    })
    .as_ref()
    .map(|(r, w)| (r.as_raw_fd(), w.as_raw_fd()))
}

fn nudge() {
    if let Some((_, w)) = wake() {
        let byte = 1u8;
        // SAFETY: writes one byte from a live local; a full pipe (EAGAIN) already wakes.
        unsafe { libc::write(w, &byte as *const u8 as *const libc::c_void, 1) };
    }
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
}

/// Drain `stream` (a pipe's read end) into `output` until it closes.
pub fn add(stream: impl Into<OwnedFd>, output: Output) {
    let fd: OwnedFd = stream.into();
    set_nonblocking(fd.as_raw_fd());
    let mut st = state();
    st.streams.push(Stream { fd, output });
    if !st.running {
        if let Some(old) = st.handle.take() {
            // It has left its loop (running is false); joining only collects it.
            let _ = old.join();
        }
        match std::thread::Builder::new().name("parallelly-output".into()).spawn(run) {
            Ok(h) => {
                st.running = true;
                st.handle = Some(h);
            }
            // No thread: closing the pipes is better than letting the workers block on a
            // full one (their output is then lost, nothing else).
            Err(_) => st.streams.clear(),
        }
    }
    drop(st);
    nudge();
}

/// Append what `fd` has to `output`; false at end of file or on an error.
fn read_available(fd: RawFd, output: &Output) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reads at most buf.len() bytes into a live local buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n > 0 {
            let n = n as usize;
            let mut out = output.lock().unwrap_or_else(|p| p.into_inner());
            out.extend(&buf[..n]);
            let excess = out.len().saturating_sub(OUTPUT_CAP);
            out.drain(..excess);
            continue;
        }
        if n == 0 {
            return false;
        }
        let err = std::io::Error::last_os_error().raw_os_error();
        return matches!(err, Some(libc::EAGAIN) | Some(libc::EINTR));
    }
}

fn run() {
    loop {
        let watched: Vec<(RawFd, Output)> = {
            let mut st = state();
            if STOP.load(Ordering::Relaxed) {
                st.streams.clear();
            }
            if st.streams.is_empty() {
                st.running = false;
                return;
            }
            st.streams.iter().map(|s| (s.fd.as_raw_fd(), Arc::clone(&s.output))).collect()
        };
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(watched.len() + 1);
        let wake_fd = wake().map(|(r, _)| r);
        if let Some(r) = wake_fd {
            fds.push(libc::pollfd { fd: r, events: libc::POLLIN, revents: 0 });
        }
        fds.extend(watched.iter().map(|(fd, _)| libc::pollfd { fd: *fd, events: libc::POLLIN, revents: 0 }));
        // Without a wake pipe, look for new streams every 50 ms.
        let timeout = if wake_fd.is_some() { -1 } else { 50 };
        // SAFETY: `fds` is a valid, exclusively borrowed vector of pollfd and its length is
        // passed with it; poll only writes the `revents` fields.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        let mut offset = 0;
        if let Some(r) = wake_fd {
            offset = 1;
            if fds[0].revents != 0 {
                let mut sink = [0u8; 64];
                // SAFETY: reads into a live local buffer from our non-blocking wake pipe.
                while unsafe { libc::read(r, sink.as_mut_ptr() as *mut libc::c_void, sink.len()) } > 0 {}
            }
        }
        let mut closed: Vec<RawFd> = Vec::new();
        for (k, (fd, output)) in watched.iter().enumerate() {
            // Only this thread removes (and so closes) streams: `fd` is still open here.
            if fds[k + offset].revents != 0 && !read_available(*fd, output) {
                closed.push(*fd);
            }
        }
        if !closed.is_empty() {
            state().streams.retain(|s| !closed.contains(&s.fd.as_raw_fd()));
        }
    }
}

/// Whether the thread is running.
pub fn running() -> bool {
    state().running
}

/// Stop draining (the pipes are closed) and wait up to `timeout` for the thread to end.
pub fn shutdown(timeout: Duration) -> bool {
    STOP.store(true, Ordering::Relaxed);
    nudge();
    let deadline = Instant::now() + timeout;
    while running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let done = !running();
    if done {
        if let Some(h) = state().handle.take() {
            let _ = h.join();
        }
    }
    STOP.store(false, Ordering::Relaxed);
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn one_thread_drains_many_pipes_and_ends_with_the_last() {
        let mut buffers = Vec::new();
        let mut kids = Vec::new();
        for i in 0..4 {
            let mut child = Command::new("sh")
                .args(["-c", &format!("head -c 100000 /dev/zero | tr '\\\\0' x; echo done{}; echo err{} >&2", i, i)])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("sh");
            let out = Output::default();
            add(child.stdout.take().expect("stdout"), Arc::clone(&out));
            add(child.stderr.take().expect("stderr"), Arc::clone(&out));
            buffers.push(out);
            kids.push(child);
        }
        assert!(running());
        for mut k in kids {
            // More than a pipe holds: the child finishes only if its output is drained.
            assert!(k.wait().expect("wait").success());
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!running(), "the thread ends with the last pipe");
        for (i, b) in buffers.iter().enumerate() {
            let text = String::from_utf8_lossy(&b.lock().expect("lock").iter().copied().collect::<Vec<u8>>()).into_owned();
            assert!(text.len() <= OUTPUT_CAP);
            assert!(text.contains(&format!("done{}", i)), "{}", &text[text.len().saturating_sub(50)..]);
            assert!(text.contains(&format!("err{}", i)));
        }
    }
}
