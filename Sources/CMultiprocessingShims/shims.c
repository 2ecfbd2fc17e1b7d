#define _GNU_SOURCE
#include "CMultiprocessingShims.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#if defined(__linux__)
#include <sys/sendfile.h>
#endif
#include <sys/wait.h>
#include <ftw.h>
#include <unistd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#if defined(__linux__)
#include <sys/random.h>
#endif

#if defined(__linux__)
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif

extern char **environ;

int mp_mkstemp_cloexec(char *template_path) {
#if defined(__linux__)
    return mkostemp(template_path, O_CLOEXEC);
#else
    int fd = mkstemp(template_path);
    if (fd >= 0) fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
#endif
}

int mp_pipe_cloexec(int fds[2], int nonblocking) {
#if defined(__linux__)
    return pipe2(fds, O_CLOEXEC | (nonblocking ? O_NONBLOCK : 0));
#else
    if (pipe(fds) != 0) return -1;
    for (int i = 0; i < 2; i++) {
        if (fcntl(fds[i], F_SETFD, FD_CLOEXEC) != 0) goto fail;
        if (nonblocking && fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK) != 0) goto fail;
    }
    return 0;
fail: {
        int saved = errno;
        close(fds[0]);
        close(fds[1]);
        errno = saved;
        return -1;
    }
#endif
}

int mp_pidfd_open(pid_t pid) {
#if defined(__linux__) && defined(SYS_pidfd_open)
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

int mp_eventfd_cloexec(void) {
#if defined(__linux__)
    return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
#else
    errno = ENOSYS;
    return -1;
#endif
}

/// Paths a job made (a temporary file or named pipe, and its directory) that a worker killed
/// by a signal removes on its way out. `mp_temporary_valid[k]` is set only while
/// `mp_temporary_paths[k]` holds a whole path, so a handler never reads one half written.
static char mp_temporary_paths[2][4096];
static volatile sig_atomic_t mp_temporary_valid[2];

/// Removes the registered paths: the file or pipe, then its directory. Async-signal-safe.
static void mp_remove_temporary_paths(void) {
    if (mp_temporary_valid[0]) unlink(mp_temporary_paths[0]);
    if (mp_temporary_valid[1]) rmdir(mp_temporary_paths[1]);
}

/// The SIGTERM handler once a job has made a temporary path: removes it, then dies of the
/// signal as before.
static void mp_terminated(int signal) {
    mp_remove_temporary_paths();
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = SIG_DFL;
    sigemptyset(&action.sa_mask);
    sigaction(signal, &action, NULL);
    raise(signal);
}

int mp_remove_on_termination(int slot, const char *path) {
    if (slot < 0 || slot > 1) { errno = EINVAL; return -1; }
    mp_temporary_valid[slot] = 0;
    if (path == NULL) return 0;
    size_t length = strlen(path);
    if (length >= sizeof mp_temporary_paths[slot]) { errno = ENAMETOOLONG; return -1; }
    memcpy(mp_temporary_paths[slot], path, length + 1);
    static int installed = 0;
    if (!installed) {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = mp_terminated;
        sigemptyset(&action.sa_mask);
        if (sigaction(SIGTERM, &action, NULL) != 0) return -1;
        installed = 1;
    }
    mp_temporary_valid[slot] = 1;
    return 0;
}

#if defined(__linux__)
/// The handler of the parent-death signal: takes the worker's process group (the commands its
/// job started) down with it. Async-signal-safe calls only.
static void mp_parent_died(int signal) {
    (void)signal;
    mp_remove_temporary_paths();
    // Only when the group is the worker's alone: one started by hand from a shell shares the
    // shell's group.
    if (getpgrp() == getpid()) kill(0, SIGKILL);
    _exit(1);
}
#endif

int mp_die_with_parent_taking_group(void) {
#if defined(__linux__)
    // A real-time signal nothing else here uses, so that a signal meant for a job's processes
    // (SIGTERM on a timeout) does not end up handled here.
    int parentDied = SIGRTMIN + 2;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = mp_parent_died;
    sigemptyset(&action.sa_mask);
    if (sigaction(parentDied, &action, NULL) != 0) return -1;
    return prctl(PR_SET_PDEATHSIG, (unsigned long)parentDied, 0, 0, 0);
#else
    return 0;
#endif
}

int mp_spawn_file_actions_addclosefrom(posix_spawn_file_actions_t *actions, int from) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
#else
    (void)actions;
    (void)from;
    return ENOSYS;
#endif
}

