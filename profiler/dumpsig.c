/* dumpsig.c: the dump signal's handler and self-pipe (see dumpsig.h).
 *
 * Shared state: the pipe's write end and the signal number, written with the GIL held
 * by install/uninstall while the handler may run; the handler only reads write_fd.
 * On overflow (the pipe is full because nobody reads) the byte is dropped: one pending
 * request is as good as many.  At fork the child inherits the handler and the pipe;
 * the Python layer reinstalls in the child so that parent and child do not share it.
 * Uninstall restores the previous disposition before closing the pipe, so a late
 * signal never writes to a closed (or reused) descriptor... except in the window of a
 * handler already running on another thread, whose write then fails with EBADF, or
 * writes one byte to whatever took the number; the dump signal is an operator's tool,
 * sent rarely, and uninstall runs only at exit or fork.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "dumpsig.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile int write_fd = -1;   /* GIL (install/uninstall); read by the handler */
static int installed_signo;          /* GIL */
static struct sigaction old_action;  /* GIL */

/* async-signal-safe; re-entrant */
static void
on_dump_signal(int sig)
{
    int saved_errno = errno;
    int fd = write_fd;
    if (fd >= 0) {
        char byte = 'd';
        ssize_t r = write(fd, &byte, 1);   /* non-blocking; a full pipe drops it */
        (void)r;
    }
    (void)sig;
    errno = saved_errno;
}

int
sp_dumpsig_install(int signo)
{
    sp_dumpsig_uninstall();
    struct sigaction cur;
    if (sigaction(signo, NULL, &cur) < 0)
        return -1;
    if ((cur.sa_flags & SA_SIGINFO) ? cur.sa_sigaction != NULL
                                    : cur.sa_handler != SIG_DFL)
        return -2;   /* the application's handler, or ignored on purpose */
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -1;
    if (fcntl(fds[1], F_SETFL, O_NONBLOCK) < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        errno = e;
        return -1;
    }
    write_fd = fds[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_dump_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(signo, &sa, &old_action) < 0) {
        int e = errno;
        write_fd = -1;
        close(fds[0]);
        close(fds[1]);
        errno = e;
        return -1;
    }
    installed_signo = signo;
    return fds[0];
}

void
sp_dumpsig_uninstall(void)
{
    if (!installed_signo)
        return;
    struct sigaction cur;
    /* Restore only if the handler is still ours (the application may have replaced it). */
    if (sigaction(installed_signo, NULL, &cur) == 0 && !(cur.sa_flags & SA_SIGINFO) &&
        cur.sa_handler == on_dump_signal)
        sigaction(installed_signo, &old_action, NULL);
    int fd = write_fd;
    write_fd = -1;
    if (fd >= 0)
        close(fd);
    installed_signo = 0;
}
