"""Reading EPUB books (EPUB 2 and 3) with zipfile and xml.etree only.

META-INF/container.xml names the package document (OPF); its manifest lists the files and
its spine their reading order. Each spine document with text becomes one CHAPTER section,
labelled from the table of contents (EPUB 3 nav document, else EPUB 2 NCX), else by its first
heading, else "Section N"; documents with neither that come before the first titled one (a
title page, a copyright page) are FRONT sections instead. The title is the package's
dc:title. Chapter text is extracted by `ingest.html.parse_html`.

It reads only the container, the encryption declaration, the package document, the table of
contents and the spine documents (each once), through `ingest.archive`, which refuses
decompression bombs: never images, fonts, stylesheets or other members. An XML member
declaring an encoding Python cannot use is read as UTF-8. It refuses DRM-protected books
(encrypted content in META-INF/encryption.xml; the font obfuscation EPUBs use is no
obstacle) and reports a broken archive or package as damaged.
It does not split a chapter file at its inner headings or follow links and footnotes.
"""

from __future__ import annotations

import posixpath
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from urllib.parse import unquote
from xml.etree import ElementTree

from ingest.archive import ZipArchive
from ingest.errors import DamagedFileError, EmptyFileError, IngestError, TooLargeError
from ingest.html import ParsedHtml, TolerantHtmlParser, decode_markup, parse_html
from ingest.normalize import TextBuilder, normalize
from ingest.text import lead_label
from ingest.types import ExtractedText, Format, ReadOptions, ReadProgress, SectionKind

_CONTAINER = "META-INF/container.xml"
_ENCRYPTION = "META-INF/encryption.xml"
_PACKAGE_MEDIA_TYPE = "application/oebps-package+xml"
_NCX_MEDIA_TYPE = "application/x-dtbncx+xml"
_CONTENT_MEDIA_TYPES = frozenset({"application/xhtml+xml", "text/html", "text/x-oeb1-document"})
_CONTENT_SUFFIXES = (".xhtml", ".html", ".htm", ".xml")
# Font obfuscation (IDPF, Adobe) scrambles embedded fonts only; the text stays readable.
_FONT_OBFUSCATION = frozenset(
    {"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"}
)
# What ElementTree raises besides ParseError on an encoding it cannot use ("utf-9", a
# multi-byte one expat cannot take from Python): LookupError and ValueError.
_XML_ENCODING_ERRORS = (LookupError, ValueError)


@dataclass(frozen=True)
class _Item:
    """A manifest entry: its id, its member path in the archive, its media type."""

    id: str
    path: str
    media_type: str
    properties: frozenset[str]


@dataclass(frozen=True)
class _Package:
    title: str | None
    spine: tuple[_Item, ...]
    nav: _Item | None
    ncx: _Item | None


def read_epub(
    data: bytes, name: str, options: ReadOptions
) -> Generator[ReadProgress, None, ExtractedText]:
    """Read an EPUB: one section per spine document with text, progress per document."""
    with ZipArchive(data, name) as archive:
        _refuse_drm(archive)
        package = _read_package(archive)
        titles = _toc_titles(archive, package)
        builder = TextBuilder()
        chapters = 0
        titled_yet = False
        for done, item in enumerate(package.spine, start=1):
            parsed = _read_chapter(archive, item)
            if parsed is not None and normalize(parsed.text):
                chapters += 1
                title = titles.get(item.path) or parsed.first_heading or None
                titled_yet = titled_yet or title is not None
                if title is None and not titled_yet:
                    builder.add(lead_label(package.title), SectionKind.FRONT, parsed.text)
                else:
                    builder.add(title or f"Section {chapters}", SectionKind.CHAPTER, parsed.text)
            yield ReadProgress(done, len(package.spine))
    if not builder.has_text:
        raise EmptyFileError(f"{name} has no text to read: its chapters are empty or images")
    return builder.build(Format.EPUB, package.title)


# --------------------------------------------------------------------------------------------
# The archive


def _read_xml(archive: ZipArchive, path: str) -> ElementTree.Element | None:
    """Parse the XML member at `path`; None when it is missing."""
    info = archive.member(path)
    if info is None:
        return None
    try:
        return _parse_xml(archive.read(info))
    except ElementTree.ParseError as error:
        raise DamagedFileError(
            f"{archive.name} is damaged: {path} is not valid XML ({error})"
        ) from error


