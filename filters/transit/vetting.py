"""Vetting of transit candidates: the eclipsing-binary tells and shape tests that cap a
candidate's score, from the measurements ``search.describe`` made (a secondary eclipse, odd and
even transits of different depth, a brightening at phase 0.5 or beside the dip, unequal single
transits, a dip too deep for a planet), and the rule for the weaker candidates of a binary star."""
from __future__ import annotations

import numpy as np

# The functions take ``search.Candidate`` objects; they are not imported here because search
# imports this module (no import circles among the filters' modules).

# Vetting thresholds: significances against the measured noise, and sizes relative to the
# primary depth, so that neither fires on a planet because its SNR is huge (a hot Jupiter's
# occultation is <= 4% of its transit depth; its odd and even transits agree).
VET_SIGMA = 5.0
VET_SECONDARY_RELATIVE = 0.06
VET_ODD_EVEN_RELATIVE = 0.12
VET_MAX_DEPTH = 0.3  # a companion blocking more than 30% of the star is a star
# Brighter at phase 0.5 by a good share of the dip: a continuous variable (contact or
# ellipsoidal binary, pulsator) folded at its half period, not a flat star with a transit (a
# hot Jupiter's phase curve is ~1% of its depth).
VET_BRIGHTER_RELATIVE = -0.3
# Single transits this unequal are not one planet's (chi^2/dof and spread / depth).
VET_UNEVEN_CHI2 = 9.0
VET_UNEVEN_SPREAD = 0.5
# Brighter just beside the dip by a good share of it: a heartbeat star (an eccentric binary
# brightens and dims at periastron), not a flat star with a transit. Only from 1 d: closer
# binaries are circularised, and at shorter periods the "beside" windows span most of the
# orbit, where a K2 thruster sawtooth folded at 0.245 d reads as a rise beside a dip.
VET_BESIDE_RELATIVE = 0.2
VET_BESIDE_MIN_PERIOD_D = 1.0
VETOED_SCORE_CAP = 0.05
# A fold whose strongest single event carries this share of the signal is one dip, not a
# periodic one: the next search masks that event only, so that other planets' transits that
# the fold happened to catch stay in.
SINGLE_EVENT_DOMINATED = 0.5


def vet(c) -> list[str]:
    """The eclipsing-binary tests this candidate fails (empty: it passes)."""
    fired = []
    # A binary's secondary shows at every orbit; one event at phase 0.5 (another planet's
    # transit, a flare) must not make one: the phase-0.5 tests need it without its strongest window too.
    robust = c.secondary_sigma if np.isnan(c.secondary_sigma_robust) else c.secondary_sigma_robust
    if min(c.secondary_sigma, robust) > VET_SIGMA and c.secondary_relative > VET_SECONDARY_RELATIVE:
        fired.append("secondary_eclipse")
    if c.odd_even_sigma > VET_SIGMA and c.odd_even_relative > VET_ODD_EVEN_RELATIVE:
        fired.append("odd_even_depths")
    if max(c.secondary_sigma, robust) < -VET_SIGMA and c.secondary_relative < VET_BRIGHTER_RELATIVE:
        fired.append("brighter_at_half_phase")
    if c.transit_depth_chi2 > VET_UNEVEN_CHI2 and c.transit_depth_spread > VET_UNEVEN_SPREAD:
        fired.append("uneven_transits")
    if c.depth > VET_MAX_DEPTH:
        fired.append("too_deep_for_a_planet")
    if c.beside_sigma > VET_SIGMA and c.beside_relative > VET_BESIDE_RELATIVE and c.period >= VET_BESIDE_MIN_PERIOD_D:
        fired.append("brightening_beside_dip")
    return fired


EB_TELLS = ("secondary_eclipse", "odd_even_depths", "brighter_at_half_phase", "too_deep_for_a_planet",
            "brightening_beside_dip")


def is_binary(c) -> bool:
    """Whether the candidate fails one of the eclipsing-binary tells (not only a transit-shape
    test). Odd and even transits that differ say nothing when one event carries most of the
    signal: that is a fold of different dips (several planets' single transits), not a binary."""
    tells = [t for t in vet(c) if t in EB_TELLS]
    if c.max_single_event_share > SINGLE_EVENT_DOMINATED:
        tells = [t for t in tells if t != "odd_even_depths"]
    return bool(tells)


def vet_star(cands: list) -> None:
    """Each candidate's vetting: its own tests, and for the weaker ones of a star whose
    strongest signal is an eclipsing binary, ``star_is_eclipsing_binary`` (what stays after
    masking a binary's eclipses is its residue, and scored 0.55 on a real Kepler binary)."""
    binary = bool(cands) and is_binary(cands[0])
    for k, c in enumerate(cands):
        c.vetting = vet(c) + (["star_is_eclipsing_binary"] if binary and k > 0 else [])
