"""shadowprof.analysis: everything that reads profiles, apart from the profiler.

The in-memory model (model.py), the file formats (formats.py and one module per
format), the text report, statistics, diff, merge and the flame graph, and the
subcommands that run them (commands.py).  Nothing here imports the runtime in the
package above it (the API, the command line, the start-up hook and the continuous
writer): they use this package, never the other way round, so a profile can be read
where shadowprof's C core cannot be loaded.
"""

__version__ = "0.1.0"
