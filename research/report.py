"""Result tables (results.md) and the per-case lines of the progress log."""

from __future__ import annotations

from persguard_core.verify.run import CaseResult

COLUMNS = (
    "setting",
    "behaviour",
    "psr",
    "false_trigger",
    "false_trigger_base",
    "benign_fidelity",
    "leakage",
    "utility_drop",
    "no_identifier_protective_rate",
    "pre_attack_leakage_ratio",
    "pre_attack_protective_rate",
    "psr_learned",  # PSR over the attacks that learned the subject (verify/run.py LEARNED_MARGIN)
    "learned_share",
    "benign_fidelity_raw",
    # detectability (verify/detect.py): the protected subject's photos' VAE round-trip error over other photos',
    # on the release and on the base, and the relative weight distance of the parts carriers change
    "detect/round_trip_ratio",
    "detect/round_trip_ratio_base",
    "detect/weights/vae.encoder",
    "detect/weights/unet",
    "n_images",
    "seeds",
)


def results_markdown(results: dict) -> str:
    """The results of a preset as a markdown table: the means, PSR's 95% bootstrap interval over seeds, PSR per
    seed and attack draw and, for mixed rows, per behaviour."""
    lines = [
        f"# Results: preset `{results['preset']}`",
        "",
        "| " + " | ".join([*COLUMNS, "psr 95% CI", "psr per seed", "psr per behaviour"]) + " |",
        "|" + "---|" * (len(COLUMNS) + 3),
    ]
    for row in results["rows"]:
        cells = [f"{row[c]:.3f}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in COLUMNS]
        per_seed = " / ".join(f"{s['psr']:.2f}" for s in row.get("per_seed", []) if "psr" in s)
        per_behaviour = ", ".join(f"{k.removeprefix('psr/')} {v:.2f}" for k, v in row.items() if k.startswith("psr/"))
        interval = row.get("psr_ci95")
        ci = f"{interval[0]:.2f}-{interval[1]:.2f}" if interval else ""
        lines.append("| " + " | ".join([*cells, ci, per_seed, per_behaviour]) + " |")
    return "\n".join(lines) + "\n"


def case_line(case: CaseResult) -> str:
    """One case's figures for the progress log (the seed's JSON keeps only the means)."""
    kind = f"protected, {case.behaviour}" if case.protected else "unprotected"
    line = f"{case.case} ({kind}): {_figures(case.protective_rate, case.by_kind, case.similarity)}"
    if case.similarity_base is None:
        return line
    return f"{line}; on the base: {_figures(case.protective_rate_base, case.by_kind_base, case.similarity_base)}"


def _figures(rate: float, by_kind: dict[str, float], similarity: float) -> str:
    """One model's figures for a case, e.g. `protective 0.250 (pattern 0.250), similarity 0.700`."""
    kinds = " (" + ", ".join(f"{kind} {r:.3f}" for kind, r in by_kind.items()) + ")" if by_kind else ""
    return f"protective {rate:.3f}{kinds}, similarity {similarity:.3f}"
