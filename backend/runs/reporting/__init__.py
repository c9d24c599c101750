"""Reporting on runs: the audit report (its HTML pieces and SVG charts) and runs side by side. The public names
are exported by `backend.runs`."""
