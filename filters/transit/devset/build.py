"""How the files of the transit development set were made (run once, by hand, with the
public repositories below brought here by the tool library's ``fetch``; kept as the record).

Every file is a real light curve, unchanged except: rows the source marks as unusable stay
out only where the reader would drop them anyway, the Kepler eclipsing binaries are cut to
their first 90 days (a quarter; their periods are under a day), the two shorter-listed
pulsators to their first year, magnitudes (the maelstrom paper/data files) turned into relative flux
(10**(-0.4 mag)), and values are stored as
float64 time and float32 flux in ``.npz`` to keep the repository small (the TESS mission
files are kept whole, gzipped). Known periods and
classes come from the sources named in MANIFEST.csv.
"""
from __future__ import annotations

import csv
import gzip
import io
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MIRROR = Path("/work/.mirror")

# file, target, mission, class, known periods (d), repository, path, commit, note
SOURCES = [
    ("k2_3.npz", "K2-3 (EPIC 201367065)", "K2 C1", "planet_host", "10.0547;24.6465;44.5563", "hippke/tls",
     "transitleastsquares/tests/EPIC201367065.csv", "7b8c4f0f7133f50cc70e53624057c6ab9b1b4fc1",
     "three small planets around an M dwarf (Crossfield et al. 2015)"),
    ("k2_32.npz", "K2-32 (EPIC 205071984)", "K2 C2", "planet_host", "8.99213;20.6602;31.7154;4.34934",
     "nespinoza/juliet", "tutorial2/data/K2-32_lc.dat", "01836b5eb5ba053a8d19709840b7814261d5f775",
     "four planets, b a sub-Saturn (Heller et al. 2019)"),
    ("k2_140.npz", "K2-140 (EPIC 228735255)", "K2 C10", "planet_host", "6.56918", "nespinoza/juliet",
     "tutorial1/data/K2-140_lc.dat", "01836b5eb5ba053a8d19709840b7814261d5f775",
     "hot Jupiter (Giles et al. 2018); the file holds one stray point 180 d after the campaign"),
    ("pi_men.npz", "pi Men (TIC 261136679)", "TESS S1-13, 2 min", "planet_host", "6.26834", "MNGuenther/allesfitter",
     "paper/Pi_Mensae/allesfit_year_1/TESS.csv", "81e37ab16c28648858e4d9188182949023465f58",
     "super-Earth pi Men c, ~300 ppm (Huang et al. 2018); 93,000 points over a year: the speed case"),
    ("toi_540.npz", "TOI-540 (TIC 200322593)", "TESS S4-5, 2 min", "planet_host", "1.239149", "MNGuenther/allesfitter",
     "tutorials/14_finding_and_fitting_TOI_540/TIC_200322593_spoc_pdcsap.csv",
     "81e37ab16c28648858e4d9188182949023465f58", "Earth-sized planet around a nearby M dwarf (Ment et al. 2021)"),
]
# Stars with flares (and spots), with no known transiting companion: TESS S2 2-min light curves of
# the stars with most flares in the stella tutorial, flare counts from the Guenther et al. (2020)
# catalogue that tutorial ships (docs/getting_started/Guenther_2020_flare_catalog.txt).
STELLA = "6b2764c68d79fbebfb88d3956c5f74b0c2e34d7b"
for tic, flares in ((2760232, 18), (2761472, 22), (5640393, 22), (5656273, 27), (5676537, 13)):
    SOURCES.append((f"flare_tic{tic}.npz", f"TIC {tic}", "TESS S2, 2 min", "flaring_star", "", "afeinstein20/stella",
                    f"docs/getting_started/{tic:09d}_sector02.npy", STELLA,
                    f"{flares} flares in this sector in the Guenther et al. (2020) TESS flare catalogue"))
ALLES = "81e37ab16c28648858e4d9188182949023465f58"
SOURCES += [
    ("gj_1243.npz", "GJ 1243 (TIC 273589987)", "2-min sampling, 1.7 d (times BJD 2456518-20)", "flaring_star", "", "MNGuenther/allesfitter",
     "paper/GJ_1243/allesfit_0/TESS.csv", ALLES,
     "flaring, spotted M dwarf rotating in 0.59 d (fitted with spots and 3 flares in the allesfitter paper); "
     "a 1.7-day window"),
    ("koi_1003.npz", "KOI-1003 (TIC 122374527)", "Kepler Q2", "eclipsing_binary", "8.360613", "MNGuenther/allesfitter",
     "paper/KOI-1003/Kepler_Q2.csv", ALLES,
     "eclipsing binary with spots and flares; period from the allesfitter paper's fit (paper/KOI-1003/allesfit)"),
    ("toi_270.npz", "TOI-270 (TIC 259377017)", "TESS S3-5, 2 min", "planet_host", "3.360080;5.660172;11.38014",
     "MNGuenther/allesfitter", "tutorials/17_plotting/TESS.csv", ALLES,
     "three small planets around an M dwarf (Guenther et al. 2019); the tutorial names the file a TOI-270 light curve"),
]
# delta Scuti pulsators in non-eclipsing binaries (pulsation timing; Murphy et al.), 4-year Kepler
# light curves in magnitudes from the maelstrom paper; the first three are its case studies.
MAELSTROM = "439485ea1972a77f6058ffd6af9a5737af7bee5b"
for kic, path in ((9651065, "paper/lc/9651065_lc.txt"), (6780873, "paper/lc/6780873_lc.txt"),
                  (10080943, "paper/lc/10080943_lc.txt"), (4471379, "paper/data/kic4471379_lc.txt"),
                  (5709664, "paper/data/kic5709664_lc.txt")):
    SOURCES.append((f"pulsator_kic{kic}.npz", f"KIC {kic}", "Kepler LC, Q0-17" if "paper/lc" in path
                    else "Kepler LC, first year", "pulsator", "", "danhey/maelstrom", path, MAELSTROM,
                    "delta Scuti pulsator in a binary found by pulsation timing (maelstrom paper); no eclipses"))
