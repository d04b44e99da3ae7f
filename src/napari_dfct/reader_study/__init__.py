"""Blinded pairwise reader studies: make a study, record the readers' answers, report.

:mod:`~napari_dfct.reader_study.study`
    :func:`make_study` (trials, randomisation, one window per slice) and :class:`Study`
    (open a study folder, its trials and images);
:mod:`~napari_dfct.reader_study.judgments`
    the append-only ``judgments.csv``: :func:`append_judgment`, :func:`read_judgments`,
    :func:`answered`, :func:`next_trial`;
:mod:`~napari_dfct.reader_study.report`
    :func:`report` (Bradley-Terry scores with bootstrap intervals, pairwise sign tests,
    agreement, consistency, the link to the objective metrics) and :func:`format_report`;
:mod:`~napari_dfct.reader_study.observer`
    :func:`simulate_readers`, a model observer for tests and for planning.

The statistics need the ``reader`` extra (``pip install "napari-dfct[reader]"``: choix,
krippendorff), imported only when a report is made. This package imports neither Qt nor
napari.
"""

from __future__ import annotations

from .judgments import (
    JUDGMENT_COLUMNS,
    JUDGMENTS_FILE,
    answered,
    append_judgment,
    next_trial,
    read_judgments,
)
from .study import DEFAULT_QUESTION, STUDY_FILE, Study, Trial, make_study

__all__ = [
    "DEFAULT_QUESTION",
    "JUDGMENTS_FILE",
    "JUDGMENT_COLUMNS",
    "STUDY_FILE",
    "Study",
    "Trial",
    "answered",
    "append_judgment",
    "make_study",
    "next_trial",
    "read_judgments",
]
