"""The search space: what a trial may change, each within a documented default range the user can narrow.

| parameter               | default range        | meaning                                                   |
|-------------------------|----------------------|-----------------------------------------------------------|
| early_exit_<k>          | 0.50 .. 0.999        | confidence to stop at early exit k with a defect class    |
| early_exit_ok_<k>       | 0.50 .. 0.999        | ... with the ok class (inspection may ask more of "ok")   |
| reuse_window            | 0 .. 10 (frames)     | frames a near-identical frame may reuse a decision; 0 off |
| reuse_threshold         | 0.5 .. 8.0 (grey)    | largest patch change still counted as the same frame      |
| variant                 | the bundles given    | which pruned variant (`--variant`), by prune threshold    |

`--range NAME=LO:HI` narrows one (a name without `_<k>` narrows every exit's), `--range NAME=VALUE` fixes it.
Ranges may only narrow the default: a bar of 1.0 (never exit) or a window beyond 10 are outside by design.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from edge_runtime.errors import InputError

DEFAULTS: dict[str, tuple[float, float]] = {
    "early_exit": (0.5, 0.999),
    "early_exit_ok": (0.5, 0.999),
    "reuse_window": (0, 10),
    "reuse_threshold": (0.5, 8.0),
}


@dataclass
class SearchSpace:
    early_exits: int
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # full names -> (lo, hi)
    variants: list[str] = field(default_factory=lambda: ["base"])  # variant names, "base" first
    tune_reuse: bool = True

    @classmethod
    def build(cls, early_exits: int, narrow: list[str] = (), variants: list[str] = ("base",),
              tune_reuse: bool = True) -> "SearchSpace":
        ranges = {}
        for k in range(early_exits):
            ranges[f"early_exit_{k}"] = DEFAULTS["early_exit"]
            ranges[f"early_exit_ok_{k}"] = DEFAULTS["early_exit_ok"]
        ranges["reuse_window"], ranges["reuse_threshold"] = DEFAULTS["reuse_window"], DEFAULTS["reuse_threshold"]
        space = cls(early_exits, ranges, list(variants), tune_reuse)
        for text in narrow:
            space.narrow(text)
        return space

    def narrow(self, text: str) -> None:
        """Apply one `NAME=LO:HI` or `NAME=VALUE`; InputError (one line) for anything else."""
        name, sep, value = text.partition("=")
        names = [n for n in self.ranges if n == name or (n.rsplit("_", 1)[0] == name and n[-1].isdigit())]
        if not sep or not names:
            raise InputError(f"--range {text}: expected NAME=LO:HI or NAME=VALUE with NAME one of "
                             f"{', '.join(sorted(set(self.ranges) | set(DEFAULTS)))}")
        try:
            lo, _, hi = value.partition(":")
            lo, hi = float(lo), float(hi or lo)
        except ValueError:
            raise InputError(f"--range {text}: {value!r} is not LO:HI or a number") from None
        for n in names:
            dlo, dhi = self.ranges[n]
            if not dlo <= lo <= hi <= dhi:
                raise InputError(f"--range {text}: {n} may be narrowed within {dlo:g}..{dhi:g}, not {lo:g}..{hi:g}")
            self.ranges[n] = (lo, hi)

    def suggest(self, trial) -> dict:
        """A trial's parameters, as the runtime takes them."""
        def num(name, integer=False):
            lo, hi = self.ranges[name]
            if lo == hi:
                return int(lo) if integer else lo
            return trial.suggest_int(name, int(lo), int(hi)) if integer else trial.suggest_float(name, lo, hi)

        n = self.early_exits
        params = {"early_exit": [num(f"early_exit_{k}") for k in range(n)],
                  "early_exit_ok": [num(f"early_exit_ok_{k}") for k in range(n)],
                  "reuse_window": num("reuse_window", integer=True) if self.tune_reuse else 0,
                  "reuse_threshold": num("reuse_threshold") if self.tune_reuse else 3.0,
                  "variant": (trial.suggest_categorical("variant", self.variants) if len(self.variants) > 1
                              else self.variants[0])}
        if not params["reuse_window"]:
            params["reuse_threshold"] = 3.0
        return params

    def as_trial_params(self, params: dict) -> dict | None:
        """Optuna's flat parameters for a configuration (to enqueue the untuned one), None when it lies
        outside the space."""
        flat = {}
        for k in range(self.early_exits):
            flat[f"early_exit_{k}"] = params["early_exit"][k]
            flat[f"early_exit_ok_{k}"] = params["early_exit_ok"][k]
        if self.tune_reuse:
            flat["reuse_window"], flat["reuse_threshold"] = params["reuse_window"], params["reuse_threshold"]
        for name, v in flat.items():
            lo, hi = self.ranges[name]
            if not lo <= v <= hi:
                return None
        flat = {n: v for n, v in flat.items() if self.ranges[n][0] != self.ranges[n][1]}
        if len(self.variants) > 1:
            flat["variant"] = params.get("variant", "base")
        return flat

    def describe(self) -> dict:
        return {"ranges": {n: list(r) for n, r in self.ranges.items()}, "variants": self.variants,
                "tune_reuse": self.tune_reuse}