SOURCES += [
    ("k2_141.npz", "K2-141 (EPIC 246393474)", "K2 C12", "planet_host", "0.2803244;7.7485", "LucaMalavolta/PyORBIT",
     "examples/K2-141_dataset/K2-141_raw.dat", "100c8e68206c794f583b8e0c418445eba55d0ca9",
     "ultra-short-period super-Earth K2-141 b, 0.28 d, ~400 ppm, and K2-141 c (Malavolta et al. 2018); the PyORBIT "
     "example's K2 light curve (times BJD - 2450000), removed from the repository in its next commit"),
    ("heartbeat_kic4377638.npz", "KIC 4377638", "Kepler LC, Q0-17", "heartbeat_star", "2.8218747", "MinyuLi/K95plus",
     "04377638.00.lc.data", "091ed970643467e84f08b060248dda5805ad7974",
     "heartbeat star (eccentric binary) from the Villanova Kepler EB catalogue, modelled in Li et al. (2023); "
     "corrected flux (columns 1, 5, 6); the period is the one the file's phase column encodes"),
]
# Which columns hold time, flux and error where they are not the first three.
COLUMNS = {"heartbeat_kic4377638.npz": (0, 4, 5)}
# Mission files kept whole, gzipped: they exercise the FITS reader (PDCSAP, QUALITY flags).
FITS_SOURCES = [
    ("gj_357.fits.gz", "GJ 357 (TIC 413248763)", "TESS S8, 2 min", "planet_host", "3.93072", "hpparvi/PyTransit",
     "notebooks/tess_examples/data/tess2019032160000-s0008-0000000413248763-0136-s_lc.fits",
     "beb11f50a982ca62fc6d4a9fa262d59ecb6c4555", "Earth-sized GJ 357 b around an M dwarf (Luque et al. 2019)"),
    ("wasp_4.fits.gz", "WASP-4 (TIC 402026209)", "TESS S2, 2 min", "planet_host", "1.338231", "hpparvi/PyTransit",
     "notebooks/tess_examples/data/tess2018234235059-s0002-0000000402026209-0121-s_lc.fits",
     "beb11f50a982ca62fc6d4a9fa262d59ecb6c4555", "hot Jupiter WASP-4 b (Wilson et al. 2008)"),
]
# Files kept as the source's bytes (tables with a quality column: they exercise the table reader's
# quality flags). The repository could not be fetched here; its file was read through the tool
# library's read_file in 16,000-character pages and joined (the size it reports; 71,832 bytes for HAT-P-7).
# Known periods from the NASA Exoplanet Archive's cumulative KOI table (koi_period) as stored in
# akira921x/Kepler-Downloader-DR25 input_samples/cumulative_koi_2025.09.06_13.27.56.csv @ 337180a.
COPIED_SOURCES = [
    ("hat_p_7.csv", "HAT-P-7 = Kepler-2 (KIC 10666592)", "Kepler Q1 LC", "planet_host", "2.204735417",
     "LewisAGI/exo-planets", "data/cache/lightcurves/kepler2b_kic10666592_q1_llc.csv",
     "f73036fc2d052e60f9c43da58a7eb7cef8fce5b3",
     "hot Jupiter HAT-P-7 b (KOI-2.01, depth ~6,700 ppm, Kepler SNR ~5,900 over Q1-17); PDCSAP extract of "
     "kplr010666592-2009166043257_llc.fits with SAP_QUALITY"),
    ("tres_2.csv", "TrES-2 = Kepler-1 (KIC 11446443)", "Kepler Q1 LC", "planet_host", "2.470613377",
     "LewisAGI/exo-planets", "data/cache/lightcurves/kepler1b_kic11446443_q1_llc.csv",
     "aa509cdc14547e8d7565b1b4646f64f974e173fe",
     "grazing hot Jupiter TrES-2 b (KOI-1.01, impact parameter 0.82, V-shaped, 1.7-h transits, depth ~14,000 ppm); "
     "PDCSAP extract of kplr011446443-2009166043257_llc.fits with SAP_QUALITY (70,286 bytes)"),
    ("kepler_10.csv", "Kepler-10 (KIC 11904151)", "Kepler Q1 LC", "planet_host", "0.837495;45.29485",
     "LewisAGI/exo-planets", "data/cache/lightcurves/kepler10b_kic11904151_q1_llc.csv",
     "f73036fc2d052e60f9c43da58a7eb7cef8fce5b3",
     "rocky ultra-short-period Kepler-10 b (~150 ppm; period from Batalha et al. 2011) and Kepler-10 c (45.29485 d, "
     "Fressin et al. 2011), whose one Q1 transit falls at b's phase 0.5; PDCSAP extract of "
     "kplr011904151-2009166043257_llc.fits with SAP_QUALITY (70,223 bytes)"),
    ("kepler_11.csv", "Kepler-11 (KIC 6541920)", "Kepler Q1 LC", "planet_host", "10.30375;13.02502;22.68719;31.9959;46.68876;118.37774",
     "LewisAGI/exo-planets", "data/cache/lightcurves/kepler11b_kic6541920_q1_llc.csv",
     "f73036fc2d052e60f9c43da58a7eb7cef8fce5b3",
     "six transiting planets (periods from Lissauer et al. 2011); in this 33-day quarter c transits three times, "
     "b three times (~250 ppm), d twice, e once: a multi-planet star on a short baseline; PDCSAP extract of "
     "kplr006541920-2009166043257_llc.fits with SAP_QUALITY (67,021 bytes)"),
]
# Kepler eclipsing binaries (periods 0.25-0.75 d; the first five with the periods the source states)
EB_PERIODS = {12: "0.801921", 22: "0.559159", 29: "0.932316", 43: "0.536675", 49: "0.892750"}
for n in (12, 22, 29, 43, 49, 1, 2, 3, 4, 5):
    SOURCES.append((f"kepler_eb_{n:02d}.npz", f"Kepler EB #{n} of conor-or/kepler-binaries", "Kepler LC, first 90 d",
                    "eclipsing_binary", EB_PERIODS.get(n, ""), "conor-or/kepler-binaries", f"data/{n:02d}.npy",
                    "04228e2a184898775d1a6ce7afd755a5be681596",
                    "short-period eclipsing binary (some host circumbinary planets, which do not transit periodically)"))


