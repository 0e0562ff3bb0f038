"""Colour science in float: sRGB <-> linear sRGB <-> CIE XYZ (D65) <-> CIELAB, and colour differences.

Everything works on numpy arrays whose last axis holds the three channels, in float32 (float64 input stays
float64). sRGB values are in 0..1, Lab in its usual units (L 0..100). Nothing here quantises to 8 bits: the
anchor diff-merge differences OpenCV's uint8 Lab, which rounds away exactly the small drifts we need to see.
"""

from __future__ import annotations

import cv2
import numpy as np

# IEC 61966-2-1 sRGB primaries with the D65 white (the matrix everyone derives from the primaries' chromaticities).
RGB_TO_XYZ = np.array(
    [
        [0.4123907992659595, 0.3575843393838780, 0.1804807884018343],
        [0.2126390058715104, 0.7151686787677559, 0.0721923153607337],
        [0.0193308187155918, 0.1191947797946259, 0.9505321522496606],
    ]
)
XYZ_TO_RGB = np.linalg.inv(RGB_TO_XYZ)
# The D65 white point is the XYZ of linear (1, 1, 1), so white maps to exactly L=100, a=b=0.
D65_WHITE = RGB_TO_XYZ.sum(axis=1)

_EPSILON = 216.0 / 24389.0  # (6/29)^3: where CIELAB's cube root becomes a straight line
_KAPPA = 24389.0 / 27.0

DELTA_E_FORMULAS = ("ciede2000", "cie76")


def _float(x) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == np.float64:
        return arr
    return arr.astype(np.float32, copy=False)


def _pow_positive_(out: np.ndarray, exponent: float) -> np.ndarray:
    """``out ** exponent`` for values > 0, in place when ``out`` is C-contiguous, as exp(exponent * log x):
    OpenCV's vectorised exp and log cost a third of its pow or numpy's power on a megapixel (error ~1e-6)."""
    out = np.ascontiguousarray(out)
    if out.size == 0:
        return out
    flat = out.reshape(-1, 1)
    cv2.log(flat, flat)
    flat *= exponent
    cv2.exp(flat, flat)
    return out


def _check_channels(arr: np.ndarray, what: str) -> None:
    if arr.shape[-1:] != (3,):
        raise ValueError(f"{what} needs a last axis of 3 channels, got shape {arr.shape}")


def srgb_to_linear(rgb) -> np.ndarray:
    """Undo the sRGB transfer curve (piecewise: linear toe, 2.4 power above 0.04045)."""
    c = _float(rgb)
    out = np.maximum(c, 0.04045)
    out += 0.055
    out /= 1.055
    out = _pow_positive_(out, 2.4)
    # The toe is absent from most photographs and holds half the pixels of a dark one: computed only when present,
    # then written by one masked copy (boolean indexing costs ten times more when many pixels are in it).
    low = c <= 0.04045
    if low.any():
        np.divide(c, 12.92, out=out, where=low)
    return out


def linear_to_srgb(lin) -> np.ndarray:
    """Apply the sRGB transfer curve; values outside 0..1 are extended symmetrically rather than clipped."""
    c = _float(lin)
    mag = np.abs(c)
    out = _pow_positive_(np.maximum(mag, 0.0031308), 1.0 / 2.4)
    out *= 1.055
    out -= 0.055
    low = mag <= 0.0031308  # the linear toe, as in srgb_to_linear
    if low.any():
        np.copyto(out, mag * 12.92, where=low)
    negative = c < 0
    if negative.any():
        out[negative] *= -1.0
    return out


def _apply_matrix(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    m = matrix.astype(x.dtype)
    # Channel-by-channel sums: faster than matmul on large images and keeps the dtype.
    return np.stack([x[..., 0] * m[i, 0] + x[..., 1] * m[i, 1] + x[..., 2] * m[i, 2] for i in range(3)], axis=-1)


def linear_to_xyz(lin) -> np.ndarray:
    c = _float(lin)
    _check_channels(c, "linear RGB")
    return _apply_matrix(c, RGB_TO_XYZ)


def xyz_to_linear(xyz) -> np.ndarray:
    c = _float(xyz)
    _check_channels(c, "XYZ")
    return _apply_matrix(c, XYZ_TO_RGB)


def _f(t: np.ndarray) -> np.ndarray:
    out = np.maximum(t, _EPSILON)
    np.cbrt(out, out=out)  # numpy's SIMD cube root: faster than any pow
    # The straight-line part near black is the cube root's tangent at epsilon, so it lies above the (concave)
    # cube root everywhere: below epsilon, where the cube root is held at its value at epsilon, the line is the
    # smaller of the two, and above it the cube root is. One minimum instead of a mask and a masked copy.
    line = t * _KAPPA
    line += 16.0
    line /= 116.0
    return np.minimum(out, line, out=out)


def _f_inv(f: np.ndarray) -> np.ndarray:
    f3 = f * f * f
    return np.where(f3 > _EPSILON, f3, (116.0 * f - 16.0) / _KAPPA).astype(f.dtype)


def xyz_to_lab(xyz) -> np.ndarray:
    c = _float(xyz)
    _check_channels(c, "XYZ")
    white = D65_WHITE.astype(c.dtype)
    fx, fy, fz = (_f(c[..., i] / white[i]) for i in range(3))
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1).astype(c.dtype)


