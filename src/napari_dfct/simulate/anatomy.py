"""Specimen-to-specimen anatomy of the thorax phantom: ``fixed`` or ``varied``, and lesions.

``anatomy="fixed"`` (the default) is the phantom the simulator has always drawn: the seed
varies size and body aspect by about 3 per cent (:data:`~.phantom._SPECIMEN_RANGES`), so the
specimens of a set look alike and their ROIs land at a few positions. ``anatomy="varied"``
draws, per specimen, from :data:`VARIED_RANGES` (uniform ranges, from the seed's own
random stream; the lung texture stays that of ``fixed`` with the same seed):

* body width and depth, 0.78 to 1.22 of the nominal 344 x 240 mm: a common size factor
  (0.84 to 1.14: habitus) times a factor per axis (0.93 to 1.07: build); adult thoraces
  span about 270 to 420 mm laterally and 190 to 290 mm antero-posteriorly;
* position of the body in the field of view (up to 15 per cent of its half-width and
  half-depth) and in-plane rotation (up to 15 degrees); a body that would leave
  :data:`FIT_FRACTION` of the field-of-view radius is first moved back towards the centre,
  then shrunk (:func:`fit_pose`), so projections stay complete;
* each lung's width and height (a common factor 0.82 to 1.12 times a per-side factor 0.93
  to 1.07), its outline (super-ellipse exponent) and tilt; the lungs stay inside the chest
  wall;
* the heart's size (0.8 to 1.2), position and axis, and the depth of the air gap in the
  right pleural cavity (which holds the air ROI).

``lesions=N`` (with either anatomy) adds ``N`` ellipsoidal regions of altered lung signal
(:func:`draw_lesions`) that are continuous along z: *emphysema-like* (the dark-field
coefficient falls to 0.3 to 0.6 of the lung's, attenuation to 0.6 to 0.85: fewer, larger
alveoli scatter less) or *consolidation-like* (dark-field 0.05 to 0.25, attenuation 2.5 to 4
times the lung's, near soft tissue: the air spaces are filled). Their random draws use a
stream of their own, so the anatomy and texture of a seed do not change with ``N``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ANATOMIES", "FIT_FRACTION", "VARIED_RANGES", "draw_lesions", "draw_varied"]

#: The anatomy kinds of :func:`~.phantom.thorax_phantom` (``fixed``: today's phantom).
ANATOMIES = ("fixed", "varied")

#: A varied body stays inside this fraction of the field-of-view radius.
FIT_FRACTION = 0.9

#: Uniform ranges of the ``varied`` anatomy (lengths in units of 200 mm, angles in rad).
VARIED_RANGES: dict[str, tuple[float, float]] = {
    "size": (0.86, 1.14),  # body size / nominal (width and depth alike)
    "width": (0.93, 1.07),  # body width / size
    "depth": (0.93, 1.07),  # body depth / size
    "shift_u": (-0.129, 0.129),  # lateral position: 15 % of the half-width (0.86)
    "shift_v": (-0.09, 0.09),  # antero-posterior position: 15 % of the half-depth (0.60)
    "angle": (-math.radians(15.0), math.radians(15.0)),  # in-plane rotation
    "lung": (0.88, 1.12),  # lung size, both lungs
    "lung_side": (0.93, 1.07),  # lung width and height, per side
    "lung_power": (-0.3, 0.5),  # added to the outline's super-ellipse exponent 2.2
    "lung_tilt": (-0.08, 0.08),
    "heart": (0.8, 1.2),
    "heart_shift": (-0.05, 0.05),
    "heart_v": (-0.03, 0.03),
    "heart_angle": (-0.2, 0.2),
    "gap": (-0.03, 0.045),  # depth of the air gap in the right pleural cavity
}

# Least height (anatomy units, in the image) of the air gap above the right lung: about
# that of the fixed phantom, where the air ROI fits.
_CAVITY = 0.43

# Outline of the body (fat layer) in anatomy units over the whole z range: the widest
# half-axes of :func:`~.phantom._paint_slice`, its centre row and super-ellipse exponent.
_BODY_U, _BODY_V, _BODY_C, _BODY_P = 0.88, 0.61, 0.02, 2.4


def _body_outline(n: int = 360) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    pu = np.sign(c) * np.abs(c) ** (2.0 / _BODY_P) * _BODY_U
    pv = _BODY_C + np.sign(s) * np.abs(s) ** (2.0 / _BODY_P) * _BODY_V
    return np.stack([pu, pv])


def to_image(pose: dict[str, float], au, av):
    """Image coordinates (anatomy units from the image centre) of anatomy points."""
    c, s = math.cos(pose["angle"]), math.sin(pose["angle"])
    su, sv = np.asarray(au) * pose["width"], np.asarray(av) * pose["depth"]
    return pose["shift_u"] + c * su - s * sv, pose["shift_v"] + s * su + c * sv


def to_anatomy(pose: dict[str, float], u, v):
    """Anatomy coordinates of image points (the inverse of :func:`to_image`)."""
    c, s = math.cos(pose["angle"]), math.sin(pose["angle"])
    du, dv = np.asarray(u) - pose["shift_u"], np.asarray(v) - pose["shift_v"]
    return (c * du + s * dv) / pose["width"], (-s * du + c * dv) / pose["depth"]


def fit_pose(pose: dict[str, float], radius: float) -> dict[str, float]:
    """``pose`` moved back towards the centre (then shrunk) until the body outline lies
    within ``radius`` (anatomy units)."""
    out = dict(pose)
    ou, ov = _body_outline()

    def reach(p) -> float:
        u, v = to_image(p, ou, ov)
        return float(np.max(np.hypot(u, v)))

    if reach(out) <= radius:
        return out
    lo, hi = 0.0, 1.0  # fraction of the shift kept
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        trial = {**pose, "shift_u": pose["shift_u"] * mid, "shift_v": pose["shift_v"] * mid}
        lo, hi = (mid, hi) if reach(trial) <= radius else (lo, mid)
    out.update(shift_u=pose["shift_u"] * lo, shift_v=pose["shift_v"] * lo)
    r = reach(out)
    if r > radius:
        out.update(width=out["width"] * radius / r, depth=out["depth"] * radius / r)
    return out


def draw_varied(seed: int, fov_mm: float, unit_mm: float) -> tuple[dict, dict]:
    """``(pose, specimen)`` of the ``varied`` anatomy of ``seed``: the body's pose (width,
    depth, shift, angle; fitted into the field of view, :func:`fit_pose`) and the keys of
    :func:`~.phantom._paint_slice` (lungs, heart, air gap, ribs, bronchi)."""
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(4,)))
    d = {k: float(rng.uniform(*r)) for k, r in VARIED_RANGES.items()}
    sides = rng.uniform(*VARIED_RANGES["lung_side"], size=4)
    rib_phase, bronchi = rng.uniform(-0.12, 0.12), rng.uniform(-0.015, 0.015)
    pose = {k: d[k] for k in ("shift_u", "shift_v", "angle")}
    pose.update(width=d["size"] * d["width"], depth=d["size"] * d["depth"])
    pose = fit_pose(pose, FIT_FRACTION * 0.5 * fov_mm / unit_mm)
    room = min(pose["depth"], pose["width"] * d["lung"] * float(sides[0]))
    specimen = {
        "lung_ru": d["lung"] * float(sides[0]),
        "lung_rv": d["lung"] * float(sides[1]),
        "lung_lu": d["lung"] * float(sides[2]),
        "lung_lv": d["lung"] * float(sides[3]),
        "lung_power": d["lung_power"],
        "lung_tilt": d["lung_tilt"],
        "wall": 0.07,
        "heart": d["heart"],
        "heart_shift": d["heart_shift"],
        "heart_v": d["heart_v"],
        "heart_angle": d["heart_angle"],
        # the air gap keeps room for the air ROI in a shallow body or a low lung
        "gap": max(d["gap"], _CAVITY / room - 0.44 * d["lung"] * float(sides[1])),
        "rib_phase": float(rib_phase),
        "bronchi": float(bronchi),
    }
    return pose, specimen


def draw_lesions(seed: int, n: int, specimen: dict) -> list[dict]:
    """``n`` lesions of the specimen of ``seed``: kind, centre (anatomy units; ``z`` in
    [-1, 1] across the stack), radii (mm) and the factors on the lung's ``eps`` and ``mu``.
    Centres lie within 65 per cent of a lung's half-axes from its centre."""
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(5,)))
    out = []
    for _ in range(int(n)):
        side = -1 if rng.uniform() < 0.5 else 1
        su = specimen.get("lung_ru" if side < 0 else "lung_lu", 1.0)
        sv = specimen.get("lung_rv" if side < 0 else "lung_lv", 1.0)
        rho, phi = 0.65 * math.sqrt(rng.uniform()), rng.uniform(0.0, 2.0 * np.pi)
        emphysema = rng.uniform() < 0.5
        out.append(
            {
                "kind": "emphysema" if emphysema else "consolidation",
                "u": side * 0.39 + rho * math.cos(phi) * 0.335 * su,
                "v": 0.01 + rho * math.sin(phi) * 0.45 * sv,
                "z": float(rng.uniform(-0.5, 0.5)),
                "radius_mm": float(rng.uniform(8.0, 22.0)),
                "z_radius_mm": float(rng.uniform(8.0, 22.0)),
                "eps_factor": float(
                    rng.uniform(0.3, 0.6) if emphysema else rng.uniform(0.05, 0.25)
                ),
                "mu_factor": float(rng.uniform(0.6, 0.85) if emphysema else rng.uniform(2.5, 4.0)),
            }
        )
    return out


