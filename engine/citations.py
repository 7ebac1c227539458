"""Finding the locations an answer cites: "[p. 17]", "page 17", "Chapter 3", "Stave Two".

Only labels the document really has are recognized, so a model that invents "p. 999" cites
nothing. It does not judge whether the cited passage supports the answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from engine.types import Citation
from ingest.types import Section, SectionKind

SNIPPET_CHARS = 160


def _patterns(section: Section) -> list[re.Pattern[str]]:
    label = re.escape(section.label)
    if section.kind is SectionKind.PAGE:
        # "p. 17", "p.17", "page 17", "pp. 17-18" (the first page of a range)
        return [re.compile(rf"\b(?:pp?\.|pages?)\s*{label}(?![\w.])", re.IGNORECASE)]
    names = [section.label]
    short = section.label.split(":", 1)[0].strip()
    if short and short != section.label:
        names.append(short)  # "Stave Two" for "Stave Two: The First of the Three Spirits"
    return [re.compile(rf"(?<!\w){re.escape(name)}(?!\w)", re.IGNORECASE) for name in names]


def snippet(text: str, section: Section) -> str:
    body = " ".join(text[section.start : section.end].split())
    return body if len(body) <= SNIPPET_CHARS else body[: SNIPPET_CHARS - 1].rstrip() + "…"


def cited_locations(
    answer: str, document_id: str, text: str, sections: Sequence[Section]
) -> tuple[Citation, ...]:
    """The document's sections the answer names, in the order it first names them."""
    found: list[tuple[int, Section]] = []
    for section in sections:
        if section.end <= section.start:
            continue
        positions = [m.start() for p in _patterns(section) for m in p.finditer(answer)]
        if positions:
            found.append((min(positions), section))
    found.sort(key=lambda item: item[0])
    return tuple(
        Citation(document_id=document_id, location=s.citation(), snippet=snippet(text, s))
        for _, s in found
    )
