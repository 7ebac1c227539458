"""Real EPUB 2 and EPUB 3 files, built in memory with zipfile, for the reader's tests.

A book is a list of (chapter title, paragraphs). The archive is laid out as books are: the
`mimetype` member first and stored uncompressed, META-INF/container.xml, a package document
(OPF) in a folder, chapters in a subfolder of it, and a nav document (EPUB 3) or an NCX
(EPUB 2). Keyword options produce the awkward books real readers meet: a cover page with
no text, a spine order unlike the manifest's, chapters missing from the table of contents,
table-of-contents titles unlike the headings, DRM, font obfuscation.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Collection, Sequence
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
