/* dumpsig.h: the on-demand dump signal (default SIGUSR2) as a self-pipe.
 *
 * The handler only writes one byte to a pipe; a Python daemon thread blocked reading
 * the other end (shadowprof/_dump.py) writes the profile and the threads' stacks.  So
 * the dump runs as ordinary Python code with the GIL, whatever the interrupted thread
 * was doing.
 */
#ifndef SP_DUMPSIG_H
#define SP_DUMPSIG_H

/* Installs the handler for `signo` and returns the pipe's read end.  Returns -2 if the
 * signal already has a handler or is ignored (the application's: left alone), -1 with
 * errno set on failure.  Replaces an earlier installation (other signal, or a forked
 * child that needs a pipe of its own).  GIL held. */
int sp_dumpsig_install(int signo);

/* Restores the signal's previous disposition and closes the pipe's write end (the
 * reader then sees end of file).  No-op if not installed.  GIL held. */
void sp_dumpsig_uninstall(void);

#endif /* SP_DUMPSIG_H */
