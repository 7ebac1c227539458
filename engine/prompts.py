"""Every prompt longread sends to a model, in one place.

Documents are rendered with their location labels inline ("[p. 17]", "[Chapter 3]") so a
model can quote them and an answer can be traced back. The long-context layouts follow
DESIGN.md decision 2: `cached` puts the document before the question so its KV state is
reused by every later question; `query-aware` puts the question before and after it.

It does not count tokens or talk to a model.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.llm import CachedPrefix, ChatMessage, Role
from engine.types import PromptLayout
from ingest.types import Section, SectionKind

LONG_CONTEXT_SYSTEM = (
    "You answer questions about a document. Answer from the document only, briefly and"
    " directly. The document marks its pages or chapters in square brackets, like [p. 12];"
    " when you use a passage, cite its mark."
)


def location_mark(section: Section) -> str:
    """The inline mark a rendered document carries at the start of a section."""
    return f"[{section.citation()}]"


def render_document(text: str, sections: Sequence[Section]) -> str:
    """The document's text with a location mark before each section but front matter, whose
    label (the title, or "Start") is not a place a model should cite."""
    if not sections:
        return text
    parts: list[str] = []
    for section in sections:
        body = text[section.start : section.end]
        if not body:
            continue
        if section.kind is SectionKind.FRONT:
            parts.append(body)
        else:
            parts.append(f"{location_mark(section)}\n{body}")
    return "\n\n".join(parts)


def document_prompt(title: str, rendered_document: str) -> str:
    """The document as a long-context prompt carries it: a title line, then its text."""
    return f"Document: {title}\n\n{rendered_document}"


def long_context_messages(
    document_id: str, title: str, rendered_document: str, question: str, layout: PromptLayout
) -> tuple[list[ChatMessage], CachedPrefix | None]:
    """The chat for a whole-document question, and the prefix worth keeping prefilled.

    In the cached layout the first two messages (instructions, document) are the same for
    every question on the document, so the backend keeps their KV state; the query-aware
    layout has no such prefix.
    """
    system = ChatMessage(Role.SYSTEM, LONG_CONTEXT_SYSTEM)
    document = document_prompt(title, rendered_document)
    if layout is PromptLayout.CACHED:
        messages = [
            system,
            ChatMessage(Role.USER, document),
            ChatMessage(Role.USER, f"Using the document above, answer: {question}"),
        ]
        return messages, CachedPrefix(document_id=document_id, messages=2)
    content = (
        f"Question: {question}\n\n{document}\n\n"
        f"Using the document above, answer the question.\nQuestion: {question}"
    )
    return [system, ChatMessage(Role.USER, content)], None


# -- retrieval-augmented answers (engine/strategies/rag.py) --------------------------------

UNANSWERABLE = "unanswerable"
"""The one word a RAG answer is asked to be when the passages do not hold the answer
(Self-Route, arXiv 2407.16833): a fixed token the caller can detect and route on."""

# Kept short on purpose: the bundled 135M model follows a one-line instruction and loses a
# long one. Of eleven variants tried on it (the lighthouse document of tests/engine/
# test_rag.py, six questions), this one named the right fact for all four answerable
# questions (once with an invented detail); spelling the rules out again after the passages
# made it copy a passage's first sentence instead. No variant made it reply "unanswerable"
# to the two questions the passages do not answer: that verdict needs a bigger model.
RAG_SYSTEM = (
    "Answer from the passages only, in one sentence, citing the location."
    f" If they do not say, reply exactly: {UNANSWERABLE}"
)

PASSAGE_SEPARATOR = "\n\n"


def passage_label(number: int, location: str, title: str | None = None) -> str:
    """The line that introduces a passage: "[1] Pride and Prejudice, p. 17"."""
    where = ", ".join(part for part in (title, location) if part)
    return f"[{number}] {where}" if where else f"[{number}]"


def render_passage(number: int, text: str, location: str, title: str | None = None) -> str:
    """A passage as the model sees it: its label line, then its text."""
    return f"{passage_label(number, location, title)}\n{text.strip()}"


def rag_messages(question: str, passages: Sequence[str]) -> list[ChatMessage]:
    """The chat for a question over rendered passages (already in the order to show).

    The question stands before and after the passages, as in the query-aware layout: small
    models read the passages in its light and still have it fresh when they answer.
    """
    body = PASSAGE_SEPARATOR.join(passages)
    content = f"Question: {question}\n\n{body}\n\nQuestion: {question}"
    return [ChatMessage(Role.SYSTEM, RAG_SYSTEM), ChatMessage(Role.USER, content)]


# -- beacon summaries (engine/strategies/beacon_build.py, engine/strategies/beacons.py) ------

# Measured on the bundled 135M model over windows of A Christmas Carol: "take notes" and
# "write notes: who appears, ..." prompts made it repeat one line until max_tokens; a plain
# "Summarize the passage in about N words" after the passage, with the story so far before
# it, gave prose summaries naming who appears and what they do. Asking for more ("what they
# say, names, numbers") made it copy the story so far instead of the passage.
BEACON_WRITER_SYSTEM = "You summarize passages of a book."

BEACON_ANSWER_SYSTEM = (
    "You answer questions about a long document from summaries of its parts, given in order"
    " and labelled with their locations, and from a few passages. Answer briefly and cite"
    " the locations you used in square brackets, like [Chapter 3]."
)


def beacon_label(location: str) -> str:
    """The line that introduces a beacon: its window's location in brackets."""
    return f"[{location}]"


def render_beacon(location: str, text: str) -> str:
    """A beacon as a prompt shows it: its label line, then its summary."""
    return f"{beacon_label(location)}\n{text.strip()}"


def beacon_writer_messages(
    recent: Sequence[str], location: str, window_text: str, words: int
) -> list[ChatMessage]:
    """The chat that writes one window's beacon: the latest earlier beacons (rendered, in
    order) as the story so far, then the window, then the instruction."""
    story = f"Story so far:\n{PASSAGE_SEPARATOR.join(recent)}\n\n" if recent else ""
    content = (
        f"{story}Passage ({location}):\n{window_text.strip()}\n\n"
        f"Summarize the passage in about {words} words: who appears, what they do, where."
    )
    return [ChatMessage(Role.SYSTEM, BEACON_WRITER_SYSTEM), ChatMessage(Role.USER, content)]


def beacon_answer_messages(
    question: str, beacons: Sequence[str], passages: Sequence[str]
) -> list[ChatMessage]:
    """The chat for a question over a document's beacons (rendered, in document order) and
    the drill-down passages (rendered, best first); the question stands before and after."""
    body = "Summaries of the document, part by part:\n\n" + PASSAGE_SEPARATOR.join(beacons)
    if passages:
        body += "\n\nPassages from the parts that match the question:\n\n"
        body += PASSAGE_SEPARATOR.join(passages)
    content = f"Question: {question}\n\n{body}\n\nQuestion: {question}"
    return [ChatMessage(Role.SYSTEM, BEACON_ANSWER_SYSTEM), ChatMessage(Role.USER, content)]