def lesion_factors(
    lesions: list[dict],
    pose: dict[str, float] | None,
    u1: np.ndarray,
    v1: np.ndarray,
    z_mm: np.ndarray,
    unit_mm: float,
    z_half_mm: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Multiplicative maps ``(Z, Y, X)`` of the lung's ``eps`` and ``mu`` (float32): 1 away
    from every lesion, the lesion's factors inside, with a soft edge (the outer 30 per cent
    of each radius). ``u1``, ``v1``: pixel-centre coordinates (anatomy units), ``z_mm``:
    slice centres (mm from the stack centre)."""
    shape = (len(z_mm), len(v1), len(u1))
    f_eps = np.ones(shape, dtype=np.float32)
    f_mu = np.ones(shape, dtype=np.float32)
    ident = {"width": 1.0, "depth": 1.0, "shift_u": 0.0, "shift_v": 0.0, "angle": 0.0}
    for les in lesions:
        cu, cv = to_image(pose or ident, les["u"], les["v"])
        r = les["radius_mm"] / unit_mm
        du2 = ((u1[None, :] - cu) / r) ** 2 + ((v1[:, None] - cv) / r) ** 2
        for k, z in enumerate(z_mm):
            dz2 = ((z - les["z"] * z_half_mm) / les["z_radius_mm"]) ** 2
            m = np.clip((1.0 - np.sqrt(du2 + dz2)) / 0.3, 0.0, 1.0).astype(np.float32)
            f_eps[k] *= 1.0 + m * np.float32(les["eps_factor"] - 1.0)
            f_mu[k] *= 1.0 + m * np.float32(les["mu_factor"] - 1.0)
    return f_eps, f_mu
