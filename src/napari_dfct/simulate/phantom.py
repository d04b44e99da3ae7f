"""The thorax phantom of the DFCT simulator: materials, labels and anatomy.

:func:`thorax_phantom` draws a thorax in the spirit of the "Lungman" chest phantom with
ventilated ex vivo lungs, as used for human-scale DFCT: body outline (super-ellipse) with
a fat layer, chest wall and mediastinum (soft tissue), heart and aorta, spine, sternum and
ribs (cortical shell, cancellous core), two lungs whose parenchyma carries a seeded
random texture and vessels, main bronchi and an air gap in the right pleural cavity
(near the image centre: it holds the air ROI), and air outside. All shapes vary smoothly
along z over ``z_extent_mm``; the seed varies the specimen a little (size, body aspect,
air gap, heart, ribs) besides the lung texture. Each material has an attenuation ``mu``
and a dark-field coefficient ``eps`` (both in 1/m): lung scatters strongly, soft tissue
and bone little, air not at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["LABELS", "MATERIALS", "Phantom", "thorax_phantom"]

# --------------------------------------------------------------------------------------
# Materials and labels
# --------------------------------------------------------------------------------------

#: Tissue classes of the label map returned by :func:`thorax_phantom`.
LABELS: dict[str, int] = {"air": 0, "soft_tissue": 1, "bone": 2, "lung": 3, "air_cavity": 4}

#: Materials: (label class, attenuation mu [1/m], dark-field eps [1/m]).
#: mu is an effective value near 60 keV; eps is the linear diffusion coefficient.
MATERIALS: dict[str, tuple[str, float, float]] = {
    "air": ("air", 0.0, 0.0),
    "fat": ("soft_tissue", 18.0, 0.05),
    "soft": ("soft_tissue", 20.0, 0.10),
    "blood": ("soft_tissue", 21.0, 0.05),
    "cortical": ("bone", 48.0, 0.30),
    "cancellous": ("bone", 28.0, 0.45),
    "lung": ("lung", 5.0, 2.20),
    "vessel": ("lung", 21.0, 0.15),
    "cavity": ("air_cavity", 0.0, 0.0),
}
_MAT_NAMES = list(MATERIALS)
_MAT = {name: i for i, name in enumerate(_MAT_NAMES)}


@dataclass
class Phantom:
    """Thorax phantom maps, float32 ``(Z, Y, X)`` (labels uint8).

    Attributes
    ----------
    mu, eps : np.ndarray
        Attenuation and dark-field coefficients in 1/m (partial-volume averaged).
    labels : np.ndarray
        Tissue class per pixel (majority), values of :data:`LABELS`.
    pixel_size_mm, slice_spacing_mm : float
        Voxel size.
    anatomy : dict or None
        What the seed drew (:func:`thorax_phantom`): ``kind`` (``fixed`` or ``varied``),
        the body's ``pose``, the ``specimen`` variations and the ``lesions``.
    """

    mu: np.ndarray = field(repr=False)
    eps: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    pixel_size_mm: float = 1.0
    slice_spacing_mm: float = 1.0
    anatomy: dict | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        z, y, x = self.mu.shape
        return int(z), int(y), int(x)


# --------------------------------------------------------------------------------------
# Phantom
# --------------------------------------------------------------------------------------


class _Canvas:
    """Material index map on a regular grid, painted shape by shape (later wins).

    ``u1`` (columns) and ``v1`` (rows) are ascending 1-D coordinates; each shape only
    touches its bounding box.
    """

    def __init__(self, u1: np.ndarray, v1: np.ndarray):
        self.u1, self.v1 = u1, v1
        self.mat = np.full((len(v1), len(u1)), _MAT["air"], dtype=np.uint8)

    def shape(self, material, cu, cv, au, av, angle=0.0, power=2.0, only=None, where=None):
        """Paint a rotated super-ellipse; ``only``: materials it may replace; ``where``:
        extra condition ``f(uu, vv) -> bool array``."""
        r = math.hypot(au, av)
        c0, c1 = np.searchsorted(self.u1, [cu - r, cu + r])
        r0, r1 = np.searchsorted(self.v1, [cv - r, cv + r])
        if c1 <= c0 or r1 <= r0:
            return
        du = self.u1[None, c0:c1] - cu
        dv = self.v1[r0:r1, None] - cv
        ca, sa = math.cos(angle), math.sin(angle)
        pu = np.abs((du * ca + dv * sa) / au)
        pv = np.abs((-du * sa + dv * ca) / av)
        if power == 2.0:
            inside = pu * pu + pv * pv <= 1.0
        else:
            inside = pu**power + pv**power <= 1.0
        sub = self.mat[r0:r1, c0:c1]
        if only is not None:
            inside &= np.isin(sub, [_MAT[m] for m in only])
        if where is not None:
            inside &= where(self.u1[None, c0:c1], self.v1[r0:r1, None])
        sub[inside] = _MAT[material]


_ANATOMY_MM = 200.0  # length unit of the anatomy drawn by _paint_slice


#: Specimen-to-specimen variation of the anatomy (uniform ranges), drawn from the seed.
_SPECIMEN_RANGES = {
    "scale": (0.97, 1.03),  # overall size
    "aspect": (0.97, 1.03),  # body width / height
    "gap": (-0.015, 0.03),  # depth of the air gap in the right pleural cavity
    "heart": (0.92, 1.08),  # heart size
    "heart_shift": (-0.02, 0.02),
    "rib_phase": (-0.12, 0.12),  # where the ribs cut the slice
    "bronchi": (-0.015, 0.015),
}


def _specimen(rng) -> dict[str, float]:
    return {k: float(rng.uniform(*r)) for k, r in _SPECIMEN_RANGES.items()}


#: The keys of :func:`_paint_slice` and their neutral values (no variation).
_NEUTRAL = {
    "scale": 1.0,
    "aspect": 1.0,
    "gap": 0.0,
    "heart": 1.0,
    "heart_shift": 0.0,
    "rib_phase": 0.0,
    "bronchi": 0.0,
    # the varied anatomy's (:mod:`.anatomy`): lung half-axis factors per side, outline
    # exponent and tilt, chest-wall thickness the lungs keep (0: none), heart position
    "lung_ru": 1.0,
    "lung_rv": 1.0,
    "lung_lu": 1.0,
    "lung_lv": 1.0,
    "lung_power": 0.0,
    "lung_tilt": 0.0,
    "wall": 0.0,
    "heart_v": 0.0,
    "heart_angle": 0.0,
}


def _paint_lungs(cv: _Canvas, z: float, sp: dict, bu: float, bv: float, bc: float) -> None:
    """Thoracic cavities, filled with lung, and the air gaps above them."""
    paint = cv.shape
    dp, tilt = sp["lung_power"], sp["lung_tilt"]
    ru, rv = (0.335 + 0.015 * z) * sp["lung_ru"], 0.45 * sp["lung_rv"]
    lu, lv = (0.325 + 0.015 * z) * sp["lung_lu"], 0.44 * sp["lung_lv"]
    cav_r = (-0.39, 0.01, ru, rv, -0.12 - tilt, 2.2 + dp)
    cav_l = (0.39, 0.01, lu, lv, 0.12 + tilt, 2.2 + dp)
    inside = None
    if sp["wall"] > 0:  # the lungs stay inside the chest wall
        wu, wv = bu - sp["wall"], bv - sp["wall"]

        def inside(uu, vv):
            return (np.abs(uu) / wu) ** 2.4 + (np.abs(vv - bc) / wv) ** 2.4 <= 1.0

    paint("lung", *cav_r[:4], angle=cav_r[4], power=cav_r[5], where=inside)
    paint("lung", *cav_l[:4], angle=cav_l[4], power=cav_l[5], where=inside)
    # Air in the right pleural cavity, anterior to the lung, which has sunk dorsally:
    # the anterior lung surface is a gently curved, slightly wavy line.
    v_surf = sp["gap"] + 0.012 * z

    def above_right_lung(uu, vv):
        return vv < v_surf + 0.8 * (uu + 0.30) ** 2 + 0.012 * np.sin(9.0 * uu + 2.0 * z)

    paint(
        "cavity", *cav_r[:4], angle=cav_r[4], power=cav_r[5], only=["lung"], where=above_right_lung
    )

    def above_left_lung(uu, vv):
        return vv < -0.34 + 0.02 * z + 0.5 * (uu - 0.40) ** 2

    paint(
        "cavity", *cav_l[:4], angle=cav_l[4], power=cav_l[5], only=["lung"], where=above_left_lung
    )


def _paint_slice(
    u1: np.ndarray, v1: np.ndarray, z: float, specimen: dict[str, float] | None = None
) -> np.ndarray:
    """Material index map of one axial slice (anterior up, patient right on the left).

    ``u1`` (columns) and ``v1`` (rows) are 1-D coordinates in units of ``_ANATOMY_MM``
    from the image centre (the body is 2 x 0.86 units wide), ``z`` in [-1, 1] across the
    stack; ``specimen`` holds the variations of :data:`_SPECIMEN_RANGES` (none if None)
    and optionally those of the varied anatomy (:data:`_NEUTRAL`).
    """
    sp = {**_NEUTRAL, **(specimen or {})}
    u1, v1 = u1 / sp["scale"], v1 / sp["scale"]
    cv = _Canvas(u1, v1)
    paint = cv.shape

    # Body outline with a subcutaneous fat layer.
    bu, bv, bc = (0.86 - 0.02 * z) * sp["aspect"], 0.60 + 0.01 * z, 0.02
    paint("fat", 0.0, bc, bu, bv, power=2.4)
    paint("soft", 0.0, bc, bu - 0.045, bv - 0.045, power=2.4)
    _paint_lungs(cv, z, sp, bu, bv, bc)

    # Mediastinum, heart, aorta, oesophagus.
    paint("soft", 0.01, 0.02, 0.13, 0.46, power=2.6)
    hs = sp["heart"]
    paint(
        "blood",
        0.10 - 0.02 * z + sp["heart_shift"],
        -0.13 + sp["heart_v"],
        0.23 * (1 - 0.15 * z * z) * hs,
        0.24 * hs,
        angle=0.55 + sp["heart_angle"],
    )
    paint("blood", 0.11, 0.25, 0.065, 0.065)
    paint("soft", -0.04, 0.25, 0.035, 0.03)

    # Main bronchi (air with soft-tissue walls), converging towards the trachea.
    sep = 0.12 - 0.04 * z + sp["bronchi"]
    for side in (-1, 1):
        paint("soft", side * sep, 0.05, 0.05, 0.05)
        paint("cavity", side * sep, 0.05, 0.033, 0.033)

    # Spine: vertebral body, spinal canal, laminae, spinous and transverse processes.
    paint("cortical", 0.0, 0.37, 0.12, 0.10)
    paint("cancellous", 0.0, 0.37, 0.095, 0.077)
    for side in (-1, 1):
        paint("cortical", side * 0.065, 0.50, 0.03, 0.055, angle=side * 0.5)
        paint("cortical", side * 0.15, 0.44, 0.06, 0.022, angle=side * 0.35)
    paint("soft", 0.0, 0.50, 0.042, 0.037)
    paint("cortical", 0.0, 0.565, 0.022, 0.035)

    # Sternum.
    paint("cortical", 0.0, -0.505, 0.07, 0.028)
    paint("cancellous", 0.0, -0.505, 0.05, 0.014)

    # Ribs: oblique cross-sections in the chest wall, sliding along it with z.
    ru, rv = bu - 0.075, bv - 0.075
    for side in (-1, 1):
        for k in range(7):
            a = 0.42 + 0.36 * k + 0.12 * z + 0.05 * (k % 2) + sp["rib_phase"]  # 0: anterior
            cu = side * ru * math.sin(a)
            cvv = bc - rv * math.cos(a)
            tang = math.atan2(rv * math.sin(a), side * ru * math.cos(a))
            paint("cortical", cu, cvv, 0.05, 0.02, angle=tang)
            paint("cancellous", cu, cvv, 0.03, 0.009, angle=tang)
    return cv.mat


def _posed_painter(pose: dict, coord: np.ndarray, specimen: dict):
    """``paint(z)``: the material map of :func:`_paint_slice` on the sample grid ``coord``
    (1-D, anatomy units) of the image, with the anatomy in ``pose`` (:mod:`.anatomy`).

    The slice is painted on a regular grid in anatomy coordinates, at least as fine as the
    image's samples, and looked up at each sample's anatomy position (nearest grid point);
    samples off that grid are air.
    """
    from .anatomy import to_anatomy

    h = float(coord[1] - coord[0]) / max(pose["width"], pose["depth"], 1.0)
    ua, va = np.arange(-0.93, 0.93 + h, h), np.arange(-0.66, 0.70 + h, h)
    au, av = to_anatomy(pose, coord[None, :], coord[:, None])
    iu, iv = np.rint((au - ua[0]) / h).astype(np.intp), np.rint((av - va[0]) / h).astype(np.intp)
    ok = (iu >= 0) & (iu < len(ua)) & (iv >= 0) & (iv < len(va))
    iu[~ok], iv[~ok] = 0, 0

    def paint(z: float) -> np.ndarray:
        mat = _paint_slice(ua, va, z, specimen)[iv, iu]
        mat[~ok] = _MAT["air"]
        return mat

    return paint


def _draw_anatomy(rng, seed: int, anatomy: str, lesions: int, fov_mm: float):
    """``(specimen, pose, lesions)`` of a seed: the fixed anatomy's small variations from
    ``rng`` (always drawn, so that the texture that follows is the same for both kinds),
    replaced by the varied anatomy's (:mod:`.anatomy`, a stream of its own) when asked."""
    from .anatomy import ANATOMIES, draw_lesions, draw_varied

    if anatomy not in ANATOMIES:
        raise ValueError(f"anatomy must be one of {', '.join(ANATOMIES)}, got {anatomy!r}")
    if isinstance(lesions, bool) or int(lesions) != lesions or lesions < 0:
        raise ValueError(f"lesions must be an integer >= 0, got {lesions!r}")
    specimen = _specimen(rng)
    sc = specimen["scale"]
    pose = {"width": sc, "depth": sc, "shift_u": 0.0, "shift_v": 0.0, "angle": 0.0}
    if anatomy == "varied":
        pose, varied = draw_varied(seed, fov_mm, _ANATOMY_MM)
        specimen = {**specimen, "scale": 1.0, "aspect": 1.0, **varied}
    return specimen, pose, draw_lesions(seed, int(lesions), specimen)


