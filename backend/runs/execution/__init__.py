"""Executing runs: the SQLite run store, the local and Ray executors, dispatching queued runs to worker processes,
the worker itself, and the page leases that jobs pause for. The public names are exported by `backend.runs`."""
