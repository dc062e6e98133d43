/* pep523.h: the PEP 523 tracker ("eval"), for backend.c.  See pep523.c. */
#ifndef SP_PEP523_H
#define SP_PEP523_H

#include "tracker.h"

/* Installs a frame-evaluation function on the main interpreter, chaining to whatever
 * evaluation function is installed; uninstalls it if it is still the interpreter's
 * (else, a later tool chained to it, it stays and passes every call through). */
extern const sp_tracker_t sp_tracker_pep523;

#endif /* SP_PEP523_H */
