"""The help screen: what each screen's keys do and what an answer's route badge means.

It only shows text; the footer and the command palette (ctrl+p) list the live bindings.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP_TEXT = """\
# longread

Ask questions about your books and PDFs with a local model. Everything stays on this machine.

## Library
| key | action |
|---|---|
| `a` | add files (type a path with completion, or browse) |
| `enter` | open the selected document and chat with it |
| `d` | remove the selected document (asks first) |
| `s` | settings: model, strategy, RoPE scaling, KV type, GPU layers, answer length |
| `r` | refresh the table |

## Adding files
Type or paste paths (`tab` completes; several pasted paths are all taken), or browse the
tree (`a` adds the highlighted file, or a folder's readable files), then `ctrl+s`.
`escape` stops a run (files already added stay) or closes the dialog.

## Chat
| key | action |
|---|---|
| `enter` | ask the question typed below |
| `escape` | stop the answer being written (or go back when nothing runs) |
| `ctrl+r` | why the last answer took its route |
| `ctrl+y` | copy the last answer |
| `ctrl+s` | export the conversation to Markdown (in the current folder) |
| `ctrl+l` | clear the conversation (asks first) |
| `ctrl+b` | show or hide the sources and search panel |
| `ctrl+f` | search the document |
| `ctrl+↓` | jump to the newest text and follow it again |

In the sources panel, `enter` opens a source: the passage, with the cited span highlighted
(`n` and `p` step through the answer's other sources, `c` returns to the cited span).

## Everywhere
`ctrl+p` opens the command palette with every action, `ctrl+t` switches light and dark,
`f1` shows this help, `ctrl+q` quits (stopping any work at once).

## Routes
Each answer carries a badge with the strategy the router chose:
**whole document** (the document is read in full, with RoPE scaling past the model's
window), **beacons** (summaries of each part of a long book), or **retrieval** (the passages
a hybrid search found). *escalated* means a first retrieval answer was set aside, because
the passages did not back it, and the question was asked again with more of the document.
Hover over the badge, or press `ctrl+r`, for the reasons.
"""


class HelpScreen(ModalScreen[None]):
    """Keys and routes, explained; any of escape, q or f1 closes it."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 90%; max-width: 100; height: 90%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    """
    BINDINGS = [  # noqa: RUF012 (Textual reads class-level binding lists)
        Binding("escape,q,f1", "close", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(HELP_TEXT)

    def action_close(self) -> None:
        self.dismiss(None)