def lab_to_xyz(lab) -> np.ndarray:
    c = _float(lab)
    _check_channels(c, "Lab")
    white = D65_WHITE.astype(c.dtype)
    fy = (c[..., 0] + 16.0) / 116.0
    fx = fy + c[..., 1] / 500.0
    fz = fy - c[..., 2] / 200.0
    return np.stack([_f_inv(fx) * white[0], _f_inv(fy) * white[1], _f_inv(fz) * white[2]], axis=-1).astype(c.dtype)


# srgb_to_lab's two linear steps as 3x3 (+ offset) matrices for cv2.transform: linear RGB -> XYZ / white, and
# f(X/Xn), f(Y/Yn), f(Z/Zn) -> L, a, b.
_RGB_TO_XYZ_WHITE = RGB_TO_XYZ / D65_WHITE[:, None]
_F_TO_LAB = np.array([[0.0, 116.0, 0.0, -16.0], [500.0, -500.0, 0.0, 0.0], [0.0, 200.0, -200.0, 0.0]])


def srgb_to_lab(rgb) -> np.ndarray:
    """sRGB in 0..1 (..., 3) -> CIELAB (D65) in float."""
    c = _float(rgb)
    _check_channels(c, "sRGB")
    if c.size == 0:
        return c.copy()
    # Same maths as xyz_to_lab(linear_to_xyz(...)), with both matrix products done by OpenCV in one pass each.
    flat = np.ascontiguousarray(srgb_to_linear(c)).reshape(-1, 1, 3)
    t = cv2.transform(flat, _RGB_TO_XYZ_WHITE.astype(c.dtype))
    lab = cv2.transform(_f(t), _F_TO_LAB.astype(c.dtype))
    return lab.reshape(c.shape)


def lab_to_srgb(lab) -> np.ndarray:
    """CIELAB (D65) -> sRGB (not clipped: out-of-gamut colours come back outside 0..1)."""
    return linear_to_srgb(xyz_to_linear(lab_to_xyz(lab)))


def delta_e_cie76(lab1, lab2) -> np.ndarray:
    """Euclidean distance in CIELAB (CIE 1976)."""
    a, b = _float(lab1), _float(lab2)
    d = a - b
    return np.sqrt(d[..., 0] ** 2 + d[..., 1] ** 2 + d[..., 2] ** 2)


# numpy's hypot, float modulo and power by 7 cost 5-10 ns a value, ten times its products and square roots:
# CIEDE2000 on a megapixel spent half its time in them.
def _norm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(a * a + b * b)


def _pow7(x: np.ndarray) -> np.ndarray:
    x2 = x * x
    return x2 * x2 * x2 * x


def _hue_degrees(b: np.ndarray, a: np.ndarray) -> np.ndarray:
    """atan2(b, a) in degrees on 0..360 (``% 360`` for atan2's -180..180 is adding 360 to the negatives)."""
    h = np.degrees(np.arctan2(b, a))
    return np.where(h < 0, h + 360.0, h)


