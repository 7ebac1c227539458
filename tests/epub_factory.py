"""Real EPUB 2 and EPUB 3 files, built in memory with zipfile, for the reader's tests.

A book is a list of (chapter title, paragraphs). The archive is laid out as books are: the
`mimetype` member first and stored uncompressed, META-INF/container.xml, a package document
(OPF) in a folder, chapters in a subfolder of it, and a nav document (EPUB 3) or an NCX
(EPUB 2). Keyword options produce the awkward books real readers meet: a cover page with
no text, a spine order unlike the manifest's, chapters missing from the table of contents,
table-of-contents titles unlike the headings, DRM, font obfuscation.

`bomb_epub` and `bomb_zip` make decompression bombs: archives a few hundred kilobytes long
whose members inflate to hundreds of megabytes or more. They are written by hand, not with
zipfile, so that a gigabyte bomb takes a fraction of a second and no memory to make.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from html import escape
from urllib.parse import quote

Chapter = tuple[str, Sequence[str]]

_CONTAINER = """<?xml version="1.0" encoding="UTF-8"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles>
    <rootfile full-path="{opf}" media-type="application/oebps-package+xml"/>
  </rootfiles>
</container>
"""

_CHAPTER = """<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">
<head><title>{title}</title><link rel="stylesheet" href="../style.css"/></head>
<body>
{heading}{paragraphs}
</body>
</html>
"""

_COVER = """<?xml version="1.0" encoding="utf-8"?>
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Cover</title></head>
<body><div><img src="cover.jpg" alt="Cover"/></div></body></html>
"""

_ENCRYPTED_DATA = """  <enc:EncryptedData>
    <enc:EncryptionMethod Algorithm="{algorithm}"/>
    <enc:CipherData><enc:CipherReference URI="{uri}"/></enc:CipherData>
  </enc:EncryptedData>
