"""Modal: type a new value for one tunable, checked as you type the way the server checks it."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.validation import ValidationResult, Validator
from textual.widgets import Button, Input, Label, Static

from tui.tuning import describe, parse_input

__all__ = ["TuneScreen"]


class TunableValidator(Validator):
    """Runs ``parse_input`` so the modal shows the server's wording before anything is sent."""

    def __init__(self, name: str, values: dict | None) -> None:
        super().__init__()
        self.tunable, self.values = name, values

    def validate(self, value: str) -> ValidationResult:
        try:
            parse_input(self.tunable, value, self.values)
        except ValueError as exc:
            return self.failure(str(exc))
        return self.success()


class TuneScreen(ModalScreen[object]):
    """Dismisses with the value to send, or None when cancelled."""

    DEFAULT_CSS = """
    TuneScreen {
        align: center middle;
    }
    TuneScreen > Vertical {
        width: 64;
        max-width: 95%;
        height: auto;
        border: thick $accent;
        background: $surface;
        padding: 1 2;
    }
    TuneScreen .title {
        text-style: bold;
        margin-bottom: 1;
    }
    TuneScreen .help {
        color: $text-muted;
    }
    TuneScreen #problem {
        color: $text-error;
        height: auto;
        min-height: 1;
    }
    TuneScreen Horizontal {
        height: auto;
        align-horizontal: right;
    }
    TuneScreen Button {
        margin-left: 1;
    }
    """

    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, name: str, current: dict | None, values: dict | None) -> None:
        super().__init__()
        self.tunable = name
        self.current = current or {}
        self.values = values

    def compose(self) -> ComposeResult:
        cur = self.current
        now = f"now {cur.get('value', '?')} ({cur.get('source', '?')}; file value {cur.get('file_value', '?')})" if cur else "current value unknown"
        with Vertical():
            yield Label(f"Set {self.tunable}", classes="title")
            yield Static(describe(self.tunable), classes="help")
            yield Static(now, classes="help", id="now")
            yield Input(placeholder=str(cur.get("value", "")), validators=[TunableValidator(self.tunable, self.values)],
                        id="value")
            yield Static("", id="problem")
            with Horizontal():
                yield Button("Apply…", variant="primary", id="apply", disabled=True)
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        ok = event.validation_result is not None and event.validation_result.is_valid
        self.query_one("#apply", Button).disabled = not ok
        problem = "" if ok or not event.value else "; ".join(event.validation_result.failure_descriptions)
        self.query_one("#problem", Static).update(problem)

    @on(Input.Submitted)
    @on(Button.Pressed, "#apply")
    def _apply(self) -> None:
        text = self.query_one(Input).value
        try:
            value = parse_input(self.tunable, text, self.values)
        except ValueError as exc:
            self.query_one("#problem", Static).update(str(exc))
            return
        self.dismiss(value)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Close without changing anything."""
        self.dismiss(None)
