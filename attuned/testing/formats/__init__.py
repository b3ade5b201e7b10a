"""Result formats, one module each; adding one = a module and a line in FORMATS."""

from __future__ import annotations

from attuned.pack.manifest import ResultFormat
from attuned.testing.formats.base import (
    ResultFormatError,
    ResultReader,
    RunnerOutput,
    SuiteReading,
)
from attuned.testing.formats.json import JsonFormat
from attuned.testing.formats.junit import JUnitFormat
from attuned.testing.formats.simple import SimpleFormat
from attuned.testing.formats.tap import TapFormat

FORMATS: dict[ResultFormat, ResultReader] = {
    ResultFormat.SIMPLE: SimpleFormat(),
    ResultFormat.JUNIT: JUnitFormat(),
    ResultFormat.TAP: TapFormat(),
    ResultFormat.JSON: JsonFormat(),
}

__all__ = ["FORMATS", "ResultFormatError", "ResultReader", "RunnerOutput", "SuiteReading"]