def _parse_xml(data: bytes) -> ElementTree.Element:
    """Parse XML bytes; a declared encoding expat cannot use is ignored, as browsers do."""
    try:
        return ElementTree.fromstring(data)
    except _XML_ENCODING_ERRORS:
        # Parsed as text, the declaration no longer counts; decode_markup falls back to
        # UTF-8 (then cp1252) when the declared encoding is unknown.
        return ElementTree.fromstring(decode_markup(data))


def _local(tag: object) -> str:
    """An element's name without its namespace: books disagree on namespaces, not names."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _children(element: ElementTree.Element, local_name: str) -> Iterator[ElementTree.Element]:
    return (child for child in element if _local(child.tag) == local_name)


def _descendants(element: ElementTree.Element, local_name: str) -> Iterator[ElementTree.Element]:
    return (node for node in element.iter() if _local(node.tag) == local_name)


def _resolve(base: str, href: str) -> str:
    """The member path an href (relative to member `base`, URL-encoded) points at."""
    target = unquote(href.split("#", 1)[0])
    if not target:
        return ""
    joined = posixpath.join(posixpath.dirname(base), target)
    return posixpath.normpath(joined).lstrip("/")


# --------------------------------------------------------------------------------------------
# DRM


def _refuse_drm(archive: ZipArchive) -> None:
    """Raise when META-INF/encryption.xml says content, not just fonts, is encrypted."""
    info = archive.member(_ENCRYPTION)
    if info is None:
        return
    drm = IngestError(
        f"{archive.name} is DRM-protected: its text is encrypted, and longread can only read EPUBs"
        " without DRM. Add a DRM-free copy of the book instead."
    )
    try:
        declaration = _parse_xml(archive.read(info))
    except ElementTree.ParseError as error:
        # An encryption declaration nobody can read: assume the worst, say which.
        raise drm from error
    for method in _descendants(declaration, "EncryptionMethod"):
        if method.get("Algorithm", "") not in _FONT_OBFUSCATION:
            raise drm


# --------------------------------------------------------------------------------------------
# The package document


def _read_package(archive: ZipArchive) -> _Package:
    name = archive.name
    opf_path = _package_path(archive)
    opf = _read_xml(archive, opf_path)
    if opf is None:
        raise DamagedFileError(
            f"{name} is damaged: its package document {opf_path}, named in {_CONTAINER}, is missing"
        )
    manifest = _manifest(opf, opf_path)
    spine_element = next(_descendants(opf, "spine"), None)
    if spine_element is None:
        raise DamagedFileError(f"{name} is damaged: {opf_path} has no spine (reading order)")
    # A document listed twice is read once: no book repeats its text, and a spine naming one
    # file thousands of times would otherwise have it parsed thousands of times.
    in_order: dict[str, _Item] = {}
    for itemref in _children(spine_element, "itemref"):
        item = manifest.get(itemref.get("idref", ""))
        if item is not None:
            in_order.setdefault(item.path, item)
    spine = tuple(in_order.values())
    if not spine:
        raise DamagedFileError(f"{name} is damaged: its spine lists no documents to read")
    ncx = manifest.get(spine_element.get("toc", "")) or next(
        (item for item in manifest.values() if item.media_type == _NCX_MEDIA_TYPE), None
    )
    nav = next((item for item in manifest.values() if "nav" in item.properties), None)
    return _Package(title=_dc_title(opf), spine=spine, nav=nav, ncx=ncx)


def _package_path(archive: ZipArchive) -> str:
    name = archive.name
    container = _read_xml(archive, _CONTAINER)
    if container is None:
        raise DamagedFileError(
            f"{name} is damaged: {_CONTAINER} is missing, so the book's contents cannot be found"
        )
    rootfiles = [r for r in _descendants(container, "rootfile") if r.get("full-path")]
    chosen = next(
        (r for r in rootfiles if r.get("media-type") == _PACKAGE_MEDIA_TYPE),
        rootfiles[0] if rootfiles else None,
    )
    if chosen is None:
        raise DamagedFileError(f"{name} is damaged: {_CONTAINER} names no package document")
    return chosen.get("full-path", "").lstrip("/")


def _manifest(opf: ElementTree.Element, opf_path: str) -> dict[str, _Item]:
    items: dict[str, _Item] = {}
    for element in _descendants(opf, "item"):
        item_id, href = element.get("id"), element.get("href")
        if item_id and href:
            items[item_id] = _Item(
                id=item_id,
                path=_resolve(opf_path, href),
                media_type=element.get("media-type", "").strip().lower(),
                properties=frozenset(element.get("properties", "").split()),
            )
    return items


def _dc_title(opf: ElementTree.Element) -> str | None:
    for element in _descendants(opf, "title"):
        title = " ".join("".join(element.itertext()).split())
        if title:
            return title
    return None


# --------------------------------------------------------------------------------------------
# Chapters


def _read_chapter(archive: ZipArchive, item: _Item) -> ParsedHtml | None:
    """Parse one spine document; None for one that is not text (an SVG or image page)."""
    if item.media_type not in _CONTENT_MEDIA_TYPES and not item.path.lower().endswith(
        _CONTENT_SUFFIXES
    ):
        return None
    info = archive.member(item.path)
    if info is None:
        raise DamagedFileError(
            f"{archive.name} is damaged: {item.path}, listed in its reading order, is missing"
        )
    return parse_html(decode_markup(archive.read(info)))


# --------------------------------------------------------------------------------------------
# Table of contents


def _toc_titles(archive: ZipArchive, package: _Package) -> dict[str, str]:
    """Member path -> title of its first entry in the table of contents.

    A book whose table of contents cannot be read still reads: chapters then take their
    first heading, so errors here are swallowed on purpose.
    """
    entries: list[tuple[str, str]] = []
    if package.nav is not None:
        entries = _nav_entries(archive, package.nav)
    if not entries and package.ncx is not None:
        entries = _ncx_entries(archive, package.ncx)
    titles: dict[str, str] = {}
    for path, title in entries:
        if path and title:
            titles.setdefault(path, title)
    return titles


def _nav_entries(archive: ZipArchive, nav: _Item) -> list[tuple[str, str]]:
    data = _quiet_read(archive, nav.path)
    if data is None:
        return []
    parser = _NavParser()
    parser.feed(decode_markup(data))
    parser.close()
    return [(_resolve(nav.path, href), title) for href, title in parser.toc_entries()]


def _ncx_entries(archive: ZipArchive, ncx: _Item) -> list[tuple[str, str]]:
    data = _quiet_read(archive, ncx.path)
    if data is None:
        return []
    try:
        root = _parse_xml(data)
    except ElementTree.ParseError:
        return []
    entries: list[tuple[str, str]] = []
    # iter() walks in document order, so a chapter's entry comes before its subsections'.
    for point in _descendants(root, "navPoint"):
        label = next(_children(point, "navLabel"), None)
        content = next(_children(point, "content"), None)
        if label is not None and content is not None:
            title = " ".join("".join(label.itertext()).split())
            entries.append((_resolve(ncx.path, content.get("src", "")), title))
    return entries


def _quiet_read(archive: ZipArchive, path: str) -> bytes | None:
    info = archive.member(path)
    if info is None:
        return None
    try:
        return archive.read(info)
    except TooLargeError:
        raise  # a bomb is refused wherever it lies
    except IngestError:
        return None


class _NavParser(TolerantHtmlParser):
    """Collects the links of an EPUB 3 nav document, per <nav>, noting which is the toc.

    html.parser rather than ElementTree: nav documents use HTML entities (&nbsp;) that an
    XML parser without the XHTML DTD rejects.
    """

    def __init__(self) -> None:
        super().__init__()
        self.navs: list[tuple[bool, list[tuple[str, str]]]] = []
        self._nav_depth = 0
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "nav":
            if self._nav_depth == 0:
                kinds = (attributes.get("epub:type") or "").split()
                self.navs.append(("toc" in kinds, []))
            self._nav_depth += 1
        elif tag == "a" and self._nav_depth and attributes.get("href"):
            self._href = attributes["href"]
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav" and self._nav_depth:
            self._nav_depth -= 1
        elif tag == "a" and self._href is not None:
            self.navs[-1][1].append((self._href, " ".join("".join(self._text).split())))
            self._href = None

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def toc_entries(self) -> list[tuple[str, str]]:
        """The toc nav's links, else the first nav's (some books leave out epub:type)."""
        for is_toc, links in self.navs:
            if is_toc:
                return links
        return self.navs[0][1] if self.navs else []