def delta_e_ciede2000(lab1, lab2, k_l: float = 1.0, k_c: float = 1.0, k_h: float = 1.0) -> np.ndarray:
    """CIEDE2000 colour difference (CIE 142-2001), vectorised; matches Sharma, Wu & Dalal's test data."""
    a, b = np.broadcast_arrays(_float(lab1), _float(lab2))
    dtype = np.result_type(a.dtype, b.dtype)
    a, b = a.astype(dtype, copy=False), b.astype(dtype, copy=False)
    l1, a1, b1 = a[..., 0], a[..., 1], a[..., 2]
    l2, a2, b2 = b[..., 0], b[..., 1], b[..., 2]

    c_bar = 0.5 * (_norm(a1, b1) + _norm(a2, b2))
    c_bar7 = _pow7(c_bar)
    g = 0.5 * (1.0 - np.sqrt(c_bar7 / (c_bar7 + 25.0**7)))
    a1p, a2p = a1 * (1.0 + g), a2 * (1.0 + g)
    c1p, c2p = _norm(a1p, b1), _norm(a2p, b2)
    h1p, h2p = _hue_degrees(b1, a1p), _hue_degrees(b2, a2p)
    h1p = np.where(c1p == 0, 0.0, h1p)
    h2p = np.where(c2p == 0, 0.0, h2p)

    d_lp = l2 - l1
    d_cp = c2p - c1p
    zero_chroma = (c1p * c2p) == 0
    dh = h2p - h1p
    dh = np.where(dh > 180.0, dh - 360.0, np.where(dh < -180.0, dh + 360.0, dh))
    dh = np.where(zero_chroma, 0.0, dh)
    d_hp = 2.0 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh) / 2.0)

    l_bar = 0.5 * (l1 + l2)
    c_barp = 0.5 * (c1p + c2p)
    h_sum = h1p + h2p
    h_bar = np.where(
        np.abs(h1p - h2p) <= 180.0, 0.5 * h_sum, np.where(h_sum < 360.0, 0.5 * (h_sum + 360.0), 0.5 * (h_sum - 360.0))
    )
    h_bar = np.where(zero_chroma, h_sum, h_bar)
    t = (
        1.0
        - 0.17 * np.cos(np.radians(h_bar - 30.0))
        + 0.24 * np.cos(np.radians(2.0 * h_bar))
        + 0.32 * np.cos(np.radians(3.0 * h_bar + 6.0))
        - 0.20 * np.cos(np.radians(4.0 * h_bar - 63.0))
    )
    d_theta = 30.0 * np.exp(-(((h_bar - 275.0) / 25.0) ** 2))
    c_barp7 = _pow7(c_barp)
    r_c = 2.0 * np.sqrt(c_barp7 / (c_barp7 + 25.0**7))
    l50 = (l_bar - 50.0) ** 2
    s_l = 1.0 + 0.015 * l50 / np.sqrt(20.0 + l50)
    s_c = 1.0 + 0.045 * c_barp
    s_h = 1.0 + 0.015 * c_barp * t
    r_t = -np.sin(np.radians(2.0 * d_theta)) * r_c
    tl, tc, th = d_lp / (k_l * s_l), d_cp / (k_c * s_c), d_hp / (k_h * s_h)
    return np.sqrt(np.maximum(tl**2 + tc**2 + th**2 + r_t * tc * th, 0.0)).astype(dtype, copy=False)


# The range of CIEDE2000's hue weighting T(h) = 1 - 0.17 cos(h - 30) + ... over all hues is about 0.362..1.572;
# its minimum taken a little low, so that rounding never moves the upper bound below the exact value.
_T_MIN = 0.36
_25_POW_7 = 25.0**7


def ciede2000_bounds(lab1: np.ndarray, lab2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of CIEDE2000, (N, 3) Lab pairs -> (N,), (N,), without any hue angle (no atan2,
    no cosines: a third of the formula's cost).

    With x = ΔC'/S_C and y = ΔH'/S_H, CIEDE2000^2 = (ΔL'/S_L)^2 + x^2 + y^2 + R_T x y. ΔC'^2 + ΔH'^2 is exactly
    D^2 = |z1' - z2'|^2 with z' = (a (1 + G), b), as ΔH' is the chord 2 sqrt(C1' C2') sin(Δh'/2); |R_T| <= R_C;
    and 1 <= S_H <= S_C (T <= 1.58, so 0.015 T < 0.045), with S_H >= 1 + 0.015 C̄' T_min. So the chroma-hue part
    lies between (1 - R_C/2) D^2 / S_C^2 and (1 + R_C/2) D^2 / S_H,min^2.
    """
    l1, a1, b1 = lab1[:, 0], lab1[:, 1], lab1[:, 2]
    l2, a2, b2 = lab2[:, 0], lab2[:, 1], lab2[:, 2]
    c_bar = 0.5 * (_norm(a1, b1) + _norm(a2, b2))
    c7 = _pow7(c_bar)
    stretch = 1.5 - 0.5 * np.sqrt(c7 / (c7 + _25_POW_7))  # 1 + G
    a1p, a2p = a1 * stretch, a2 * stretch
    cp_bar = 0.5 * (_norm(a1p, b1) + _norm(a2p, b2))
    cp7 = _pow7(cp_bar)
    half_rc = np.sqrt(cp7 / (cp7 + _25_POW_7))  # R_C / 2
    da, db = a1p - a2p, b1 - b2
    d2 = da * da + db * db
    l50 = 0.5 * (l1 + l2) - 50.0
    l50 *= l50
    s_l = 1.0 + 0.015 * l50 / np.sqrt(20.0 + l50)
    dl = (l2 - l1) / s_l
    dl *= dl
    s_c = 1.0 + 0.045 * cp_bar
    s_h = 1.0 + (0.015 * _T_MIN) * cp_bar
    low = np.sqrt(dl + (1.0 - half_rc) * d2 / (s_c * s_c))
    high = np.sqrt(dl + (1.0 + half_rc) * d2 / (s_h * s_h))
    return low, high


def delta_e(lab1, lab2, formula: str = "ciede2000") -> np.ndarray:
    """Colour difference by name: ``"ciede2000"`` (perceptual, default) or ``"cie76"`` (plain Euclidean)."""
    key = formula.lower().replace("-", "").replace(" ", "")
    if key == "ciede2000":
        return delta_e_ciede2000(lab1, lab2)
    if key == "cie76":
        return delta_e_cie76(lab1, lab2)
    raise ValueError(f"unknown delta E formula {formula!r}; use one of {', '.join(DELTA_E_FORMULAS)}")
