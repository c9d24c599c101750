"""Runs: a correction job (load, fit, measure, correct, measure, export) or an analysis job (predictions,
activations, heatmaps of a split) executed in the background, persisted in the workspace's SQLite run store, on
local worker processes or a Ray cluster, alone or as sweeps."""

from backend.runs.execution.dispatch import MAX_CPU_JOBS_ENV, pid_alive
from backend.runs.execution.executor import LocalExecutor, RayExecutor
from backend.runs.execution.foreground import foreground_held, foreground_work, wait_for_foreground
from backend.runs.execution.store import FINAL_STATUSES, RUN_KINDS, RUN_STATUSES, STALE_SECONDS, RunRecord, RunStore
from backend.runs.jobs.analysis import (
    ANALYSIS_KIND,
    AnalysisCancelled,
    AnalysisJob,
    analysis_wanted,
    run_analysis_job,
)
from backend.runs.jobs.correction import ConceptSpec, CorrectionJob, method_config_from, run_correction_job
from backend.runs.jobs.export import (
    N_EXAMPLES,
    annotation_hash,
    cav_file,
    export_corrected,
    load_examples,
    save_examples,
)
from backend.runs.jobs.result import ConceptOutcome, RunOutputs, RunResult, lesion_overlap_advice
from backend.runs.jobs.sweep import pareto_front, run_name, submit_sweep, sweep_summary
from backend.runs.reporting.compare import FILTERS, concept_rows, filter_rows, loss_histories, run_rows
from backend.runs.reporting.report import build_report, write_report

__all__ = [
    "ANALYSIS_KIND",
    "AnalysisCancelled",
    "AnalysisJob",
    "RUN_KINDS",
    "analysis_wanted",
    "run_analysis_job",
    "ConceptOutcome",
    "CorrectionJob",
    "RunOutputs",
    "RunResult",
    "lesion_overlap_advice",
    "ConceptSpec",
    "FILTERS",
    "FINAL_STATUSES",
    "LocalExecutor",
    "MAX_CPU_JOBS_ENV",
    "N_EXAMPLES",
    "RUN_STATUSES",
    "RayExecutor",
    "RunRecord",
    "RunStore",
    "STALE_SECONDS",
    "annotation_hash",
    "build_report",
    "cav_file",
    "concept_rows",
    "export_corrected",
    "filter_rows",
    "foreground_held",
    "foreground_work",
    "loss_histories",
    "load_examples",
    "save_examples",
    "method_config_from",
    "pareto_front",
    "pid_alive",
    "run_correction_job",
    "run_rows",
    "run_name",
    "submit_sweep",
    "sweep_summary",
    "wait_for_foreground",
    "write_report",
]
