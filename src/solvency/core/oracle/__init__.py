"""Oracle: source aggregation into a guarded index, mark price methods, dYdX acceptance.

Pure: no IO, no clock; time arrives as ``ts_ms`` arguments on the engine's event clock.
See ``docs/oracle.md`` for the rules, their sources and the default settings.
"""

from __future__ import annotations

from solvency.core.oracle.guard import (
    IndexUpdate,
    OracleConfig,
    OracleConfigError,
    OracleGuard,
    SourceRejected,
    price_to_decimal,
)
from solvency.core.oracle.kernels import CODE_NAMES, aggregate, aggregate_reference
from solvency.core.oracle.mark import (
    BookInputs,
    MarkConfig,
    MarkMethod,
    MarkPricer,
    MarkResult,
    TimeEMA,
)
from solvency.core.oracle.report import OracleReport, parse_oracle_line, parse_oracle_report

__all__ = [
    "CODE_NAMES",
    "BookInputs",
    "IndexUpdate",
    "MarkConfig",
    "MarkMethod",
    "MarkPricer",
    "MarkResult",
    "OracleConfig",
    "OracleConfigError",
    "OracleGuard",
    "OracleReport",
    "SourceRejected",
    "TimeEMA",
    "aggregate",
    "aggregate_reference",
    "parse_oracle_line",
    "parse_oracle_report",
    "price_to_decimal",
]
