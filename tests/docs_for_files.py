"""Small documents written for the file tests: a PDF with text, an image-only PDF
(a scan), a Word file. Hand-written PDF objects keep them tiny and exact."""

from __future__ import annotations

import io
import zlib


def _pdf(objects: list[bytes]) -> bytes:
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s>>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def text_pdf(lines: list[str], pages: int = 1) -> bytes:
    """A PDF whose pages show `lines` in Helvetica (text pypdf can extract)."""
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(pages)).encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages)]
    font = 3 + 2 * pages
    for _ in range(pages):
        ops = [b"BT /F1 11 Tf 50 780 Td 14 TL"]
        for line in lines:
            safe = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(b"(" + safe.encode("latin-1") + b") Tj T*")
        ops.append(b"ET")
        content = zlib.compress(b"\n".join(ops))
        page_number = len(objects) + 1
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents %d 0 R"
                       b" /Resources << /Font << /F1 %d 0 R >> >> >>" % (page_number + 1, font))
        objects.append(_stream(content, b"/Filter /FlateDecode "))
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    return _pdf(objects)


def image_pdf() -> bytes:
    """One page that only draws a small grey image: a scan, no text to extract."""
    pixels = bytes(range(0, 256, 4)) * 16  # 32 x 32 grey
    return _pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R"
        b" /Resources << /XObject << /Im1 5 0 R >> >> >>",
        _stream(b"q 100 0 0 100 50 50 cm /Im1 Do Q"),
        _stream(pixels, b"/Type /XObject /Subtype /Image /Width 32 /Height 32"
                        b" /ColorSpace /DeviceGray /BitsPerComponent 8 "),
    ])


def docx_file(heading: str, paragraphs: list[str]) -> bytes:
    import docx

    document = docx.Document()
    document.add_heading(heading, level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def big_pdf(size: int, pages: int = 200) -> bytes:
    """About `size` bytes: `pages` pages of text, then an incompressible image (as scanned
    figures make real PDFs large)."""
    import random

    lines = [f"Line {i}: the masternode ledger keeps reward number {i} for the auditors." for i in range(40)]
    text = text_pdf(lines, pages=pages)
    padding = max(0, size - len(text) - 600)
    blob = random.Random(7).randbytes(padding)
    side = int((padding // 3) ** 0.5) or 1
    image = _stream(blob, b"/Type /XObject /Subtype /Image /Width %d /Height %d"
                          b" /ColorSpace /DeviceRGB /BitsPerComponent 8 " % (side, side))
    # the image as one more object of the text PDF: rebuild with it appended
    head, _, _ = text.partition(b"xref\n")
    objects = []
    for chunk in head.split(b" 0 obj\n")[1:]:
        objects.append(chunk.rsplit(b"\nendobj\n", 1)[0])
    return _pdf([*objects, image])
