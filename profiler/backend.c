/* backend.c: the choice of tracker (see backend.h): parses the user's name for it,
 * attaches and detaches the one chosen through its sp_tracker_t, and remembers which
 * one is attached.  The only file that knows both trackers.
 *
 * Thread contract: GIL held, main interpreter.  Never reachable from the handler.
 */
#include "backend.h"
#include "monitoring.h"
#include "pep523.h"
#include "tracker.h"

#include <string.h>

static int attached_kind = SP_BACKEND_DEFAULT;   /* GIL; read by the drain */
static const sp_tracker_t *attached;             /* GIL; NULL: none */

static const sp_tracker_t *
tracker_of(int kind)
{
    return kind == SP_BACKEND_MONITORING ? &sp_tracker_monitoring : &sp_tracker_pep523;
}

int
sp_backend_parse(const char *name)
{
    if (name == NULL || strcmp(name, "auto") == 0)
        return SP_BACKEND_DEFAULT;
    if (strcmp(name, "eval") == 0)
        return SP_BACKEND_EVAL;
    if (strcmp(name, "monitoring") == 0) {
        if (!SP_HAS_MONITORING) {
            PyErr_Format(PyExc_ValueError,
                         "shadowprof: hook 'monitoring' needs CPython 3.12 or later "
                         "(this is %s); use hook 'eval' or 'auto'", PY_VERSION);
            return -1;
        }
        return SP_BACKEND_MONITORING;
    }
    PyErr_Format(PyExc_ValueError,
                 "shadowprof: hook must be 'auto', 'eval' or 'monitoring', not '%s'", name);
    return -1;
}

const char *
sp_backend_name(int kind)
{
    return tracker_of(kind)->name;
}

int
sp_backend_check_interpreter(void)
{
    if (sp_is_main_interpreter())
        return 0;
    PyErr_SetString(PyExc_RuntimeError,
                    "shadowprof: sub-interpreters are not supported; profile from the "
                    "main interpreter");
    return -1;
}

int
sp_backend_attach(int kind, void (*drain)(void))
{
    if (kind == SP_BACKEND_AUTO)
        kind = SP_BACKEND_DEFAULT;
    sp_backend_detach();
    if (sp_backend_check_interpreter() < 0)
        return -1;
    const sp_tracker_t *tr = tracker_of(kind);
    sp_tracker_reset_rooms();   /* the stacks may have been reseeded: see shadow.h */
    if (tr->install() < 0)
        return -1;
    attached = tr;
    attached_kind = kind;
    sp_tracker_on(drain);
    return 0;
}

void
sp_backend_detach(void)
{
    if (!attached)
        return;
    sp_tracker_off();
    attached->uninstall();
    attached = NULL;
}

int
sp_backend_kind(void)
{
    return attached_kind;
}
