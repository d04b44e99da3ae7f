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
    """

    mu: np.ndarray = field(repr=False)
    eps: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    pixel_size_mm: float = 1.0
    slice_spacing_mm: float = 1.0

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


def _paint_slice(
    u1: np.ndarray, v1: np.ndarray, z: float, specimen: dict[str, float] | None = None
) -> np.ndarray:
    """Material index map of one axial slice (anterior up, patient right on the left).

    ``u1`` (columns) and ``v1`` (rows) are 1-D coordinates in units of ``_ANATOMY_MM``
    from the image centre (the body is 2 x 0.86 units wide), ``z`` in [-1, 1] across the
    stack; ``specimen`` holds the variations of :data:`_SPECIMEN_RANGES` (none if None).
    """
    sp = {
        "scale": 1.0,
        "aspect": 1.0,
        "gap": 0.0,
        "heart": 1.0,
        "heart_shift": 0.0,
        "rib_phase": 0.0,
        "bronchi": 0.0,
        **(specimen or {}),
    }
    u1, v1 = u1 / sp["scale"], v1 / sp["scale"]
    cv = _Canvas(u1, v1)
    paint = cv.shape

    # Body outline with a subcutaneous fat layer.
    bu, bv, bc = (0.86 - 0.02 * z) * sp["aspect"], 0.60 + 0.01 * z, 0.02
    paint("fat", 0.0, bc, bu, bv, power=2.4)
    paint("soft", 0.0, bc, bu - 0.045, bv - 0.045, power=2.4)

    # Thoracic cavities, filled with lung; the air gap, mediastinum and heart follow.
    cav_r = (-0.39, 0.01, 0.335 + 0.015 * z, 0.45, -0.12, 2.2)
    cav_l = (0.39, 0.01, 0.325 + 0.015 * z, 0.44, 0.12, 2.2)
    paint("lung", *cav_r[:4], angle=cav_r[4], power=cav_r[5])
    paint("lung", *cav_l[:4], angle=cav_l[4], power=cav_l[5])
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

    # Mediastinum, heart, aorta, oesophagus.
    paint("soft", 0.01, 0.02, 0.13, 0.46, power=2.6)
    hs = sp["heart"]
    paint(
        "blood",
        0.10 - 0.02 * z + sp["heart_shift"],
        -0.13,
        0.23 * (1 - 0.15 * z * z) * hs,
        0.24 * hs,
        angle=0.55,
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
    specimen = _specimen(rng)
    pix = np.arange(size * size, dtype=np.intp)[:, None]
    for k, z in enumerate(zs):
        mat = _paint_slice(coord_ss, coord_ss, float(z), specimen)
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
    )