def _git_show(repo: str, path: str, commit: str) -> bytes:
    git_dir = MIRROR / repo.replace("/", "+") / "repo"
    return subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{commit}:{path}"], check=True,
                          capture_output=True).stdout


def _columns(raw: bytes, path: str, cols: tuple[int, ...] = (0, 1, 2)) -> np.ndarray:
    if path.endswith(".npy"):
        a = np.load(io.BytesIO(raw))
        return a.T if a.shape[0] <= 3 < a.shape[1] else a  # stella stores rows (time, flux, error)
    rows = []
    for line in raw.decode().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.replace(",", " ").split()
        try:
            rows.append([float(parts[c]) for c in cols if c < len(parts)])
        except ValueError:
            continue
    return np.array(rows)


def build() -> None:
    with (HERE / "MANIFEST.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "target", "mission", "class", "known_periods_days", "repository", "path", "commit", "note"])
        for file, target, mission, cls, periods, repo, path, commit, note in FITS_SOURCES + COPIED_SOURCES + SOURCES:
            if (HERE / file).exists():  # made before: rebuilding would only churn the bytes
                w.writerow([file, target, mission, cls, periods, repo, path, commit, note])
                continue
            raw = _git_show(repo, path, commit)
            if file.endswith(".csv"):
                (HERE / file).write_bytes(raw)
                w.writerow([file, target, mission, cls, periods, repo, path, commit, note])
                continue
            if file.endswith(".fits.gz"):
                with gzip.open(HERE / file, "wb", compresslevel=9) as out:
                    out.write(raw)
                w.writerow([file, target, mission, cls, periods, repo, path, commit, note])
                continue
            a = _columns(raw, path, COLUMNS.get(file, (0, 1, 2)))
            t, f = a[:, 0], a[:, 1]
            e = a[:, 2] if a.shape[1] > 2 else np.full(len(t), np.nan)
            if repo == "danhey/maelstrom" and np.nanmedian(f) < 0.5:  # paper/data/: magnitudes about zero
                f = 10 ** (-0.4 * f)
                e = np.abs(f * e * 0.4 * np.log(10)) if a.shape[1] > 2 else e
            span = 90 if file.startswith("kepler_eb_") else 365 if mission.endswith("first year") else None
            if span:
                keep = t < np.nanmin(t) + span
                t, f, e = t[keep], f[keep], e[keep]
            np.savez_compressed(HERE / file, time=t.astype(np.float64), flux=f.astype(np.float32),
                                flux_err=e.astype(np.float32))
            w.writerow([file, target, mission, cls, periods, repo, path, commit, note])
            print(file, len(t), file=sys.stderr)


if __name__ == "__main__":
    build()