def _anatomy_record(kind: str, specimen: dict, pose: dict, lesions: list, size: int, unit):
    """JSON-ready record of what a seed drew (lesion centres also in pixels)."""
    from .anatomy import to_image

    c = (size - 1) / 2.0
    les = []
    for lesion in lesions:
        cu, cv = to_image(pose, lesion["u"], lesion["v"])
        les.append(
            {
                **lesion,
                "center_px": [round(c + float(cv) / unit, 1), round(c + float(cu) / unit, 1)],
            }
        )
    return {
        "kind": kind,
        "pose": {k: round(float(v), 5) for k, v in pose.items()},
        "specimen": {k: round(float(v), 5) for k, v in specimen.items()},
        "lesions": les,
    }


def _smooth_field(rng, shape, sigma) -> np.ndarray:
    """Zero-mean, unit-RMS Gaussian random field (float32)."""
    from scipy import ndimage  # on use: the dfct command's help does not load scipy

    noise = rng.standard_normal(shape, dtype=np.float32)
    out = ndimage.gaussian_filter(noise, sigma=sigma, mode="wrap")
    out -= out.mean()
    out /= max(float(out.std()), 1e-12)
    return out


def thorax_phantom(
    size: int = 256,
    n_slices: int = 16,
    *,
    seed: int = 0,
    fov_mm: float = 460.0,
    z_extent_mm: float = 80.0,
    texture: float = 0.15,
    vessel_fraction: float = 0.05,
    supersample: int = 2,
    coarse_texture: float = 0.08,
    anatomy: str = "fixed",
    lesions: int = 0,
) -> Phantom:
    """Draw the thorax phantom.

    Parameters
    ----------
    size : int
        Image width and height in pixels (>= 16).
    n_slices : int
        Number of axial slices (>= 1); they span ``z_extent_mm``.
    seed : int
        Seed of the specimen: small variations of the anatomy (size, body aspect, air gap,
        heart, ribs, bronchi), the lung texture and the vessels.
    fov_mm : float
        Field of view (>= 380 mm); the pixel size is ``fov_mm / size``.
    z_extent_mm : float
        Axial extent of the stack.
    texture : float
        Relative RMS of the fine parenchyma texture of the lung dark-field signal.
    vessel_fraction : float
        Approximate area fraction of lung vessels (no dark-field, soft-tissue attenuation).
    supersample : int
        Sub-samples per pixel and axis for partial-volume edges.
    coarse_texture : float
        Relative RMS of the coarse (about 10 mm) modulation of the lung dark-field signal.
    anatomy : str
        ``"fixed"`` (default): the phantom as always, the seed varies it by about 3 per
        cent. ``"varied"``: body size, shape, position and rotation, lungs and heart vary
        by 15 per cent and more (:mod:`napari_dfct.simulate.anatomy`); the texture is that
        of ``"fixed"`` with the same seed.
    lesions : int
        Regions of altered lung signal (emphysema- or consolidation-like,
        :func:`~napari_dfct.simulate.anatomy.draw_lesions`); 0 (default): none.

    Returns
    -------
    Phantom
        ``mu`` and ``eps`` in 1/m, float32 ``(n_slices, size, size)``, and the labels.
    """
    size, n_slices, supersample = int(size), int(n_slices), int(supersample)
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    if n_slices < 1:
        raise ValueError(f"n_slices must be >= 1, got {n_slices}")
    if supersample < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    if fov_mm < 380.0:
        raise ValueError(f"fov_mm must be >= 380 (the thorax is 344 mm wide), got {fov_mm}")
    c = (size - 1) / 2.0
    pix_mm = fov_mm / size
    spacing_mm = z_extent_mm / n_slices
    zs = np.linspace(-1.0, 1.0, n_slices) if n_slices > 1 else np.zeros(1)
    zs = zs * (1.0 - 1.0 / max(n_slices, 1))  # slice centres inside the extent

    # Sub-pixel sample grid.
    ss = supersample
    offs = (np.arange(ss) + 0.5) / ss - 0.5
    # Anatomy is drawn in units of _ANATOMY_MM from the image centre.
    unit = pix_mm / _ANATOMY_MM
    coord_ss = ((np.arange(size)[:, None] + offs[None, :]).ravel() - c) * unit
    coord_1 = (np.arange(size) - c) * unit
    u_1, v_1 = coord_1[None, :], coord_1[:, None]

    n_mat = len(_MAT_NAMES)
    frac = np.zeros((n_mat, n_slices, size, size), dtype=np.float32)
    labels = np.zeros((n_slices, size, size), dtype=np.uint8)
    cls_of_mat = np.array([LABELS[MATERIALS[m][0]] for m in _MAT_NAMES], dtype=np.uint8)
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(0,)))
    specimen, pose, drawn = _draw_anatomy(rng, seed, anatomy, lesions, fov_mm)
    if anatomy == "varied":
        paint = _posed_painter(pose, coord_ss, specimen)
    else:
        paint = lambda z: _paint_slice(coord_ss, coord_ss, z, specimen)  # noqa: E731
    pix = np.arange(size * size, dtype=np.intp)[:, None]
    for k, z in enumerate(zs):
        mat = paint(float(z))
        mat = mat.reshape(size, ss, size, ss)
        mat = mat.transpose(0, 2, 1, 3).reshape(size * size, ss * ss).astype(np.intp)
        counts = np.bincount((pix * n_mat + mat).ravel(), minlength=size * size * n_mat)
        frac[:, k] = (counts.reshape(size, size, n_mat) / (ss * ss)).transpose(2, 0, 1)
        labels[k] = cls_of_mat[np.argmax(frac[:, k], axis=0)]

    # Lung parenchyma: fine texture, a gentle gravity gradient, vessels.
    sz_fine = max(2.5 / spacing_mm, 0.3)
    fine = _smooth_field(
        rng, (n_slices, size, size), (sz_fine, 1.2 / pix_mm * 1.0, 1.2 / pix_mm * 1.0)
    )
    coarse = _smooth_field(
        rng, (n_slices, size, size), (max(12 / spacing_mm, 0.5), 10 / pix_mm, 10 / pix_mm)
    )
    vess = _smooth_field(
        rng, (n_slices, size, size), (max(10 / spacing_mm, 0.5), 2.2 / pix_mm, 2.2 / pix_mm)
    )
    thr = float(np.quantile(vess, 1.0 - vessel_fraction)) if vessel_fraction > 0 else np.inf
    vessel = np.clip((vess - thr) / 0.3, 0.0, 1.0)  # soft vessel edges
    gravity = 1.0 - 0.12 * v_1[None]  # posterior (dependent) lung is denser: less scatter
    lung_eps_mod = np.clip(gravity * (1.0 + texture * fine + coarse_texture * coarse), 0.2, None)
    lung_mu_mod = np.clip(1.0 - 0.5 * texture * fine + 0.1 * (1 - gravity), 0.3, None)
    if drawn:  # lesions: factors on the lung's signal
        from .anatomy import lesion_factors

        z_mm = zs * (0.5 * z_extent_mm)
        f_eps, f_mu = lesion_factors(
            drawn, pose, coord_1, coord_1, z_mm, _ANATOMY_MM, z_extent_mm / 2
        )
        lung_eps_mod, lung_mu_mod = lung_eps_mod * f_eps, lung_mu_mod * f_mu

    mu = np.zeros((n_slices, size, size), dtype=np.float32)
    eps = np.zeros((n_slices, size, size), dtype=np.float32)
    for name, (_, m_mu, m_eps) in MATERIALS.items():
        f = frac[_MAT[name]]
        if name == "lung":
            fl = f * (1.0 - vessel)
            fv = f * vessel
            _, v_mu, v_eps = MATERIALS["vessel"]
            mu += fl * m_mu * lung_mu_mod + fv * v_mu
            eps += fl * m_eps * lung_eps_mod + fv * v_eps
        else:
            mu += f * m_mu
            eps += f * m_eps

    # Nothing outside the inscribed circle (complete projections).
    rr = np.hypot(u_1, v_1) / unit
    outside = rr > c - 1.0
    mu[:, outside] = 0.0
    eps[:, outside] = 0.0
    labels[:, outside] = LABELS["air"]
    return Phantom(
        mu=mu.astype(np.float32),
        eps=eps.astype(np.float32),
        labels=labels,
        pixel_size_mm=float(pix_mm),
        slice_spacing_mm=float(spacing_mm),
        anatomy=_anatomy_record(anatomy, specimen, pose, drawn, size, unit),
    )
