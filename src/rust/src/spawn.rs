//! Start a program without copying the master's memory map. `fork()` copies the page tables
//! of the whole R session for a child that only sets a few things up and execs: ~3 ms for a
//! fresh session, ~70 ms for one holding 2.4 GB, per worker. A `clone()` with `CLONE_VM |
//! CLONE_VFORK`, as `posix_spawn()` does, shares the parent's memory until the exec and costs
//! the same for any session size. (`posix_spawn()` itself cannot set the parent-death signal
//! nor mark the other descriptors close-on-exec.)
//!
//! The child runs on a stack of its own, on data prepared before the clone, and makes only
//! async-signal-safe system calls; the calling thread is suspended until the child has
//! exec'd or exited. All signals are blocked around the clone, and the child sets every
//! handler of R's back to the default before it unblocks them for the exec: a handler would
//! otherwise run in the parent's memory.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::fds::CloseOnExec;

/// What the child is to become.
pub struct Spawn {
    pub program: String,
    pub args: Vec<String>,
    /// Variables set (on top of this process's environment) and removed.
    pub env_set: Vec<(String, String)>,
    pub env_unset: Vec<String>,
    /// Descriptors for the child's stdin, stdout and stderr; `None` inherits ours.
    pub stdio: [Option<OwnedFd>; 3],
    /// Niceness increment, 0 for none.
    pub nice: i32,
}

/// Everything the child reads, laid out before the clone.
struct Prepared {
    program: CString,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    stdio: [RawFd; 3],
    nice: libc::c_int,
    master: libc::pid_t,
    close_on_exec: CloseOnExec,
    mask: libc::sigset_t,
    /// Written by the child when it cannot exec.
    errno: libc::c_int,
}

const STACK_SIZE: usize = 64 * 1024;

/// Start `spec` in a new process group, with SIGTERM as its parent-death signal and no
/// descriptor of ours above 2; its PID.
pub fn spawn(spec: Spawn) -> io::Result<u32> {
    let stdio = spec.stdio.map(|fd| fd.map(above_stdio).transpose()).into_iter().collect::<io::Result<Vec<_>>>()?;
    let env = environment(&spec.env_set, &spec.env_unset)?;
    let program = resolve_program(&spec.program, &env)?;
    let cstring = |s: Vec<u8>| CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in an argument or variable"));
    let program = cstring(program)?;
    let args: Vec<CString> = std::iter::once(spec.program.clone().into_bytes())
        .chain(spec.args.iter().map(|a| a.clone().into_bytes()))
        .map(cstring)
        .collect::<io::Result<_>>()?;
    let vars: Vec<CString> = env.into_iter().map(cstring).collect::<io::Result<_>>()?;
    let null_terminated = |v: &[CString]| v.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect::<Vec<_>>();
    let mut prepared = Prepared {
        program,
        argv: null_terminated(&args),
        envp: null_terminated(&vars),
        stdio: [0, 1, 2].map(|i| stdio[i].as_ref().map_or(-1, |fd| fd.as_raw_fd())),
        nice: spec.nice,
        master: std::process::id() as libc::pid_t,
        close_on_exec: CloseOnExec::prepare(),
        // SAFETY: an all-zero sigset_t is a valid (empty) set; it is filled below.
        mask: unsafe { std::mem::zeroed() },
        errno: 0,
    };
    let mut stack = vec![0u8; STACK_SIZE];
    // SAFETY: the stack grows down from its end, aligned to 16 bytes as the ABI wants.
    let top = unsafe { stack.as_mut_ptr().add(STACK_SIZE) };
    let top = (top as usize & !15usize) as *mut libc::c_void;
    // SAFETY: sigfillset() and pthread_sigmask() write only the sets passed; the old mask is
    // restored below on every path. clone() runs child() on `stack` with `prepared`, both of
    // which outlive the child's use of them: CLONE_VFORK suspends this thread until the
    // child has exec'd or exited, and the child touches nothing else of ours.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut prepared.mask);
        let pid = libc::clone(child, top, libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                              &mut prepared as *mut Prepared as *mut libc::c_void);
        let clone_error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &prepared.mask, std::ptr::null_mut());
        if pid < 0 {
            return Err(clone_error);
        }
        pid
    };
    // SAFETY: the child has exec'd or exited (CLONE_VFORK); nothing writes `errno` any more.
    let errno = unsafe { std::ptr::read_volatile(&prepared.errno) };
    drop(args);
    drop(vars);
    if errno != 0 {
        // The child has exited (status 127): reap it.
        let mut status = 0;
        // SAFETY: waitpid() on our own child writes only `status`.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        return Err(io::Error::from_raw_os_error(errno));
    }
    Ok(pid as u32)
}