long mp_send_file(int out_fd, int in_fd, long long *offset, size_t count) {
#if defined(__linux__)
    off_t position = (off_t)*offset;
    ssize_t sent = sendfile(out_fd, in_fd, &position, count);
    *offset = (long long)position;
    return (long)sent;
#else
    (void)out_fd;
    (void)in_fd;
    (void)offset;
    (void)count;
    errno = ENOSYS;
    return -1;
#endif
}

int mp_set_pipe_size(int fd, int size) {
#if defined(__linux__) && defined(F_SETPIPE_SZ)
    return fcntl(fd, F_SETPIPE_SZ, size);
#else
    (void)fd;
    (void)size;
    errno = ENOSYS;
    return -1;
#endif
}

int mp_dup_cloexec(int fd, int minimum) { return fcntl(fd, F_DUPFD_CLOEXEC, minimum); }

int mp_set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

const char *mp_signal_abbreviation(int signal) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
    return sigabbrev_np(signal);
#else
    if (signal > 0 && signal < NSIG) return sys_signame[signal];
    return NULL;
#endif
}

int mp_wifexited(int status) { return WIFEXITED(status); }
int mp_wexitstatus(int status) { return WEXITSTATUS(status); }
int mp_wifsignaled(int status) { return WIFSIGNALED(status); }
int mp_wtermsig(int status) { return WTERMSIG(status); }

char **mp_environ(void) { return environ; }

void mp_set_stdout_line_buffered(void) { setvbuf(stdout, NULL, _IOLBF, 0); }

