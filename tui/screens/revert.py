"""Modal: pick which live override to drop, so that key goes back to the config file's value."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

__all__ = ["RevertScreen", "ALL"]

ALL = "*"


class RevertScreen(ModalScreen[str | None]):
    """Dismisses with a tunable's name, ``ALL`` for every override, or None."""

    DEFAULT_CSS = """
    RevertScreen {
        align: center middle;
    }
    RevertScreen > Vertical {
        width: 64;
        max-width: 95%;
        height: auto;
        border: thick $accent;
        background: $surface;
        padding: 1 2;
    }
    RevertScreen .title {
        text-style: bold;
        margin-bottom: 1;
    }
    RevertScreen OptionList {
        height: auto;
        max-height: 12;
    }
    """

    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, overrides: dict[str, dict]) -> None:
        super().__init__()
        self.overrides = overrides

    def compose(self) -> ComposeResult:
        options = [Option(f"{name} = {v.get('value')}  → file value {v.get('file_value')}", id=name)
                   for name, v in self.overrides.items()]
        if len(options) > 1:
            options.append(Option("every live override", id=ALL))
        with Vertical():
            yield Label("Revert a live override to the file's value", classes="title")
            yield OptionList(*options)

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        """Close without choosing."""
        self.dismiss(None)
