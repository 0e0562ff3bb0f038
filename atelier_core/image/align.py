"""Undo the global drift of a re-rendered edit before differencing it against the original.

Kontext re-renders the whole picture: it comes back shifted by a few pixels (sometimes scaled slightly) and with
a colour/exposure cast. Left alone, both light up the whole frame as "changed". This module estimates

* a global shift and isotropic scale, sub-pixel: phase correlation for the coarse shift, then a robust
  Lucas-Kanade refinement over an image pyramid that also fits a brightness gain/offset, and down-weights the
  locally edited pixels (Tukey weights) so they do not pull the estimate;
* a global colour drift (per-channel gain and offset in linear RGB), fitted robustly on the pixels that agree.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from .color import linear_to_srgb, srgb_to_linear

MIN_ALIGN_SIDE = 32  # below this there is not enough structure to estimate a shift
# A motion that moves no corner of the frame this far (pixels) is not applied: the estimate's own noise on a
# re-render of the same framing is about 0.01-0.05 px, and ΔE's envelope (1 px) absorbs that much misregistration.
NEGLIGIBLE_MOTION_PX = 0.1


@dataclass
class Alignment:
    """moving(s * (x - c) + c + t) matches reference(x); c is the image centre, t = (dx, dy) in pixels."""

    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0
    ok: bool = True
    note: str = ""
    confidence: float = 1.0  # structure correlation of the aligned pair (see match_confidence); NaN: not measured

    @property
    def is_identity(self) -> bool:
        return abs(self.dx) < 0.01 and abs(self.dy) < 0.01 and abs(self.scale - 1.0) < 1e-4

    def matrix(self, width: int, height: int) -> np.ndarray:
        """2x3 matrix taking reference (output) pixel coordinates to moving (input) coordinates."""
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        s = self.scale
        return np.array([[s, 0.0, (1 - s) * cx + self.dx], [0.0, s, (1 - s) * cy + self.dy]], np.float64)

    def scaled(self, factor: float) -> Alignment:
        """The same motion expressed for an image ``factor`` times larger."""
        return Alignment(self.dx * factor, self.dy * factor, self.scale, self.ok, self.note, self.confidence)

    def corner_motion(self, width: int, height: int) -> float:
        """How far (pixels) the motion moves the frame's farthest corner: Kontext's own drift moves it a few
        pixels; a model that reframed the picture moves it tens."""
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        ds = self.scale - 1.0
        return max(float(np.hypot(ds * sx * cx + self.dx, ds * sy * cy + self.dy)) for sx in (-1, 1) for sy in (-1, 1))

    def covered(self, width: int, height: int, margin: float = 1.0) -> tuple[slice, slice]:
        """The reference pixels whose moving position lies at least ``margin`` px inside the moving image (the
        rest would be made up by the warp's border mode): a (rows, cols) box, empty slices when none."""

        def span(n: int, c: float, d: float) -> slice:
            # moving = s * (x - c) + c + d must lie in [margin, n - 1 - margin]
            lo = (margin - c - d) / self.scale + c
            hi = (n - 1 - margin - c - d) / self.scale + c
            return slice(max(0, int(np.ceil(lo - 1e-6))), max(0, min(n, int(np.floor(hi + 1e-6)) + 1)))

        return span(height, (height - 1) / 2.0, self.dy), span(width, (width - 1) / 2.0, self.dx)


_LUMA = np.array([[0.2126, 0.7152, 0.0722]], np.float32)


def luma(rgb: np.ndarray) -> np.ndarray:
    """Rec. 709 luma of an sRGB image (H, W, 3) as float32 (H, W)."""
    rgb = np.ascontiguousarray(rgb, np.float32)
    h, w = rgb.shape[:2]
    # One OpenCV pass: numpy's three products and two sums cost twenty times as much on a megapixel.
    return cv2.transform(rgb.reshape(h, w, 3), _LUMA).reshape(h, w)


def phase_correlation(reference: np.ndarray, moving: np.ndarray) -> tuple[float, float, float]:
    """Translation (dx, dy) such that moving(x + d) ~ reference(x), and the peak's sharpness (0..1).

    Hann-windowed normalised cross-power spectrum; the peak is refined to sub-pixel by a 3x3 centroid.
    """
    h, w = reference.shape
    win = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    fa = np.fft.rfft2((reference - reference.mean()) * win)
    fb = np.fft.rfft2((moving - moving.mean()) * win)
    cross = fb * np.conj(fa)
    cross /= np.maximum(np.abs(cross), 1e-12)
    corr = np.fft.irfft2(cross, s=(h, w))
    peak = np.unravel_index(int(np.argmax(corr)), corr.shape)
    py, px = int(peak[0]), int(peak[1])
    ys = [(py + k) % h for k in (-1, 0, 1)]
    xs = [(px + k) % w for k in (-1, 0, 1)]
    patch = np.maximum(corr[np.ix_(ys, xs)], 0.0)
    total = float(patch.sum()) or 1.0
    oy = float((patch.sum(axis=1) * np.array([-1, 0, 1])).sum()) / total
    ox = float((patch.sum(axis=0) * np.array([-1, 0, 1])).sum()) / total
    dy = py + oy if py <= h // 2 else py + oy - h
    dx = px + ox if px <= w // 2 else px + ox - w
    return dx, dy, float(corr[py, px])


def _warp(image: np.ndarray, a: Alignment, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    h, w = image.shape[:2]
    out = cv2.warpAffine(
        image, a.matrix(w, h), (w, h), flags=interpolation | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )
    return out.reshape(image.shape)


def warp_image(image: np.ndarray, a: Alignment, interpolation: int = cv2.INTER_CUBIC) -> np.ndarray:
    """Resample ``image`` (H, W, C) so it lines up with the reference (bicubic unless told; identity returns a
    copy)."""
    if a.is_identity:
        return np.array(image, np.float32, copy=True)
    return _warp(np.asarray(image, np.float32), a, interpolation)


@functools.lru_cache(maxsize=16)
def _refine_samples(h: int, w: int, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed random pixels (rows, columns) _refine works on at a level of h x w, 3 % away from the border
    (drawn once per level size: every merge at the same size uses the same ones). Read-only: cached."""
    bm = max(2, int(0.03 * min(h, w)))
    rng = np.random.default_rng(0)
    n = min(samples, (h - 2 * bm) * (w - 2 * bm))
    ys = rng.integers(bm, h - bm, n)
    xs = rng.integers(bm, w - bm, n)
    ys.flags.writeable = False
    xs.flags.writeable = False
    return ys, xs


def _refine(
    ref: np.ndarray, mov: np.ndarray, a: Alignment, iterations: int, samples: int = 30000, tolerance: float = 1e-3
) -> Alignment:
    """Robust Lucas-Kanade on (dx, dy, scale, gain, offset) at one pyramid level.

    Works on a fixed random sample of pixels away from the border; the moving image and its gradients are
    sampled at the warped positions with ``cv2.remap`` instead of warping whole images. Stops when a step
    moves the motion by less than ``tolerance`` px of this level.
    """
    h, w = ref.shape
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    ys, xs = _refine_samples(h, w, samples)
    # Per-sample arithmetic and the normal equations' sums in float32 (half the memory traffic of float64; the
    # sums keep about 6 significant digits, far more than a step needs), the 5x5 solve in float64.
    xc, yc = (xs - cx).astype(np.float32), (ys - cy).astype(np.float32)
    r = ref[ys, xs].astype(np.float32)
    gxm = cv2.Sobel(mov, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8)
    gym = cv2.Sobel(mov, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8)
    ones = np.ones(r.size, np.float32)
    gain, offset = 1.0, 0.0
    for _ in range(iterations):
        m = a.matrix(w, h)
        mx = (m[0, 0] * xs + m[0, 2]).astype(np.float32).reshape(1, -1)
        my = (m[1, 1] * ys + m[1, 2]).astype(np.float32).reshape(1, -1)

        def sample(img, mx=mx, my=my):
            return cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(-1)

        warped, gx, gy = sample(mov), sample(gxm), sample(gym)
        gx *= np.float32(a.scale)
        gy *= np.float32(a.scale)
        resid = np.float32(gain) * warped + np.float32(offset) - r
        mad = _median(np.abs(resid)) * 1.4826 + 1e-4
        u = resid / np.float32(4.685 * mad)
        wts = np.where(np.abs(u) < 1, (1 - u * u) ** 2, np.float32(0.0))
        # ref ~ gain' * warped + offset' + gain * (gradient . motion change)
        # Parameter-major (5, N): numpy weights an (N, 5) array as N loops of 5, several times slower.
        g = np.float32(gain)
        jac = np.stack([g * gx, g * gy, g * (gx * xc + gy * yc), warped, ones])
        jw = jac * wts
        target = r - g * warped - np.float32(offset)
        try:
            delta = np.linalg.solve(
                (jw @ jac.T).astype(np.float64) + np.eye(5) * 1e-9, (jw @ target).astype(np.float64)
            )
        except np.linalg.LinAlgError:
            break
        a = Alignment(
            a.dx + float(delta[0]), a.dy + float(delta[1]), a.scale + float(delta[2]), a.ok, a.note, a.confidence
        )
        gain, offset = gain + float(delta[3]), offset + float(delta[4])
        if abs(delta[0]) < tolerance and abs(delta[1]) < tolerance and abs(delta[2]) * max(h, w) < tolerance:
            break
    return a


# The confidence is taken on a copy about this long (pixels): fine enough for a scene's structure, coarse enough
# that a re-render's new fine texture (fur, foliage, film grain) does not count against the match.
_CONFIDENCE_SIDE = 256
# Structure correlation below which the edit is not the original's picture moved: re-renders of the same scene
# measure 0.55-1.0 (a local edit and Kontext's re-rendered texture included), unrelated scenes and featureless
# images (a gradient with independent noise) 0.0-0.1.
MIN_CONFIDENCE = 0.3


def _band_pass(image: np.ndarray) -> np.ndarray:
    return image - cv2.GaussianBlur(image, (0, 0), 2.0)


def match_confidence(reference: np.ndarray, moving: np.ndarray, a: Alignment) -> float:
    """Normalised correlation of the band-passed lumas (H, W) once ``moving`` is warped by ``a``: how much of
    the reference's structure the aligned edit shows (about 1 for the same scene, about 0 for another scene or
    for images with no structure beyond noise). A 3 % border is left out (the warp makes it up)."""
    ref = _band_pass(reference)
    mov = _band_pass(_warp(moving, a) if not a.is_identity else moving)
    h, w = ref.shape
    b = max(1, int(0.03 * min(h, w)))
    ref, mov = ref[b : h - b, b : w - b], mov[b : h - b, b : w - b]
    denom = float(np.sqrt(float((ref * ref).sum()) * float((mov * mov).sum())))
    return float((ref * mov).sum()) / denom if denom > 1e-12 else 0.0


def _pyramid(image: np.ndarray, max_side: int) -> list[np.ndarray]:
    """Copies from coarse to fine, each half the next: the finest at most ``max_side`` px long (the image itself
    when it is at most a third longer: a fractional resize costs more than the extra pixels), the coarsest 64+
    px short. Halving is OpenCV's fast path; the one fractional step is bilinear (a ninth of an area average's
    cost on a 1392 px frame: 0.11 against 1.0 ms; the motion found on the insertion pair of
    bench/bench_realpairs.py moves by 0.02 px and its mask by 89 of 151 k pixels; the alignment takes 13 ms of CPU
    instead of 16)."""
    h, w = image.shape[:2]
    factor = min(1.0, max_side / max(h, w))
    level = (
        image
        if factor >= 0.75
        else cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_LINEAR)
    )
    levels = [level]
    while min(level.shape[:2]) // 2 >= 64 and len(levels) < 4:
        level = cv2.resize(level, (level.shape[1] // 2, level.shape[0] // 2), interpolation=cv2.INTER_AREA)
        levels.append(level)
    return levels[::-1]


def _refused(note: str, confidence: float) -> Alignment:
    return Alignment(ok=False, note=note, confidence=confidence)


# Lucas-Kanade steps at the finest level. Where the motion is well determined it stops earlier (a step under
# 1e-3 px); where it is not (an inserted object that takes a large share of the frame pulls the robust fit), the
# steps after the fifth move it by 0.02-0.03 level px each and cost 3 ms each on a megapixel pair (on the
# insertion pair of bench/bench_realpairs.py, stopping at 5 moves the motion by 0.14 px and the mask from 14.76
# to 14.95 % of the frame: neither motion is better determined than the other).
_FINEST_STEPS = 5
# Samples on the levels below the last two: they only bring the next level within its reach. The level before
# the finest keeps the full count: its motion decides whether the finest level is searched at all, and a noisier
# estimate there (a few hundredths of a px instead of none) would send identity pairs through the finest level.
_COARSE_SAMPLES = 10000


def estimate_alignment(reference: np.ndarray, moving: np.ndarray, max_side: int = 1024) -> Alignment:
    """Global shift and scale taking ``moving`` onto ``reference`` (both sRGB (H, W, 3), same size).

    Works on luma, on a pyramid whose finest copy is at most ``max_side`` pixels on its long side (a third
    more is taken as it is); the returned shift is in the input's pixels. The result carries a ``confidence``
    (match_confidence on the pyramid level nearest 256 px long); below MIN_CONFIDENCE the motion is refused
    (``ok`` False), unless the images match unmoved, and the finer levels are not searched at all (an unrelated
    scene is where the search works hardest for nothing).
    """
    h, w = reference.shape[:2]
    if min(h, w) < MIN_ALIGN_SIDE:
        return _refused(f"image smaller than {MIN_ALIGN_SIDE} px: alignment skipped", float("nan"))
    refs, movs = _pyramid(luma(reference), max_side), _pyramid(luma(moving), max_side)
    factors = [lvl.shape[1] / w for lvl in refs]
    # The confidence level: the finest no longer than about _CONFIDENCE_SIDE (the coarsest if none is).
    conf_i = max([i for i, lvl in enumerate(refs) if max(lvl.shape) <= 1.5 * _CONFIDENCE_SIDE] or [0])
    dx, dy, _peak = phase_correlation(refs[0], movs[0])
    a = Alignment(dx / factors[0], dy / factors[0])
    for i, f in enumerate(factors):
        if i == len(factors) - 1 and i > max(conf_i, 1) and a.corner_motion(w, h) < NEGLIGIBLE_MOTION_PX:
            break  # the level below found no motion worth resampling for: the finest would not find one either
        # Coarser levels only need to bring the next one within its reach: 0.02 px there is refined anyway.
        finest = i == len(factors) - 1
        a = _refine(
            refs[i],
            movs[i],
            a.scaled(f),
            iterations=_FINEST_STEPS if finest else 10,
            samples=30000 if i >= len(factors) - 2 else _COARSE_SAMPLES,
            tolerance=1e-3 if finest else 2e-2,
        ).scaled(1 / f)
        if i == conf_i:
            a = _checked(refs[i], movs[i], a, f)
            if not a.ok or a.note:
                return a
    if a.corner_motion(w, h) < NEGLIGIBLE_MOTION_PX:
        # Resampling by a few hundredths of a pixel changes nothing a ΔE threshold sees, and costs warps.
        a = Alignment(confidence=a.confidence)
    if not (abs(a.scale - 1) < 0.2 and abs(a.dx) < w / 4 and abs(a.dy) < h / 4) or not np.isfinite(
        a.dx + a.dy + a.scale
    ):
        return _refused("no reliable global motion found: alignment skipped", a.confidence)
    a.note = f"shift ({a.dx:+.2f}, {a.dy:+.2f}) px, scale {a.scale:.4f}, match {a.confidence:.2f}"
    return a


def _checked(ref_c: np.ndarray, mov_c: np.ndarray, a: Alignment, fc: float) -> Alignment:
    """``a`` with its confidence; the identity (with a note) when the images match better unmoved, or a
    refusal (``ok`` False) when neither matches."""
    moved = match_confidence(ref_c, mov_c, a.scaled(fc)) if np.isfinite(a.dx + a.dy + a.scale) else 0.0
    still = match_confidence(ref_c, mov_c, Alignment()) if not a.is_identity else moved
    if max(moved, still) < MIN_CONFIDENCE:
        return _refused(
            f"the edit's structure does not match the original's (match {max(moved, still):.2f} < "
            f"{MIN_CONFIDENCE}: another scene, or no structure to align on): alignment refused",
            max(moved, still),
        )
    if moved < MIN_CONFIDENCE:  # the motion found is nonsense, but the images match unmoved
        return Alignment(confidence=still, note=f"no motion found (match {still:.2f} unmoved, {moved:.2f} moved)")
    return Alignment(a.dx, a.dy, a.scale, True, "", moved)


@dataclass
class ColorTransform:
    """linear_out = matrix @ linear_in + offset, fitted from the edit to the original.

    ``note`` says why no correction is applied when the fit was rejected (the transform is then the identity).
    """

    matrix: np.ndarray
    offset: np.ndarray
    note: str = ""

    @classmethod
    def identity(cls, note: str = "") -> ColorTransform:
        return cls(np.eye(3), np.zeros(3), note)

    @property
    def is_identity(self) -> bool:
        return bool(np.allclose(self.matrix, np.eye(3), atol=1e-4) and np.allclose(self.offset, 0, atol=1e-4))

    def apply(self, srgb: np.ndarray) -> np.ndarray:
        """Apply to an sRGB image (values clipped to 0..1 afterwards)."""
        lin = srgb_to_linear(np.asarray(srgb, np.float32))
        affine = np.hstack([self.matrix, self.offset[:, None]]).astype(np.float32)
        out = cv2.transform(lin.reshape(-1, 1, 3), affine).reshape(lin.shape)
        return np.clip(linear_to_srgb(out), 0.0, 1.0).astype(np.float32)

    def apply_inverse(self, srgb: np.ndarray) -> np.ndarray:
        """The drift itself, applied to the reference: predicts the moving image, clipping included (a
        brightened re-render clips highlights the reference still resolves; undoing the drift on the moving
        image cannot bring that detail back, predicting it from the reference loses the same detail)."""
        lin = srgb_to_linear(np.asarray(srgb, np.float32))
        inv = np.linalg.inv(self.matrix)
        affine = np.hstack([inv, (-inv @ self.offset)[:, None]]).astype(np.float32)
        out = cv2.transform(lin.reshape(-1, 1, 3), affine).reshape(lin.shape)
        return linear_to_srgb(np.clip(out, 0.0, 1.0)).astype(np.float32)


# A re-render's colour drift is a white-balance/exposure cast: per-channel gains near 1 and small offsets.
# Anything outside these bounds is not drift but a fit that latched onto the edit (or an edit of most of
# the frame), and correcting with it would do more harm than not correcting.
GAIN_RANGE = (0.5, 2.0)
MAX_OFFSET = 0.1  # linear RGB
MIN_INLIERS = 0.3  # fraction of the sampled pixels that must agree with the fitted drift
_TUKEY_C = 4.685


def _tukey(resid: np.ndarray, scale: float) -> np.ndarray:
    u = resid / (_TUKEY_C * scale)
    return np.where(u < 1, (1 - u * u) ** 2, 0.0)


def _tukey_loss(resid: np.ndarray, scale: float) -> float:
    """Tukey's biweight objective (each pixel costs 0..1): what the reweighting minimises."""
    u2 = np.minimum((resid / (_TUKEY_C * scale)) ** 2, 1.0)
    return float((1.0 - (1.0 - u2) ** 3).sum())


def _median(values: np.ndarray) -> float:
    """np.median of a 1-D array, the same value, from one partition (np.median costs several times more)."""
    n = values.size
    half = n // 2
    part = np.partition(values, half)
    if n % 2:
        return float(part[half])
    return float(np.mean([part[:half].max(), part[half]]))


# The drift fit works on channel-major (3, N) samples: numpy runs an (N, 3) array's per-channel arithmetic as
# N loops of 3, several times slower than 3 loops of N.
def _column(v) -> np.ndarray | float:
    return np.asarray(v, np.float64).reshape(3, 1) if np.ndim(v) else v


def _residual(ref: np.ndarray, mov: np.ndarray, g, o) -> np.ndarray:
    """Per sample: the norm of ``g * mov + o - ref`` over the channels ((3, N) arrays)."""
    d = _column(g) * mov
    d += _column(o)
    d -= ref
    d *= d
    return np.sqrt(d[0] + d[1] + d[2])


def _robust_start(ref: np.ndarray, mov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel median ratio on pixels bright enough for a stable ratio, then median offset (breakdown 50%)."""
    gain = np.ones(3)
    for c in range(3):
        lit = mov[c] > 0.02
        if lit.sum() >= 16:
            gain[c] = _median(ref[c, lit] / mov[c, lit])
    gain = np.clip(gain, *GAIN_RANGE)
    offsets = ref - _column(gain) * mov
    return gain, np.array([_median(row) for row in offsets])


def _reweighted_fit(ref: np.ndarray, mov: np.ndarray, gain: np.ndarray, offset: np.ndarray):
    """Tukey-reweighted least squares for per-channel (gain, offset): -> (gain, offset, resid, scale, weights)."""
    resid = _residual(ref, mov, gain, offset)
    # The noise scale is fixed from the start (median residual of the better of start and identity), so a
    # shrinking scale cannot talk the fit into ever fewer inliers; 1e-4 floors it for noiseless inputs.
    scale = max(min(_median(resid), _median(_residual(ref, mov, 1.0, 0.0))) * 1.4826, 1e-4)
    wts = _tukey(resid, scale)
    for _ in range(10):
        sw = wts.sum()
        if sw < 16:
            break
        # Weighted least squares per channel for (gain, offset): closed-form 2x2 normal equations.
        mx = (mov @ wts) / sw
        my = (ref @ wts) / sw
        dx, dy = mov - mx[:, None], ref - my[:, None]
        var = (dx * dx) @ wts
        new_gain = np.where(var > 1e-12, ((dx * dy) @ wts) / np.maximum(var, 1e-12), 1.0)
        new_offset = my - new_gain * mx
        done = np.abs(new_gain - gain).max() < 1e-5 and np.abs(new_offset - offset).max() < 1e-6
        gain, offset = new_gain, new_offset
        resid = _residual(ref, mov, gain, offset)
        wts = _tukey(resid, scale)
        if done:
            break
    return gain, offset, resid, scale, wts


def _implausible(ref, mov, gain, offset, resid, scale, wts) -> str:
    """Why the fitted drift is not a drift ("" when it is plausible)."""
    inliers = float((wts > 0).mean())
    if not np.all(np.isfinite(gain)) or not np.all(np.isfinite(offset)):
        return "not finite"
    if gain.min() < GAIN_RANGE[0] or gain.max() > GAIN_RANGE[1]:
        return "gains " + ", ".join(f"{g:.3f}" for g in gain) + f" outside {GAIN_RANGE[0]}..{GAIN_RANGE[1]}"
    if np.abs(offset).max() > MAX_OFFSET:
        return "offsets " + ", ".join(f"{o:+.3f}" for o in offset) + " too large"
    if inliers < MIN_INLIERS:
        return f"only {100 * inliers:.0f}% of the pixels agree with it"
    # Compared on the robust objective: when more pixels agree with "no drift" than with the fit (an edit
    # covering most of the frame), the fit is explaining the edit, not a drift.
    if _tukey_loss(resid, scale) > _tukey_loss(_residual(ref, mov, 1.0, 0.0), scale):
        return "fewer pixels agree with it than with no correction"
    return ""


def fit_color_drift(reference: np.ndarray, moving: np.ndarray, samples: int = 20000, seed: int = 0) -> ColorTransform:
    """Robust per-channel gain and offset in linear RGB taking ``moving`` to ``reference``.

    The model is deliberately diagonal (6 parameters): a full 3x3 matrix has enough freedom to explain a
    recoloured region (a channel permutation is a 3x3 matrix), and when that region is large the fit maps the
    edit back onto the original instead of undoing the drift. The fit starts from a robust estimate (median
    ratio and median offset per channel, breakdown 50%), then iteratively reweights with Tukey's biweight on
    the pixels' residual norm, so pixels the edit changed get zero weight. Clipped pixels are left out (they
    do not follow a gain). An implausible result (gains outside ``GAIN_RANGE``, large offsets, too few
    agreeing pixels, or no better than no correction) gives the identity with a ``note`` saying why.
    Both images are sRGB (H, W, 3) of the same size.
    """
    ref, mov = sample_pixels(reference, samples, seed), sample_pixels(moving, samples, seed)
    unclipped = ((ref > 0.002) & (ref < 0.998) & (mov > 0.002) & (mov < 0.998)).all(axis=1)
    if unclipped.sum() < 16:
        return ColorTransform.identity("colour drift not fitted: too few unclipped pixels")
    ref = np.ascontiguousarray(srgb_to_linear(ref[unclipped]).T, np.float64)
    mov = np.ascontiguousarray(srgb_to_linear(mov[unclipped]).T, np.float64)
    gain, offset = _robust_start(ref, mov)
    gain, offset, resid, scale, wts = _reweighted_fit(ref, mov, gain, offset)
    problem = _implausible(ref, mov, gain, offset, resid, scale, wts)
    if problem:
        return ColorTransform.identity(f"colour drift fit rejected ({problem}): no colour correction applied")
    return ColorTransform(np.diag(gain), offset)


MAX_CURVE_CORRECTION = 0.08  # sRGB units: a tone curve moving a value further is fitting an edit, not a drift
_CURVE_BINS = 48
_CURVE_MIN_COUNT = 40
_MEDIAN_LEVELS = 4096


@dataclass
class ToneCurves:
    """Per-channel monotone curves on sRGB values (``knots`` -> ``values[c]``), the drift left after the linear
    gain/offset: clipping of highlights and shadows and a gamma change, which a gain in linear light cannot
    express."""

    knots: np.ndarray
    values: np.ndarray  # (3, len(knots))

    @property
    def is_identity(self) -> bool:
        return bool(np.abs(self.values - self.knots[None]).max() < 1e-4)

    def apply(self, srgb: np.ndarray) -> np.ndarray:
        """The curves applied to an sRGB image (H, W, 3) of any size; values are clipped to 0..1 first."""
        levels = _eight_bit_levels(srgb)
        if levels is not None:  # an 8-bit picture: its 256 values looked up, the same numbers at a third of the cost
            return cv2.LUT(levels, self._table_8bit).reshape(srgb.shape[:2] + (3,))
        return self._interpolate(srgb)

    def _interpolate(self, srgb: np.ndarray) -> np.ndarray:
        n = len(self.knots) - 1
        h, w = srgb.shape[:2]
        if max(h, 3 * w) > _REMAP_MAX and h * w >= _REMAP_ROW:
            # A column of sampled pixels (or an image wider than remap takes): the same per-pixel lookup on the
            # pixels laid out in rows remap takes, the last one padded.
            flat = np.asarray(srgb, np.float32).reshape(-1, 3)
            rows = -(-flat.shape[0] // _REMAP_ROW)
            grid = np.zeros((rows * _REMAP_ROW, 3), np.float32)
            grid[: flat.shape[0]] = flat
            out = self._interpolate(grid.reshape(rows, _REMAP_ROW, 3)).reshape(-1, 3)[: flat.shape[0]]
            return out.reshape(h, w, 3)
        if max(h, 3 * w) <= _REMAP_MAX:
            # One remap for all channels: the pixels' channels side by side in one row, each read from its own
            # curve (row c of the table; whole rows, so the vertical interpolation is exact).
            pos = np.clip(srgb, 0.0, 1.0, dtype=np.float32).reshape(h, 3 * w)
            pos *= np.float32(n)
            lut = self.values.astype(np.float32)
            out = cv2.remap(lut, pos, _channel_rows(h, w), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            return out.reshape(h, w, 3)
        out = np.empty(srgb.shape[:2] + (3,), np.float32)
        for c in range(3):
            lut = self.values[c].astype(np.float32)[None, :]
            out[..., c] = _lookup(lut, np.clip(srgb[..., c], 0.0, 1.0) * np.float32(n))
        return out

    @functools.cached_property
    def _table_8bit(self) -> np.ndarray:
        """The curves at the 256 values k / 255, interpolated as any other pixel (the lookup gives the same
        numbers)."""
        values = np.arange(256, dtype=np.float32) / 255.0
        return np.ascontiguousarray(self._interpolate(np.repeat(values[None, :, None], 3, axis=2)))


def _eight_bit_levels(srgb: np.ndarray) -> np.ndarray | None:
    """The image's values as 8-bit levels when every value is exactly k / 255 in float32 (a PNG or JPEG as
    ComfyUI and cv2 load it: uint8 / 255), else None. A first row that is not 8-bit ends the check early."""
    rgb = srgb if srgb.dtype == np.float32 else None
    # OpenCV takes a crop of a larger image as it is (rows apart, each row's pixels packed).
    if rgb is None or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size < 3 * 256 or rgb.strides[1:] != (12, 4):
        return None
    for part in (rgb[:1], rgb):
        levels = cv2.convertScaleAbs(part, alpha=255.0)  # rounded and saturated; exact for k / 255
        back = levels.astype(np.float32)
        back /= 255.0
        if not np.array_equal(back, part):
            return None
    return levels


_REMAP_MAX = 32766  # cv2.remap takes maps and tables with fewer than 32767 rows and columns
_REMAP_ROW = 8192  # pixels per row when ToneCurves.apply lays out a long column of pixels
_LOOKUP_WIDTH = 4096


@functools.lru_cache(maxsize=4)
def _channel_rows(h: int, w: int) -> np.ndarray:
    """The remap rows (0, 1, 2, 0, 1, 2, ...) that send each interleaved channel to its own curve."""
    rows = np.broadcast_to(np.arange(3, dtype=np.float32), (h, w, 3)).reshape(h, 3 * w)
    return np.ascontiguousarray(rows)


def _lookup(lut: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``lut`` (1, K) read at fractional positions ``pos`` (2-D) with linear interpolation. Uniform knots make
    this a one-row ``cv2.remap`` (multithreaded, unlike np.interp); positions on a grid remap does not take
    (a side of 32767 or more, such as a long list of sampled pixels) go through in blocks it takes."""
    if pos.ndim == 2 and max(pos.shape) <= _REMAP_MAX:
        zero = np.zeros(pos.shape, np.float32)
        return cv2.remap(lut, pos, zero, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    flat = pos.reshape(-1)
    rows = -(-flat.size // _LOOKUP_WIDTH)
    grid = np.zeros(rows * _LOOKUP_WIDTH, np.float32)
    grid[: flat.size] = flat
    grid = grid.reshape(rows, _LOOKUP_WIDTH)
    out = np.empty_like(grid)
    for r0 in range(0, rows, _REMAP_MAX):
        block = grid[r0 : r0 + _REMAP_MAX]
        zero = np.zeros(block.shape, np.float32)
        out[r0 : r0 + _REMAP_MAX] = cv2.remap(lut, block, zero, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1)[: flat.size].reshape(pos.shape)


def _bin_medians(mov: np.ndarray, ref: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Per bin of ``mov`` values (0..1 in ``n_bins`` uniform bins): the median ``ref`` value, and the count.

    From a joint histogram with ``_MEDIAN_LEVELS`` levels of ``ref`` (interpolated within the level that holds
    the middle sample): one bincount instead of sorting every bin, within one level of the exact median."""
    bins = np.clip((mov * (n_bins - 1)).round().astype(np.int64), 0, n_bins - 1)
    lo, hi = float(ref.min()), float(ref.max())
    span = max(hi - lo, 1e-12)
    levels = np.clip(((ref - lo) * (_MEDIAN_LEVELS / span)).astype(np.int64), 0, _MEDIAN_LEVELS - 1)
    joint = np.bincount(bins * _MEDIAN_LEVELS + levels, minlength=n_bins * _MEDIAN_LEVELS)
    joint = joint.reshape(n_bins, _MEDIAN_LEVELS)
    counts = joint.sum(axis=1)
    cum = np.cumsum(joint, axis=1)
    half = counts / 2.0
    level = np.minimum((cum < half[:, None]).sum(axis=1), _MEDIAN_LEVELS - 1)
    below = np.where(level > 0, cum[np.arange(n_bins), level - 1], 0)
    inside = np.maximum(joint[np.arange(n_bins), level], 1)
    medians = lo + (level + (half - below) / inside) * (span / _MEDIAN_LEVELS)
    return medians, counts


def _channel_curve(mov: np.ndarray, ref: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Median reference value per bin of moving values (robust: an edit is a minority of most bins), bins with
    too few samples filled by interpolation, made monotone and held within MAX_CURVE_CORRECTION of identity."""
    medians, counts = _bin_medians(mov, ref, len(knots))
    have = counts >= _CURVE_MIN_COUNT
    if have.sum() < 2:
        return knots.copy()
    delta = np.interp(knots, knots[have], medians[have] - knots[have])
    curve = knots + np.clip(delta, -MAX_CURVE_CORRECTION, MAX_CURVE_CORRECTION)
    return np.maximum.accumulate(curve)


@functools.lru_cache(maxsize=8)
def _sample_index(pixels: int, samples: int, seed: int) -> np.ndarray:
    """The pixel indices ``sample_pixels`` draws (one merge draws the same ones six times). Read-only: cached."""
    # Sorted: reading the pixels in memory order costs a fraction of random order (the fits below are
    # statistics of the sample, which do not depend on its order).
    idx = np.sort(np.random.default_rng(seed).integers(0, pixels, samples))
    idx.flags.writeable = False
    return idx


def sample_pixels(image: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """(N, 3) colours of ``samples`` pixels drawn with ``seed`` (all pixels when there are fewer). The same
    seed and pixel count draw the same pixels, so two aligned images can be sampled alike."""
    flat = np.asarray(image, np.float32).reshape(-1, 3)
    if flat.shape[0] <= samples:
        return flat
    return np.take(
        flat, _sample_index(flat.shape[0], samples, seed), axis=0
    )  # np.take: several times faster than fancy indexing on (N, 3)


def fit_tone_curves(reference: np.ndarray, moving: np.ndarray, samples: int = 200000, seed: int = 1) -> ToneCurves:
    """Per-channel curves taking ``moving``'s sRGB values to ``reference``'s (both (H, W, 3), aligned)."""
    ref, mov = sample_pixels(reference, samples, seed), sample_pixels(moving, samples, seed)
    # Only pixels already close after the linear fit: a recoloured region must not bend the curves toward it.
    ref, mov = np.ascontiguousarray(ref.T), np.ascontiguousarray(mov.T)  # channel-major: see _column
    near = np.abs(ref - mov) < MAX_CURVE_CORRECTION
    close = near[0] & near[1] & near[2]
    ref, mov = np.compress(close, ref, axis=1), np.compress(close, mov, axis=1)  # a mask on axis 1 is slow
    knots = np.linspace(0.0, 1.0, _CURVE_BINS + 1)
    values = np.stack([_channel_curve(mov[c], ref[c], knots) for c in range(3)])
    return ToneCurves(knots, values)


def drift_prediction(color_fix: ColorTransform, curves: ToneCurves | None, size: int = 16384) -> ToneCurves:
    """``curves.apply(color_fix.apply_inverse(x))`` as one per-channel lookup of ``size`` steps: the colour
    fit is diagonal, so the whole prediction is a function of each channel alone, and one lookup replaces the
    per-pixel transfer curves. OpenCV's remap resolves 1/32 of a step, so 16384 steps keep it within about
    2e-5 of the direct evaluation (remap also takes tables below 32767 entries only)."""
    if not np.allclose(color_fix.matrix, np.diag(np.diag(color_fix.matrix))):
        raise ValueError("drift_prediction needs a diagonal colour transform")
    knots = np.linspace(0.0, 1.0, size + 1)
    grid = np.repeat(knots.astype(np.float32)[:, None, None], 3, axis=2)
    predicted = color_fix.apply_inverse(grid) if not color_fix.is_identity else grid
    if curves is not None and not curves.is_identity:
        predicted = curves.apply(predicted)
    return ToneCurves(knots, predicted[:, 0, :].T.astype(np.float64))