void mp_block_sigpipe_on_this_thread(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

void mp_unblock_sigchld_on_this_thread(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

void mp_set_current_thread_name(const char *name) {
#if defined(__linux__)
    pthread_setname_np(pthread_self(), name);
#elif defined(__APPLE__)
    pthread_setname_np(name);
#endif
}

void mp_current_thread_name(char *buffer, size_t size) {
    if (size == 0) return;
    buffer[0] = 0;
    pthread_getname_np(pthread_self(), buffer, size);
}

#if defined(__linux__)
#include <sched.h>

/// The CPU limit of the cgroup (v2 `cpu.max`, else v1 `cpu.cfs_quota_us`), rounded up, or 0
/// if there is none.
static int cgroup_cpu_limit(void) {
    char path[4096] = "/sys/fs/cgroup/cpu.max";
    FILE *membership = fopen("/proc/self/cgroup", "re");
    if (membership) {
        char line[4096];
        while (fgets(line, sizeof line, membership)) {
            if (strncmp(line, "0::", 3) == 0) {
                line[strcspn(line, "\n")] = 0;
                if (strcmp(line + 3, "/") != 0) snprintf(path, sizeof path, "/sys/fs/cgroup%s/cpu.max", line + 3);
                break;
            }
        }
        fclose(membership);
    }
    long long quota = -1, period = 0;
    FILE *file = fopen(path, "re");
    if (!file) file = fopen("/sys/fs/cgroup/cpu.max", "re");
    if (file) {
        char max[32];
        if (fscanf(file, "%31s %lld", max, &period) == 2 && strcmp(max, "max") != 0) quota = atoll(max);
        fclose(file);
    } else if ((file = fopen("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "re"))) {
        if (fscanf(file, "%lld", &quota) != 1) quota = -1;
        fclose(file);
        if ((file = fopen("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "re"))) {
            if (fscanf(file, "%lld", &period) != 1) period = 0;
            fclose(file);
        }
    }
    if (quota <= 0 || period <= 0) return 0;
    return (int)((quota + period - 1) / period);
}
#endif

int mp_available_cpu_count(void) {
    int count = 0;
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) count = CPU_COUNT(&set);
    int limit = cgroup_cpu_limit();
    if (count <= 0) count = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (limit > 0 && limit < count) count = limit;
#else
    count = (int)sysconf(_SC_NPROCESSORS_ONLN);
#endif
    return count > 0 ? count : 1;
}

static __thread const void *current_loop;

void mp_set_current_loop(const void *loop) { current_loop = loop; }

const void *mp_current_loop(void) { return current_loop; }

int mp_reopen_pipe_nonblocking(int fd) {
#if defined(__linux__)
    struct stat info;
    if (fstat(fd, &info) != 0 || !S_ISFIFO(info.st_mode)) return -1;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
#else
    (void)fd;
    return -1;
#endif
}


static int numeric_name(const struct sockaddr *address, socklen_t length, char *text, size_t size, int *port) {
    char service[16];
    if (getnameinfo(address, length, text, (socklen_t)size, service, sizeof service, NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        errno = EINVAL;
        return -1;
    }
    if (port) *port = atoi(service);
    return 0;
}

int mp_listen_toward(const char *peer, char *address, size_t address_size, int *port) {
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    struct addrinfo *found = NULL;
    if (getaddrinfo(peer, "9", &hints, &found) != 0 || found == NULL) {
        errno = ENOENT;
        return -1;
    }
    // A UDP "connect" sends nothing: it only asks the kernel which local address routes there.
    int probe = socket(found->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (probe < 0) { freeaddrinfo(found); return -1; }
    if (connect(probe, found->ai_addr, found->ai_addrlen) != 0) {
        int saved = errno; close(probe); freeaddrinfo(found); errno = saved; return -1;
    }
    struct sockaddr_storage local;
    socklen_t local_length = sizeof local;
    int family = found->ai_family;
    freeaddrinfo(found);
    if (getsockname(probe, (struct sockaddr *)&local, &local_length) != 0) { int saved = errno; close(probe); errno = saved; return -1; }
    close(probe);
    if (family == AF_INET) ((struct sockaddr_in *)&local)->sin_port = 0;
    else ((struct sockaddr_in6 *)&local)->sin6_port = 0;
    int listener = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (listener < 0) return -1;
    if (bind(listener, (struct sockaddr *)&local, local_length) != 0 || listen(listener, 8) != 0) {
        int saved = errno; close(listener); errno = saved; return -1;
    }
    local_length = sizeof local;
    if (getsockname(listener, (struct sockaddr *)&local, &local_length) != 0
        || numeric_name((struct sockaddr *)&local, local_length, address, address_size, port) != 0) {
        int saved = errno; close(listener); errno = saved; return -1;
    }
    return listener;
}

static void set_no_delay(int fd) {
    int on = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
}

int mp_accept_tcp(int listener, char *peer, size_t peer_size) {
    struct sockaddr_storage address;
    socklen_t length = sizeof address;
#if defined(__linux__)
    int fd = accept4(listener, (struct sockaddr *)&address, &length, SOCK_CLOEXEC | SOCK_NONBLOCK);
#else
    int fd = accept(listener, (struct sockaddr *)&address, &length);
    if (fd >= 0) { fcntl(fd, F_SETFD, FD_CLOEXEC); fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }
#endif
    if (fd < 0) return -1;
    set_no_delay(fd);
    if (numeric_name((struct sockaddr *)&address, length, peer, peer_size, NULL) != 0) snprintf(peer, peer_size, "?");
    return fd;
}

int mp_connect_tcp(const char *address, int port) {
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo *found = NULL;
    if (getaddrinfo(address, service, &hints, &found) != 0 || found == NULL) { errno = EINVAL; return -1; }
    int fd = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) { freeaddrinfo(found); return -1; }
    int result;
    do { result = connect(fd, found->ai_addr, found->ai_addrlen); } while (result != 0 && errno == EINTR);
    int saved = errno;
    freeaddrinfo(found);
    if (result != 0) { close(fd); errno = saved; return -1; }
    set_no_delay(fd);
    return fd;
}

int mp_random_bytes(void *buffer, size_t count) {
#if defined(__linux__)
    size_t done = 0;
    while (done < count) {
        ssize_t got = getrandom((char *)buffer + done, count - done, 0);
        if (got < 0) { if (errno == EINTR) continue; return -1; }
        done += (size_t)got;
    }
    return 0;
#else
    arc4random_buf(buffer, count);
    return 0;
#endif
}

static int remove_entry(const char *path, const struct stat *status, int kind, struct FTW *walk) {
    (void)status; (void)kind; (void)walk;
    return remove(path);
}

int mp_remove_tree(const char *path) {
    return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}
