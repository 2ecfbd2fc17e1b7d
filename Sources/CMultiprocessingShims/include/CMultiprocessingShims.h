#ifndef C_MULTIPROCESSING_SHIMS_H
#define C_MULTIPROCESSING_SHIMS_H

#include <sys/types.h>
#include <spawn.h>

/// pipe2(fds, O_CLOEXEC | extra) where available; otherwise pipe() followed by fcntl.
int mp_pipe_cloexec(int fds[2], int nonblocking);

/// mkostemp(template, O_CLOEXEC) where available; otherwise mkstemp() followed by fcntl.
int mp_mkstemp_cloexec(char *template_path);

/// pidfd_open(2); -1 with errno ENOSYS where the kernel or platform lacks it.
int mp_pidfd_open(pid_t pid);

/// An eventfd (Linux) used to wake a poll loop; -1 with errno ENOSYS elsewhere.
int mp_eventfd_cloexec(void);

/// Asks the kernel to signal this process when its parent dies, with a handler that kills the
/// process's group (when it leads it) and exits: a worker's commands do not outlive it.
int mp_die_with_parent_taking_group(void);

/// posix_spawn_file_actions_addclosefrom_np(actions, from) where the C library has it
/// (glibc 2.34+); otherwise returns ENOSYS and does nothing.
int mp_spawn_file_actions_addclosefrom(posix_spawn_file_actions_t *actions, int from);

/// Registers `path` (slot 0: a job's temporary file or named pipe; 1: its directory) to be
/// removed if the worker is killed by SIGTERM (a timeout, a cancel) or its parent dies, or
/// forgets the slot's path when `path` is NULL. Installs the SIGTERM handler on first use.
/// Meant for one job thread at a time. 0, or -1 with errno.
int mp_remove_on_termination(int slot, const char *path);

/// sendfile(2) on Linux: copies up to count bytes of in_fd from *offset to out_fd inside the
/// kernel and advances *offset; -1 with errno ENOSYS elsewhere.
long mp_send_file(int out_fd, int in_fd, long long *offset, size_t count);

/// fcntl(fd, F_SETPIPE_SZ, size) on Linux; -1 with errno ENOSYS elsewhere.
int mp_set_pipe_size(int fd, int size);

/// The processors this process may run on: the affinity mask's count, lowered to the cgroup's
/// CPU quota (rounded up) where one is set, as in Python's `os.process_cpu_count()` plus the
/// container limit. At least 1.
int mp_available_cpu_count(void);

/// Marks the calling thread as the event loop of the pool identified by `loop` (NULL: none).
void mp_set_current_loop(const void *loop);

/// What mp_set_current_loop last set on the calling thread, or NULL.
const void *mp_current_loop(void);

/// A new non-blocking, close-on-exec descriptor for the pipe `fd` reads, opened through
/// /proc/self/fd so that it has file status flags of its own (Linux); -1 if `fd` is not a pipe
/// or it cannot be reopened.
int mp_reopen_pipe_nonblocking(int fd);

/// fcntl(fd, F_DUPFD_CLOEXEC, minimum).
int mp_dup_cloexec(int fd, int minimum);

/// fcntl(fd, F_SETFL, flags | O_NONBLOCK).
int mp_set_nonblocking(int fd);

/// The signal number's abbreviation without "SIG" ("KILL", "SEGV"), or NULL if unknown.
const char *mp_signal_abbreviation(int signal);

/// Exit-status helpers; macros in C.
int mp_wifexited(int status);
int mp_wexitstatus(int status);
int mp_wifsignaled(int status);
int mp_wtermsig(int status);

/// setvbuf(stdout, NULL, _IOLBF, 0): stdio's stdout is a global Swift 6 will not touch.
void mp_set_stdout_line_buffered(void);

/// Blocks SIGPIPE for the calling thread, so a write to a pipe whose reader died fails with
/// EPIPE instead of killing the process; the process-wide disposition is left alone.
void mp_block_sigpipe_on_this_thread(void);

/// Unblocks SIGCHLD for the calling thread. A child's exit signals the thread that spawned
/// it; if that thread blocks SIGCHLD, the kernel queues the signal and wakes another thread
/// (libdispatch's main thread, parked in sigsuspend) just to discard it. Unblocked, a SIGCHLD
/// at its default disposition is dropped at once.
void mp_unblock_sigchld_on_this_thread(void);

/// Names the calling thread (visible in ps, top, gdb and crash reports); at most 15 bytes.
void mp_set_current_thread_name(const char *name);

/// The calling thread's name, NUL-terminated, in `buffer` (empty if it has none).
void mp_current_thread_name(char *buffer, size_t size);

/// The process's environment block.
char **mp_environ(void);

/// A TCP socket listening, close-on-exec and non-blocking, on this machine's address that
/// routes to `peer` (a host name or address), on a port the kernel picks; nothing listens on
/// other addresses. Writes that address (numeric) to `address` and the port to `port`.
/// Returns the descriptor, or -1 with errno set (ENOENT when `peer` cannot be resolved).
int mp_listen_toward(const char *peer, char *address, size_t address_size, int *port);

/// accept4 with close-on-exec and non-blocking set, and TCP_NODELAY (small frames go at once);
/// the peer's numeric address and port in `peer`. -1 with errno (EAGAIN: none waiting).
int mp_accept_tcp(int listener, char *peer, size_t peer_size);

/// A blocking connect to the numeric `address` and `port`, close-on-exec, with TCP_NODELAY.
/// Returns the descriptor, or -1 with errno set.
int mp_connect_tcp(const char *address, int port);

/// Fills `buffer` with `count` random bytes from the kernel (getrandom); 0, or -1 with errno.
int mp_random_bytes(void *buffer, size_t count);

/// Removes `path` and, if it is a directory, everything in it, never following symbolic links
/// (`rm -rf`); 0, or -1 with errno from the first failure.
int mp_remove_tree(const char *path);

#endif
