"""Jobs and their orchestration: a correction job (its concepts, its typed result, its export), an analysis job,
sweeps of jobs. The public names are exported by `backend.runs`."""