"""

AES_ALGORITHM = "http://www.w3.org/2001/04/xmlenc#aes128-cbc"
FONT_OBFUSCATION_ALGORITHM = "http://www.idpf.org/2008/embedding"


def build_epub(
    chapters: Sequence[Chapter],
    *,
    version: int = 3,
    title: str = "A Test Book",
    spine_order: Sequence[int] | None = None,
    untitled: Collection[int] = (),
    toc_titles: Sequence[str] | None = None,
    headings: bool = True,
    cover: bool = False,
    drm: bool = False,
    obfuscated_font: bool = False,
    file_stem: str = "chapter",
) -> bytes:
    """An EPUB of `chapters`, as bytes.

    `spine_order`: chapter indexes in reading order (the manifest keeps list order).
    `untitled`: indexes of chapters left out of the table of contents.
    `toc_titles`: the table of contents' titles, when they should differ from the headings.
    `headings`: whether each chapter file opens with an <h1> of its title.
    `cover`: a first spine page holding only an image. `drm`: chapters declared encrypted.
    `obfuscated_font`: a font declared obfuscated (not DRM). `file_stem`: chapter file names
    ("my chapter" gives names with spaces, so hrefs must be URL-encoded).
    """
    if version not in (2, 3):
        raise ValueError(f"EPUB version must be 2 or 3, got {version}")
    files = [f"text/{file_stem}-{index + 1:02d}.xhtml" for index in range(len(chapters))]
    order = list(spine_order) if spine_order is not None else list(range(len(chapters)))
    labels = list(toc_titles) if toc_titles is not None else [t for t, _ in chapters]
    toc = [(files[i], labels[i]) for i in order if i not in untitled]

    members: dict[str, str | bytes] = {
        "META-INF/container.xml": _CONTAINER.format(opf="OEBPS/content.opf"),
        "OEBPS/content.opf": _package(title, version, files, order, cover, obfuscated_font),
        "OEBPS/style.css": "p { text-indent: 1em; }\n",
    }
    if version == 3:
        members["OEBPS/nav.xhtml"] = _nav(toc)
    else:
        members["OEBPS/toc.ncx"] = _ncx(title, toc)
    for path, (chapter_title, paragraphs) in zip(files, chapters, strict=True):
        members[f"OEBPS/{path}"] = _chapter(chapter_title, paragraphs, headings)
    if cover:
        members["OEBPS/cover.xhtml"] = _COVER
        members["OEBPS/cover.jpg"] = b"\xff\xd8\xff\xe0 not really a jpeg"
    if obfuscated_font:
        members["OEBPS/font.otf"] = b"OTTO scrambled font bytes"
    encrypted = [(AES_ALGORITHM, f"OEBPS/{quote(p)}") for p in files] if drm else []
    if obfuscated_font:
        encrypted.append((FONT_OBFUSCATION_ALGORITHM, "OEBPS/font.otf"))
    if encrypted:
        members["META-INF/encryption.xml"] = _encryption(encrypted)
    return zip_members(members)


def zip_members(members: dict[str, str | bytes], *, mimetype: bool = True) -> bytes:
    """A ZIP of `members`, with the EPUB `mimetype` member stored first when asked."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        if mimetype:
            archive.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        for path, content in members.items():
            archive.writestr(path, content, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def bomb_epub(chapter_bytes: int, *, fill: bytes = b"word ") -> bytes:
    """An EPUB 3 whose one chapter is `fill` repeated to at least `chapter_bytes` bytes."""
    chapter = _chapter("Bomb", [], heading=True)
    opening, closing = chapter.split("</body>")
    members: list[_Member] = [
        _member("mimetype", [(b"application/epub+zip", 1)], stored=True),
        _member(
            "META-INF/container.xml", [(_CONTAINER.format(opf="OEBPS/content.opf").encode(), 1)]
        ),
        _member(
            "OEBPS/content.opf",
            [(_package("Bomb", 3, ["text/bomb.xhtml"], [0], False, False).encode(), 1)],
        ),
        _member("OEBPS/nav.xhtml", [(_nav([("text/bomb.xhtml", "Bomb")]).encode(), 1)]),
        _member(
            "OEBPS/text/bomb.xhtml",
            [
                (opening.encode(), 1),
                *_repeated(fill, chapter_bytes),
                (b"</body>" + closing.encode(), 1),
            ],
        ),
    ]
    return _zip(members)


def bomb_zip(
    member: str, inflated_bytes: int, *, fill: bytes = b"\0", declared_size: int | None = None
) -> bytes:
    """A ZIP of one deflated member `member` that inflates to at least `inflated_bytes` of
    `fill`. `declared_size`: the size its headers claim, when it should lie."""
    entry = _member(member, _repeated(fill, inflated_bytes))
    if declared_size is not None:
        entry = replace(entry, size=declared_size)
    return _zip([entry])


@dataclass(frozen=True)
class _Member:
    """A member as it is written: its deflated (or stored) bytes and what the headers say."""

    name: str
    method: int
    data: bytes
    crc: int
    size: int


# Many copies of one megabyte-sized block: deflated once, and written as often as needed.
_BLOCK = 1 << 20


def _repeated(fill: bytes, size: int) -> list[tuple[bytes, int]]:
    block = fill * max(1, min(size, _BLOCK) // len(fill))
    return [(block, -(-size // len(block)))]


def _member(name: str, pieces: Sequence[tuple[bytes, int]], *, stored: bool = False) -> _Member:
    """Deflate `pieces` ((bytes, times repeated)) into one stream, each piece compressed once.

    Each piece is deflated by a fresh compressor and ended with a full flush, so it refers to
    nothing before it and its copies can simply be concatenated; an empty final block ends
    the stream.
    """
    crc, size = 0, 0
    chunks: list[bytes] = []
    for piece, times in pieces:
        for _ in range(times):
            crc = zlib.crc32(piece, crc)
        size += len(piece) * times
        if stored:
            chunks.append(piece * times)
            continue
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        chunks.append((compressor.compress(piece) + compressor.flush(zlib.Z_FULL_FLUSH)) * times)
    if not stored:
        chunks.append(b"\x03\x00")
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    return _Member(name, method, b"".join(chunks), crc, size)


def _zip(members: Sequence[_Member]) -> bytes:
    """A ZIP archive of `members`, laid out as zipfile would write it."""
    local, central = io.BytesIO(), io.BytesIO()
    for member in members:
        name = member.name.encode()
        fields = (member.method, 0, 0x21, member.crc, len(member.data), member.size, len(name))
        central.write(
            struct.pack(
                "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, *fields, 0, 0, 0, 0, 0, local.tell()
            )
        )
        central.write(name)
        local.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, *fields, 0))
        local.write(name + member.data)
    directory = central.getvalue()
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), local.tell(), 0
    )
    return local.getvalue() + directory + end


def _package(
    title: str,
    version: int,
    files: Sequence[str],
    order: Sequence[int],
    cover: bool,
    obfuscated_font: bool,
) -> str:
    items = [
        f'<item id="ch{index + 1}" href="{quote(path)}" media-type="application/xhtml+xml"/>'
        for index, path in enumerate(files)
    ]
    items.append('<item id="css" href="style.css" media-type="text/css"/>')
    if version == 3:
        items.append(
            '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>'
        )
    else:
        items.append('<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>')
    spine = [f'<itemref idref="ch{index + 1}"/>' for index in order]
    if cover:
        items.append('<item id="cover" href="cover.xhtml" media-type="application/xhtml+xml"/>')
        items.append('<item id="cover-image" href="cover.jpg" media-type="image/jpeg"/>')
        spine.insert(0, '<itemref idref="cover" linear="no"/>')
    if obfuscated_font:
        items.append('<item id="font" href="font.otf" media-type="font/otf"/>')
    toc_attribute = ' toc="ncx"' if version == 2 else ""
    newline = "\n    "
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="{version}.0" unique-identifier="id">
  <metadata xmlns:dc="http://purl.org/dc/elements/1.1/">
    <dc:identifier id="id">urn:uuid:12345678-1234-5678-1234-567812345678</dc:identifier>
    <dc:title>{escape(title)}</dc:title>
    <dc:language>en</dc:language>
  </metadata>
  <manifest>
    {newline.join(items)}
  </manifest>
  <spine{toc_attribute}>
    {newline.join(spine)}
  </spine>
</package>
"""


def _chapter(title: str, paragraphs: Sequence[str], heading: bool) -> str:
    return _CHAPTER.format(
        title=escape(title),
        heading=f"<h1>{escape(title)}</h1>\n" if heading else "",
        paragraphs="\n".join(f"<p>{escape(p)}</p>" for p in paragraphs),
    )


def _nav(toc: Sequence[tuple[str, str]]) -> str:
    entries = "\n".join(
        f'      <li><a href="{quote(path)}">{escape(label)}</a></li>' for path, label in toc
    )
    # A landmarks nav comes first, as in many books: the reader must pick the toc one.
    start = quote(toc[0][0]) if toc else ""
    return f"""<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">
<head><title>Contents</title></head>
<body>
  <nav epub:type="landmarks"><ol>
    <li><a epub:type="bodymatter" href="{start}">Start&nbsp;of book</a></li>
  </ol></nav>
  <nav epub:type="toc" id="toc">
    <h1>Contents</h1>
    <ol>
{entries}
    </ol>
  </nav>
</body>
</html>
"""


def _ncx(title: str, toc: Sequence[tuple[str, str]]) -> str:
    points = "\n".join(
        f"""    <navPoint id="p{number}" playOrder="{number}">
      <navLabel><text>{escape(label)}</text></navLabel>
      <content src="{quote(path)}#start"/>
    </navPoint>"""
        for number, (path, label) in enumerate(toc, start=1)
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1">
  <head><meta name="dtb:uid" content="urn:uuid:12345678-1234-5678-1234-567812345678"/></head>
  <docTitle><text>{escape(title)}</text></docTitle>
  <navMap>
{points}
  </navMap>
</ncx>
"""


def _encryption(entries: Sequence[tuple[str, str]]) -> str:
    data = "".join(_ENCRYPTED_DATA.format(algorithm=a, uri=u) for a, u in entries)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container"
            xmlns:enc="http://www.w3.org/2001/04/xmlenc#">
{data}</encryption>
"""
