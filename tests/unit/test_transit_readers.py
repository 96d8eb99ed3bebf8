"""Light-curve files a new user has: every table layout, numpy arrays and mission FITS read
alike; flagged, non-finite and non-positive cadences dropped; anything else a clear error."""
from __future__ import annotations

import numpy as np
import pytest

from filters.transit.readers import QUALITY_MASK, LightCurveError, load


def _curve(n: int = 50):
    t = 2000.0 + np.arange(n) * 0.0204
    f = 1000.0 + np.sin(np.arange(n))
    e = np.full(n, 0.5)
    return t, f, e


@pytest.mark.parametrize("sep,header", [(",", True), (",", False), ("\t", True), ("\t", False),
                                        (" ", True), ("   ", False)])
def test_tables_with_any_separator_and_optional_header(tmp_path, sep, header):
    t, f, e = _curve()
    lines = [sep.join(["time", "flux", "flux_err"])] if header else []
    lines += [sep.join(f"{v:.6f}" for v in row) for row in zip(t, f, e)]
    path = tmp_path / "lc.txt"
    path.write_text("# a comment\n" + "\n".join(lines) + "\n")
    lc = load(path)
    assert np.allclose(lc.time, t) and np.allclose(lc.flux, f) and np.allclose(lc.flux_err, e)


def test_header_names_pick_the_columns(tmp_path):
    t, f, e = _curve()
    rows = "\n".join(f"{a},{b},{c},{d}" for a, b, c, d in zip(e, np.zeros_like(t), f, t))
    path = tmp_path / "lc.csv"
    path.write_text("pdcsap_flux_err,quality,pdcsap_flux,time_bkjd\n" + rows)
    lc = load(path)
    assert np.allclose(lc.time, t) and np.allclose(lc.flux, f) and np.allclose(lc.flux_err, e)


def test_quality_column_of_a_table_or_npz_drops_flagged_cadences(tmp_path):
    # A light-curve export (lightkurve's CSV, a cached mission extract) keeps the flags as a
    # column; a flagged cadence must stay out as it does when the FITS file is read.
    t, f, e = _curve()
    q = np.zeros(len(t), np.int64)
    q[[3, 9]] = [128, 1 << 20]  # manual exclude, K2 thruster firing: dropped
    q[12] = 8192  # outside the mask: kept
    rows = "\n".join(f"{a:.6f},{b:.6f},{c:.6f},{d}" for a, b, c, d in zip(t, f, e, q))
    (tmp_path / "lc.csv").write_text("time_bkjd,pdcsap_flux,pdcsap_flux_err,sap_quality\n" + rows)
    np.savez(tmp_path / "lc.npz", time=t, flux=f, flux_err=e, quality=q)
    for name in ("lc.csv", "lc.npz"):
        lc = load(tmp_path / name)
        assert len(lc.time) == len(t) - 2 and 12 in np.searchsorted(t, lc.time), name
        assert not np.isin(t[[3, 9]], lc.time).any(), name


def test_numpy_arrays_rows_or_columns_and_named_npz(tmp_path):
    t, f, e = _curve()
    np.save(tmp_path / "cols.npy", np.column_stack([t, f, e]))
    np.save(tmp_path / "rows.npy", np.vstack([t, f]))
    np.savez(tmp_path / "named.npz", flux=f, time=t, flux_err=e)
    for name in ("cols.npy", "rows.npy", "named.npz"):
        lc = load(tmp_path / name)
        assert np.allclose(lc.time, t) and np.allclose(lc.flux, f), name


def test_kepler_fits_drops_flagged_negative_and_nan_cadences(tmp_path):
    from astropy.io import fits

    t, f, e = _curve(40)
    quality = np.zeros(40, np.int32)
    quality[3] = 1  # attitude tweak: dropped
    quality[4] = 1 << 19  # K2 thruster firing: dropped
    quality[5] = 1 << 12  # a bit outside the mask: kept
    f[6] = -0.26 * np.median(f)  # a flux collapse, not a transit
    f[7] = np.nan
    cols = [fits.Column(name="TIME", format="D", array=t), fits.Column(name="PDCSAP_FLUX", format="E", array=f),
            fits.Column(name="PDCSAP_FLUX_ERR", format="E", array=e),
            fits.Column(name="SAP_QUALITY", format="J", array=quality)]
    hdu = fits.BinTableHDU.from_columns(cols, name="LIGHTCURVE")
    path = tmp_path / "kplr.fits"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    lc = load(path)
    assert len(lc) == 40 - 4 and not (QUALITY_MASK & (1 << 12))
    assert np.all(lc.flux > 0) and np.isin(t[5], lc.time)


@pytest.mark.parametrize("content,why", [
    (b"\x89PNG\r\n\x1a\n\x00\x00binary", "not a text table"),
    (b"1.0\n2.0\n3.0\n", "at least two"),
    (b"a,b\nx,y\n", "no numbers"),
    (b"", "no rows"),
])
def test_unreadable_files_say_why(tmp_path, content, why):
    path = tmp_path / "bad.dat"
    path.write_bytes(content)
    with pytest.raises(LightCurveError, match=why):
        load(path)


def test_fits_without_a_light_curve_table_says_why(tmp_path):
    from astropy.io import fits

    path = tmp_path / "image.fits"
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(path)
    with pytest.raises(LightCurveError, match="table"):
        load(path)
