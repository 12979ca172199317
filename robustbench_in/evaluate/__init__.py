"""Evaluation: the suite's cells, the runtime settings, the engine, and the results store it writes."""

from robustbench_in.evaluate.engine import EvalContext, corrupt_batch, evaluate
from robustbench_in.evaluate.results import ResultStore
from robustbench_in.evaluate.runtime import Precision, Runtime
from robustbench_in.evaluate.suite import Cell, SuiteSpec, build_cells, suite_corruptions

__all__ = ["Cell", "EvalContext", "Precision", "ResultStore", "Runtime", "SuiteSpec", "build_cells",
           "corrupt_batch", "evaluate", "suite_corruptions"]
