"""Reader study dock widget: a blinded pairwise study, one trial at a time.

The reader types a name (or initials) and picks the study folder (made by
:func:`napari_dfct.reader_study.study.make_study` or ``dfct reader-study make``); *Start*
opens it (:meth:`napari_dfct.reader_study.study.Study.open`, which checks the images) and
shows the reader's first unanswered trial (:func:`napari_dfct.reader_study.judgments.next_trial`).

Each trial shows the two images of one slice side by side as layers ``A`` (left) and ``B``
(right) in the viewer's grid mode, with the study's window of that slice locked and every
other layer hidden (:class:`._reader_view.PairView`); nothing the reader sees names a
candidate or a file. The reader answers with ← (A is better) or → (B is better), or with
the buttons; each answer is appended to the study's ``judgments.csv`` at once
(:func:`napari_dfct.reader_study.judgments.append_judgment`), with ``left`` the candidate shown
as ``A`` and the decision time from the moment the pair was shown (``time.monotonic``, at
the canvas's first draw of the pair; at the time it was set where nothing draws).

*Pause* (or closing the dock) ends the session with nothing lost: the viewer gets its
layers, grid and keys back, and *Resume* (or a later session, after a crash too) goes on
at the first unanswered trial. *Back* exists only when the study allows it; an answer
given again is appended as a new row. *Report* shows the study's report, the only place
that names the candidates; it is off while a study is shown.

Answers that do not count (:class:`AnswerGuard`): any answer while no pair is shown (the
next one loading), a second answer to the same pair, an answer within
:data:`MIN_ANSWER_S` (150 ms) of a pair being shown (faster than anyone sees it: a
double click or a queued key press), and a key held down (its auto-repeat): a key counts
again only after it was released.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.types import FileDialogMode
from magicgui.widgets import Container, FileEdit, LineEdit, PushButton
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtGui import QFontDatabase
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QWidget

from . import _help, _jobs, _workers
from ._layout import scroll_body, settle
from ._reader_view import PairView

if TYPE_CHECKING:
    import napari

    from napari_dfct.reader_study.study import Study

__all__ = ["MIN_ANSWER_S", "AnswerGuard", "ReaderStudyWidget", "progress_text"]

#: Answers within this many seconds of a pair being shown are ignored.
MIN_ANSWER_S = 0.15
#: A key press within this many seconds of the last press of a key not released since is
#: its auto-repeat (a release that never arrived, e.g. with the focus elsewhere, stops
#: blocking the key after this time).
REPEAT_S = 2.0
#: The answer keys (napari key names) and the side each one picks.
KEYS = {"Left": "left", "Right": "right"}
#: Lines the report box shows at least.
REPORT_LINES = 12


def progress_text(position: int, total: int) -> str:
    """The progress label: ``"17 / 120"`` for the 17th of 120 trials (1-based)."""
    return f"{position} / {total}"


@dataclass
class AnswerGuard:
    """Which answers count (see the module's docstring); times are ``time.monotonic()``.

    Attributes
    ----------
    min_s : float
        Answers within this time of :meth:`shown` are ignored.
    repeat_s : float
        A press of a key held since a press less than this long ago is a repeat.
    """

    min_s: float = MIN_ANSWER_S
    repeat_s: float = REPEAT_S
    shown_at: float | None = None  # None: no pair to answer (loading, answered, paused)
    held_at: float | None = None  # last press of an answer key not released yet

    def shown(self, now: float) -> None:
        """A pair is on screen from ``now``."""
        self.shown_at = now

    def hidden(self) -> None:
        """No pair can be answered (loading the next one, paused, done)."""
        self.shown_at = None

    def key_down(self, now: float) -> bool:
        """An answer key was pressed; False when it is the auto-repeat of a held key."""
        repeat = self.held_at is not None and now - self.held_at < self.repeat_s
        self.held_at = now
        return not repeat

    def key_up(self) -> None:
        """The answer key was released."""
        self.held_at = None

    def answer(self, now: float) -> float | None:
        """The decision time in seconds when an answer at ``now`` counts, else None;
        a counted answer closes the pair."""
        if self.shown_at is None or now - self.shown_at < self.min_s:
            return None
        seconds, self.shown_at = now - self.shown_at, None
        return seconds


class ReaderStudyWidget(QWidget):
    """Read a blinded pairwise study in the viewer (see the module's docstring).

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self._viewer = napari_viewer
        self._view = PairView(napari_viewer, on_lost=self._on_layer_lost, on_drawn=self._drawn)
        self._guard = AnswerGuard()
        self.study: Study | None = (
            None  # the open napari_dfct.reader_study.study.Study while reading
        )
        self.reader = ""
        self.trial: int | None = None  # position in study.trials of the trial shown
        self._positions: dict[int, int] = {}  # trial index -> position in study.trials
        self._report_worker = None

        self.form = Container(
            widgets=[
                LineEdit(name="reader", label="reader"),
                FileEdit(name="study", label="study", mode=FileDialogMode.EXISTING_DIRECTORY),
            ],
            labels=True,
        )
        self.form.native.layout().setContentsMargins(0, 0, 0, 0)
        self.fields: Any = self.form  # fields by name: self.fields.reader, self.fields.study
        self.start_button = PushButton(name="start", text="Start")
        self.pause_button = PushButton(name="pause", text="Pause", enabled=False)
        self.back_button = PushButton(name="back", text="Back", enabled=False, visible=False)
        self.a_button = PushButton(name="a_better", text="A is better  (\u2190)", enabled=False)
        self.b_button = PushButton(name="b_better", text="B is better  (\u2192)", enabled=False)
        self.report_button = PushButton(name="report", text="Report")
        self.help_button = _help.help_button("reader")
        self.start_button.changed.connect(self.start)
        self.pause_button.changed.connect(self.pause)
        self.back_button.changed.connect(self.back)
        self.a_button.changed.connect(lambda *_: self.answer("left"))
        self.b_button.changed.connect(lambda *_: self.answer("right"))
        self.report_button.changed.connect(self.show_report)

        self.progress = QLabel(progress_text(0, 0).replace("0", "\u2013"))
        font = self.progress.font()
        font.setPointSizeF(font.pointSizeF() * 1.6)
        font.setBold(True)
        self.progress.setFont(font)
        self.progress.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.question = QLabel("")
        self.question.setWordWrap(True)
        self.question.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.status = QLabel("Enter your name, choose the study folder and press Start.")
        self.status.setWordWrap(True)
        self.report_text = QPlainTextEdit()
        self.report_text.setReadOnly(True)
        self.report_text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.report_text.setFont(mono)
        self.report_text.setPlaceholderText("The report appears here (it names the candidates).")
        self.report_text.setMinimumHeight(REPORT_LINES * self.report_text.fontMetrics().height())
        self.report_text.setToolTip(_help.tip("reader", "report_text"))

        session = QHBoxLayout()
        for button in (self.start_button, self.pause_button, self.back_button):
            session.addWidget(button.native)
        answers = QHBoxLayout()
        answers.addWidget(self.a_button.native)
        answers.addWidget(self.b_button.native)
        tail = QHBoxLayout()
        tail.addWidget(self.report_button.native)
        tail.addStretch(1)
        tail.addWidget(self.help_button.native)
        buttons = (
            self.start_button,
            self.pause_button,
            self.back_button,
            self.a_button,
            self.b_button,
            self.report_button,
        )
        _help.add_tips("reader", [*self.form, *buttons])
        _body, layout = scroll_body(self)
        layout.addWidget(self.form.native)
        layout.addLayout(session)
        layout.addWidget(self.progress)
        layout.addWidget(self.question)
        layout.addLayout(answers)
        layout.addWidget(self.status)
        layout.addLayout(tail)
        layout.addWidget(self.report_text, 1)  # the report takes the rest of the dock
        settle(self, self.form)

    # ------------------------------------------------------------------ state
    @property
    def running(self) -> bool:
        """Whether a study is being read (its pairs are in the viewer)."""
        return self.study is not None and self._view.active

    def _say(self, text: str, error: bool = False) -> None:
        """One line in the widget, and a notification for an error."""
        self.status.setText(text)
        if error:
            show_error(text)

    def _set_running(self, running: bool) -> None:
        self.start_button.enabled = not running
        self.pause_button.enabled = running
        self.a_button.enabled = running
        self.b_button.enabled = running
        allow_back = bool(running and self.study is not None and self.study.allow_back)
        self.back_button.visible = allow_back
        self.back_button.enabled = allow_back and bool(self.trial)
        self.report_button.enabled = not running
        self.form.enabled = not running

    # ------------------------------------------------------------------ session
    def start(self, *_args) -> bool:
        """Open the study and show the reader's first unanswered trial (Start / Resume)."""
        from napari_dfct.reader_study.judgments import next_trial
        from napari_dfct.reader_study.study import Study, validate_name

        if self.running:
            return True
        reader = str(self.fields.reader.value or "").strip()
        if not reader:
            self._say("Enter your name or initials first.", error=True)
            return False
        try:
            reader = validate_name(reader, "reader name")
        except ValueError as exc:
            self._say(f"{_one_line(exc)[:1].upper()}{_one_line(exc)[1:]}.", error=True)
            return False
        folder = self.fields.study.value
        if not folder or str(folder) in ("", "."):  # nothing chosen
            self._say("Choose the study folder first.", error=True)
            return False
        try:
            study = Study.open(folder)
            position = next_trial(study, reader)
        except (OSError, ValueError) as exc:
            self._say(f"Cannot open the study: {_one_line(exc)}", error=True)
            return False
        total = len(study.trials)
        if position is None:
            self._say(f"{reader} has answered all {total} trials of this study.")
            show_info(self.status.text())
            self.progress.setText(progress_text(total, total))
            return False
        self.study, self.reader = study, reader
        self._positions = {t.index: i for i, t in enumerate(study.trials)}
        self.report_text.clear()
        self.question.setText(str(study.question or ""))
        self._view.enter()
        self._view.bind({key: self._key_handler(side) for key, side in KEYS.items()})
        self._say("\u2190 A is better, \u2192 B is better.")
        if not self._show(self._positions[position]):
            return False
        self._set_running(True)
        return True

    def pause(self, *_args) -> None:
        """End the session; the answers are saved, Resume goes on where it stopped."""
        if not self._view.active:
            return
        self._stop()
        self.start_button.text = "Resume"
        self._say("Paused: every answer is saved. Resume continues at the next unanswered trial.")

    def _stop(self) -> None:
        self._guard.hidden()
        self._view.leave()
        self.study = None
        self._set_running(False)

    def _finish(self) -> None:
        total = len(self.study.trials) if self.study is not None else 0
        self._stop()
        self.start_button.text = "Start"
        self.progress.setText(progress_text(total, total))
        self._say(f"Done: all {total} trials answered. Thank you!")
        show_info(self.status.text())

    # ------------------------------------------------------------------ trials
    def _show(self, position: int) -> bool:
        """Show trial ``position`` of the study; False (and paused) when it cannot be read."""
        study = self.study
        assert study is not None  # only called while a study is open
        trial = study.trials[position]
        self._guard.hidden()
        try:
            left, right = study.pair(trial.index)
            window = study.window(trial.slice)
        except (OSError, ValueError) as exc:
            self._stop()
            self._say(f"Cannot show trial {position + 1}: {_one_line(exc)}", error=True)
            return False
        self._view.show(left, right, window)
        self.trial = position
        self.progress.setText(progress_text(position + 1, len(study.trials)))
        self.back_button.enabled = bool(study.allow_back and position > 0)
        self._guard.shown(time.monotonic())
        return True

    def _drawn(self) -> None:
        """The pair is on screen: the decision clock starts (again) now."""
        if self._guard.shown_at is not None:
            self._guard.shown(time.monotonic())

    def answer(self, side: str) -> bool:
        """Answer the trial shown: ``"left"`` (A is better) or ``"right"`` (B is better).

        Returns True when the answer was recorded (see :class:`AnswerGuard` for those
        that are ignored).
        """
        from napari_dfct.reader_study.judgments import append_judgment, next_trial

        if side not in ("left", "right"):
            raise ValueError(f"side must be 'left' or 'right', not {side!r}")
        if not self.running or self.trial is None:
            return False
        seconds = self._guard.answer(time.monotonic())
        if seconds is None:
            return False
        study = self.study
        assert study is not None  # running implies an open study
        trial = study.trials[self.trial]
        try:
            append_judgment(study, self.reader, trial, side, seconds)
            position = next_trial(study, self.reader)
        except (OSError, ValueError) as exc:
            self._stop()
            self.start_button.text = "Resume"
            self._say(f"Answer not saved: {_one_line(exc)}", error=True)
            return False
        if position is None:
            self._finish()
        else:
            self._show(self._positions[position])
        return True

    def back(self, *_args) -> None:
        """Show the trial before the current one (only when the study allows it)."""
        if self.running and self.study is not None and self.study.allow_back and self.trial:
            self._show(self.trial - 1)

    # ------------------------------------------------------------------ keys
    def _key_handler(self, side: str):
        """The function napari calls for an answer key: answers on the press (unless it
        is an auto-repeat) and notes the release (napari resumes it after the yield)."""

        def on_key(_viewer):
            if self._guard.key_down(time.monotonic()):
                self.answer(side)
            yield
            self._guard.key_up()

        return on_key

    # ------------------------------------------------------------------ report
    def show_report(self, *_args) -> None:
        """Compute the study's report in the background and show it (names included)."""
        if self.running or self._report_worker is not None:
            return
        folder = self.fields.study.value
        if not folder or str(folder) in ("", "."):
            self._say("Choose the study folder first.", error=True)
            return
        self.report_button.enabled = False
        self._say("Computing the report\u2026")
        self._report_worker, _cancel = _workers.start_job(
            self,
            _report_body,
            Path(folder),
            on_event=lambda _event: None,
            on_returned=self._on_report,
            on_error=self._on_report_error,
            on_finished=self._on_report_finished,
        )

    def _on_report(self, text: str) -> None:
        self.report_text.setPlainText(text)
        self._say("Report ready.")

    def _on_report_error(self, exc: BaseException) -> None:
        # a missing statistics library (ImportError) says how to install it
        self._say(f"No report: {_one_line(exc)}", error=True)

    def _on_report_finished(self) -> None:
        self._report_worker = None
        self.report_button.enabled = not self.running

    # ------------------------------------------------------------------ teardown
    def _on_layer_lost(self) -> None:
        self.pause()
        # napari's Viewer.close removes every layer before it closes the window: say
        # something only when the viewer is still open once that is over
        QTimer.singleShot(0, self._warn_lost)

    def _warn_lost(self) -> None:
        if not _jobs.viewer_open(self._viewer):
            return
        try:
            self._say("Paused: a study layer was deleted. Resume shows the trial again.")
        except RuntimeError:  # the widget was deleted meanwhile
            return
        show_warning(self.status.text())

    def event(self, event) -> bool:  # noqa: D102 - Qt's name
        # napari's dock close button takes the widget out of its dock (parent None)
        # without closing it: the study is paused then, as on close.
        if event.type() == QEvent.Type.ParentChange and self.parent() is None:
            self.pause()
        return super().event(event)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.pause()
        super().closeEvent(event)


def _report_body(study_dir: Path, *, cancel=None):
    """The report job: the formatted report of ``study_dir`` (no progress events)."""
    from napari_dfct.reader_study.report import format_report, report

    return format_report(report(study_dir))
    yield  # a generator: start_job drives it


def _one_line(exc: BaseException) -> str:
    """An exception as one line for the status: its message's first line."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