/// The child, between clone and exec. Only async-signal-safe calls on `Prepared`.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `Prepared`, alive and not touched by the suspended
    // parent until this child has exec'd or exited.
    let p = unsafe { &mut *(arg as *mut Prepared) };
    // SAFETY: each call below is a plain system call on integers or on memory prepared by
    // the parent; on any failure the child records errno and leaves with _exit().
    unsafe {
        // R's handlers would run in the parent's memory: default them before unblocking.
        // (32 and 33 are the C library's own; SIGPIPE goes back to its default as std's
        // Command does.)
        for sig in 1..65 {
            if sig == 32 || sig == 33 || sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            if sig == libc::SIGPIPE || (old.sa_sigaction != libc::SIG_IGN && old.sa_sigaction != libc::SIG_DFL) {
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &default, std::ptr::null_mut());
            }
        }
        if libc::setpgid(0, 0) != 0 {
            return fail(p);
        }
        // The worker gets SIGTERM when the master dies, even while it is busy in a long
        // task (an idle worker would notice the closed socket, a busy one would not).
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0);
        // The master may have died before prctl() took effect.
        if libc::getppid() != p.master {
            libc::_exit(1);
        }
        if p.nice > 0 {
            libc::nice(p.nice);
        }
        for (target, &fd) in p.stdio.iter().enumerate() {
            if fd < 0 {
                continue;
            }
            if libc::dup2(fd, target as libc::c_int) < 0 {
                return fail(p);
            }
        }
        p.close_on_exec.apply();
        libc::pthread_sigmask(libc::SIG_SETMASK, &p.mask, std::ptr::null_mut());
        libc::execve(p.program.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr());
        fail(p)
    }
}

/// Record errno for the parent and leave (in the child only).
fn fail(p: &mut Prepared) -> libc::c_int {
    // SAFETY: `p` is the parent's Prepared, which the suspended parent reads only after
    // this child has exited; __errno_location() points at this thread's errno; _exit()
    // leaves without running anything of the parent's.
    unsafe {
        std::ptr::write_volatile(&mut p.errno, (*libc::__errno_location()).max(1));
        libc::_exit(127)
    }
}

/// A descriptor numbered 3 or above (close-on-exec), so that the child's dup2() onto 0-2
/// never overwrites another of its sources.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) returns a new descriptor we then own.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` was just returned by fcntl() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// This process's environment with `set` and `unset` applied, as "NAME=value" bytes.
fn environment(set: &[(String, String)], unset: &[String]) -> io::Result<Vec<Vec<u8>>> {
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| !unset.iter().any(|u| k.as_bytes() == u.as_bytes()) && !set.iter().any(|(s, _)| k.as_bytes() == s.as_bytes()))
        .collect();
    for (k, v) in set {
        if k.is_empty() || k.contains('=') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid environment variable name '{}'", k)));
        }
        vars.push((k.into(), v.into()));
    }
    Ok(vars
        .into_iter()
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            kv
        })
        .collect())
}

