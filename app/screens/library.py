"""The library screen: a table of the documents, and the verbs over them.

Each row shows a document's title, format, pages, tokens and date, whether its search index,
beacons and a saved KV state exist, and its context plan on the current model (fits / fits
with YaRN x2 / too long: retrieval). The plan needs the model's tokenizer, so the table
appears at once and a thread worker fills that column in. From here a person adds files,
removes one (after confirming), opens one to chat, or changes the settings. It does not
read files or build indexes itself: the add-files screen and the facade do.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from app.cancel import cancel_event
from app.screens.add_files import AddFilesScreen
from app.screens.chat import ChatScreen
from app.screens.confirm import ConfirmScreen
from app.screens.settings import SettingsScreen
from engine.assistant import Assistant
from engine.config import Settings
from engine.errors import USER_ERRORS
from engine.status import plan_summary
from ingest.types import Document

# The plan comes second so that it shows at 80 columns; the rest scrolls sideways.
COLUMNS = ("Title", "Plan", "Tokens", "Pages", "Format", "Added", "Search", "Beacons", "KV")
PLAN_COLUMN = "plan"
TITLE_WIDTH = 30
"""Longer titles are cut (the chat's header shows them whole)."""
PENDING = "…"
EMPTY_LIBRARY = (
    "Your library is empty.\n\nPress [b]a[/b] to add books and PDFs"
    " (PDF, EPUB, text, Markdown, HTML)."
)


def _cut(title: str) -> str:
    return title if len(title) <= TITLE_WIDTH else title[: TITLE_WIDTH - 1] + "…"


def _mark(flag: bool) -> str:
    return "✓" if flag else "–"


class LibraryScreen(Screen[None]):
    """The documents in the library, with their search, beacon, KV and plan status."""

    BINDINGS = [  # noqa: RUF012 (Textual reads class-level binding lists)
        Binding("a", "add", "Add files"),
        Binding("enter", "open", "Chat", show=True),
        Binding("d,delete", "remove", "Remove"),
        Binding("s", "settings", "Settings"),
        Binding("r", "refresh", "Refresh"),
    ]

    class PlanReady(Message):
        """The context plan label of one document, computed off the UI thread."""

        def __init__(self, document_id: str, label: str) -> None:
            super().__init__()
            self.document_id = document_id
            self.label = label

    def __init__(self, assistant: Assistant) -> None:
        super().__init__()
        self.assistant = assistant
        self._documents: dict[str, Document] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="documents", cursor_type="row", zebra_stripes=True)
        yield Static(EMPTY_LIBRARY, id="empty")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label in COLUMNS:
            width = TITLE_WIDTH if label == "Title" else None
            table.add_column(label, key=label.lower(), width=width)
        self.refresh_table()

    def on_screen_resume(self) -> None:
        # Back from a chat: a saved KV state or a new index may have appeared.
        if self.is_mounted:
            self.refresh_table()

    def refresh_table(self) -> None:
        """Re-read the library (fast, SQLite) and recompute plans in the background."""
        table = self.query_one(DataTable)
        selected = self._selected_id()
        try:
            documents = self.assistant.documents()
        except USER_ERRORS as error:  # the library went bad mid-session: say so, keep the table
            self.notify(str(error), severity="error", timeout=30)
            return
        table.clear()
        self._documents = {d.id: d for d in documents}
        statuses = self.assistant.document_statuses(self._documents)
        for document, status in zip(self._documents.values(), statuses, strict=True):
            table.add_row(
                _cut(document.title),
                PENDING,
                f"{document.token_count:,}",
                str(document.page_count) if document.page_count else "–",
                document.format.value,
                document.added_at.strftime("%Y-%m-%d"),
                _mark(status.indexed),
                _mark(status.beacons_built),
                _mark(status.kv_saved),
                key=document.id,
            )
        empty = not self._documents
        table.display = not empty
        self.query_one("#empty", Static).display = empty
        if selected in self._documents:
            table.move_cursor(row=table.get_row_index(selected))
        if not empty:
            table.focus()
            self._compute_plans(list(self._documents))

    @work(thread=True, exclusive=True, group="library-plans")
    def _compute_plans(self, document_ids: list[str]) -> None:
        """Each document's plan on the current model (token counting: off the UI thread)."""
        cancel = cancel_event(self.app)
        for document_id in document_ids:
            if cancel.is_set():
                return
            try:
                label = plan_summary(self.assistant.plan(document_id).plan)
            except USER_ERRORS as error:
                label = "no plan"
                self.app.call_from_thread(self.notify, str(error), severity="warning")
            self.post_message(self.PlanReady(document_id, label))

    def on_library_screen_plan_ready(self, message: PlanReady) -> None:
        table = self.query_one(DataTable)
        if message.document_id in self._documents:
            table.update_cell(message.document_id, PLAN_COLUMN, message.label, update_width=True)

    def _selected_id(self) -> str | None:
        table = self.query_one(DataTable)
        if not self._documents or table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return row_key.value

    # -- actions -------------------------------------------------------------------------

    def action_add(self) -> None:
        def added(document_ids: list[str] | None) -> None:
            self.refresh_table()
            if document_ids:
                table = self.query_one(DataTable)
                table.move_cursor(row=table.get_row_index(document_ids[-1]))

        self.app.push_screen(AddFilesScreen(self.assistant), added)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        document_id = self._selected_id()
        if document_id is not None:
            self.app.push_screen(ChatScreen(self.assistant, self._documents[document_id]))

    def action_remove(self) -> None:
        document_id = self._selected_id()
        if document_id is None:
            return
        document = self._documents[document_id]

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.assistant.remove(document.id)
                self.notify(f"Removed {document.title!r} and its conversation.")
                self.refresh_table()

        self.app.push_screen(
            ConfirmScreen(
                f"Remove {document.title!r} from the library? Its search index, saved KV"
                " states and conversation go too; the file itself stays where it is."
            ),
            confirmed,
        )

    def action_settings(self) -> None:
        def saved(settings: Settings | None) -> None:
            if settings is not None:
                self.assistant.reconfigure(settings)
                self.refresh_table()

        self.app.push_screen(SettingsScreen(self.assistant), saved)

    def action_refresh(self) -> None:
        self.refresh_table()
