"""Template-browser thumbnails: the workflow's title and one-line description over a before/after pair.

ComfyUI's template browser shows a custom pack's templates by file name, with ``<name>.jpg`` as the picture; no
frontend up to 1.49 reads a title or description for them (core's ``index.json`` metadata is for core templates
only), so the picture carries both. The pictures are the repository's own CC0 / public-domain photographs
(``tests/data/SOURCES.md``) and an illustration of what the workflow does to them, made here with plain image
operations (a recoloured region, a padded canvas, a palette taken from a reference): no model ran, and the corner
says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
SUBJECT, REFERENCE = "chelsea_451x300.jpg", "coffee_600x400.jpg"
WIDTH, HEIGHT, HEADER, MARGIN = 960, 600, 110, 28
BACKGROUND, HEADER_BG = (30, 30, 30), (22, 22, 22)
EYES = ((147, 92, 191, 134), (296, 116, 338, 158))  # the cat's irises in SUBJECT's pixels: the illustrated edit
NOSE = ((246, 228, 290, 262),)  # the second turn of the iterative illustration


def _photo(name: str) -> Image.Image:
    return Image.open(DATA / name).convert("RGB")


def _recolour(image: Image.Image, boxes=EYES, shift: int = 120) -> Image.Image:
    """A local edit: the hue of soft-edged ellipses turned by ``shift`` (of 256); everything else untouched."""
    hsv = np.array(image.convert("HSV")).astype(np.int32)
    mask = Image.new("L", image.size, 0)
    for box in boxes:
        ImageDraw.Draw(mask).ellipse(box, fill=255)
    weight = np.array(mask.filter(ImageFilter.GaussianBlur(3)), dtype=np.float32) / 255
    hsv[..., 0] = (hsv[..., 0] + shift) % 256
    hsv[..., 1] = np.clip(hsv[..., 1] * 1.3 + 20, 0, 255)
    edited = Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")
    return Image.fromarray(
        (np.array(edited) * weight[..., None] + np.array(image) * (1 - weight[..., None])).astype(np.uint8)
    )


def _outpaint(image: Image.Image) -> Image.Image:
    """The picture on a 16:9 canvas, the sides continued from its edges (what the pad mode hands Kontext)."""
    width = round(image.height * 16 / 9)
    left = (width - image.width) // 2
    padded = np.array(image)
    padded = np.pad(padded, ((0, 0), (left, width - image.width - left), (0, 0)), mode="reflect")
    return Image.fromarray(padded)


def _palette_from(image: Image.Image, reference: Image.Image) -> Image.Image:
    """Style illustrated as colour statistics: each channel moved to the reference's mean and spread."""
    src = np.array(image, dtype=np.float32)
    ref = np.array(reference, dtype=np.float32)
    out = (src - src.mean((0, 1))) / (src.std((0, 1)) + 1e-6) * ref.std((0, 1)) + ref.mean((0, 1))
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def _pair(kind: str) -> tuple[list[Image.Image], Image.Image]:
    subject, reference = _photo(SUBJECT), _photo(REFERENCE)
    if kind == "outpaint":
        return [subject], _outpaint(subject)
    if kind == "style":
        return [subject, reference], _palette_from(subject, reference)
    if kind == "references":  # the eyes in the cup's red
        return [subject, reference], _recolour(subject, shift=230)
    if kind == "iterative":  # turn 1 the eyes, turn 2 the nose
        return [subject], _recolour(_recolour(subject), NOSE, shift=170)
    return [subject], _recolour(subject)


def _font(size: int):
    return ImageFont.load_default(size=size)


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> str:
    while text and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…"
    return text


def thumbnail(kind: str, title: str, summary: str) -> Image.Image:
    """The template browser's picture: title, description, the picture(s) before and the illustrated result."""
    befores, after = _pair(kind)
    picture = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(picture)
    draw.rectangle([0, 0, WIDTH, HEADER], fill=HEADER_BG)
    draw.text((MARGIN, 18), _fit(draw, title, _font(34), WIDTH - 2 * MARGIN), font=_font(34), fill=(240, 240, 240))
    draw.text((MARGIN, 66), _fit(draw, summary, _font(19), WIDTH - 2 * MARGIN), font=_font(19), fill=(180, 180, 180))
    area_top, area_h = HEADER + MARGIN, HEIGHT - HEADER - 2 * MARGIN - 24
    half = (WIDTH - 3 * MARGIN - 40) // 2
    column_h = (area_h - MARGIN * (len(befores) - 1)) // len(befores)
    y = area_top
    for before in befores:
        shown = ImageOps.contain(before, (half, column_h))
        picture.paste(shown, (MARGIN + (half - shown.width) // 2, y + (column_h - shown.height) // 2))
        y += column_h + MARGIN
    shown = ImageOps.contain(after, (half, area_h))
    right = WIDTH - MARGIN - half
    picture.paste(shown, (right + (half - shown.width) // 2, area_top + (area_h - shown.height) // 2))
    arrow_x, arrow_y = MARGIN + half + 8, area_top + area_h // 2
    draw.polygon([(arrow_x, arrow_y - 14), (arrow_x + 24, arrow_y), (arrow_x, arrow_y + 14)], fill=(220, 220, 220))
    label = _font(15)
    draw.text((MARGIN, HEIGHT - MARGIN - 14), "before", font=label, fill=(170, 170, 170))
    draw.text((right, HEIGHT - MARGIN - 14), "after (illustration, no model run)", font=label, fill=(170, 170, 170))
    return picture