/// The file to exec: `program` itself when it names a path, else the first executable
/// `program` on the child's PATH (as execvp() would look).
fn resolve_program(program: &str, env: &[Vec<u8>]) -> io::Result<Vec<u8>> {
    if program.contains('/') {
        return Ok(program.as_bytes().to_vec());
    }
    let path = env
        .iter()
        .find_map(|kv| kv.strip_prefix(b"PATH="))
        .map(|p| p.to_vec())
        .unwrap_or_else(|| b"/usr/local/bin:/usr/bin:/bin".to_vec());
    for dir in path.split(|&b| b == b':') {
        let dir = if dir.is_empty() { &b"."[..] } else { dir };
        let mut candidate = dir.to_vec();
        candidate.push(b'/');
        candidate.extend_from_slice(program.as_bytes());
        let c = match CString::new(candidate.clone()) {
            Ok(c) => c,
            Err(_) => continue,
        };
        // SAFETY: access() reads the NUL-terminated path only.
        if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 {
            let meta = std::fs::metadata(std::ffi::OsStr::from_bytes(&candidate));
            if meta.map(|m| m.is_file()).unwrap_or(false) {
                return Ok(candidate);
            }
        }
    }
    Err(io::Error::from_raw_os_error(libc::ENOENT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn wait(pid: u32) -> i32 {
        let mut status = 0;
        // SAFETY: waitpid() on the test's own child writes only `status`.
        unsafe { libc::waitpid(pid as i32, &mut status, 0) };
        status
    }

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: pipe2() writes two descriptors we then own.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both were just created and are owned by nobody else.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn run(program: &str, args: &[&str], set: &[(&str, &str)], unset: &[&str]) -> (i32, String) {
        let (r, w) = pipe();
        let w2 = w.try_clone().unwrap();
        let pid = spawn(Spawn {
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env_set: set.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            env_unset: unset.iter().map(|s| s.to_string()).collect(),
            stdio: [None, Some(w), Some(w2)],
            nice: 0,
        })
        .expect("spawn");
        let mut out = String::new();
        std::fs::File::from(r).read_to_string(&mut out).unwrap();
        (wait(pid), out)
    }

    #[test]
    fn runs_with_arguments_environment_and_own_process_group() {
        assert!(std::env::var_os("HOME").is_some());
        let (status, out) = run("sh", &["-c", "echo \"$0|$SPAWN_TEST_A|${HOME-unset}\"; /bin/ps -o pgid= -p $$; echo $$", "a b"],
                                &[("SPAWN_TEST_A", "1=2")], &["HOME"]);
        assert_eq!(status, 0);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "a b|1=2|unset");
        assert_eq!(lines[1].trim(), lines[2].trim(), "the child leads its own process group");
    }

    #[test]
    fn no_descriptor_above_2_reaches_the_child() {
        let (_r, w) = pipe();
        // SAFETY: fcntl() clears close-on-exec on a descriptor the test owns.
        unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETFD, 0) };
        let (status, out) = run("sh", &["-c", &format!("test -e /proc/self/fd/{} && echo open || echo closed", w.as_raw_fd())], &[], &[]);
        assert_eq!(status, 0);
        assert_eq!(out.trim(), "closed");
    }

    #[test]
    fn a_missing_program_is_an_error_and_leaves_no_child() {
        let err = spawn(Spawn { program: "/no/such/program".into(), args: vec![], env_set: vec![], env_unset: vec![], stdio: [None, None, None], nice: 0 }).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let err = spawn(Spawn { program: "no-such-program-here".into(), args: vec![], env_set: vec![], env_unset: vec![], stdio: [None, None, None], nice: 0 }).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn our_signal_handlers_are_not_the_childs() {
        // A handler installed here is not the child's: SIGUSR1 kills it as by default.
        extern "C" fn handler(_: libc::c_int) {}
        // SAFETY: installs a no-op handler for SIGUSR1 in the test process.
        unsafe { libc::signal(libc::SIGUSR1, handler as *const () as libc::sighandler_t) };
        let (status, _) = run("sh", &["-c", "kill -USR1 $$; sleep 1; echo survived"], &[], &[]);
        assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGUSR1, "status {}", status);
    }
}
