"""An experiment is data: a TOML file with a base estimator, one or two axes of values, seeds and
protocols. ``load(name_or_path)`` reads and checks one; ``Experiment.cells(protocol, n_seeds)``
expands it into cells (value x seed), each with a stable id, so that a finished cell is found
again in the MLflow store and never run twice.

The file format (``mnist_estimators/pipelines/experiments/*.toml`` are the seeds' studies; copy
one to start)::

    name = "seed004-init"                 # unique; the CLI's NAME
    source = "004"                        # the seed write-up it reproduces ("ours" for our own)
    title = "Weight initialization, MLP 100-100"
    estimator = "mlp"                     # softmax | mlp | cnn
    preprocessing = "none"                # or "zscore": StandardScaler before the estimator
    seeds = 5                             # default --seeds
    baseline = "Xavier"                   # the label the others are compared with

    [base]                                # estimator parameters of every cell
    hidden_sizes = [100, 100]
    lr = 1e-3
    lr_schedule = "None"                  # TOML has no null: the string "None" is None

    [[axes]]                              # one or two; cells are their product
    param = "init"                        # one parameter per value...
    values = ["zero", "uniform", "he_uniform", "xavier_uniform"]
    labels = ["zero", "U(0,1)", "He", "Xavier"]   # optional, default str(value)
    # ...or no `param` and each value a table of parameters: values = [{batch_size = 8, lr = 5e-4}]

    [seed_reported]                       # the seed's own figures by label, shown beside ours
    He = "0.966 ± 0.0008"

    [[claims]]                            # the seed's claims, checked by the report
    text = "He and Xavier are within noise of each other"
    kind = "similar"                      # similar | better | best | worst | increasing | decreasing
    a = "He"                              # similar, better: a against b; best, worst: a alone;
    b = "Xavier"                          # increasing, decreasing: along the axis, from a to b
                                          # when both are given (all values otherwise)

    cell_figures = ["weight_histograms", "embedding"]   # optional: the seed-0 run of each
    embedding = "tsne"                    # value draws these (tracking's figures="all"), and
                                          # the report shows them side by side (pca | tsne)

    [protocols.fast]                      # faithful, fast, quick: each may change the budget
    params = { max_epochs = 5 }           # over [base]
    train_size = 10000                    # images drawn (stratified, fixed) from MNIST train
    test_size = 10000                     # from MNIST test (default: all 10,000)
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ESTIMATORS = {"softmax": "SoftmaxRegressionClassifier", "mlp": "MLPClassifier",
              "cnn": "CNNClassifier"}
PROTOCOLS = ("faithful", "fast", "quick")
CLAIM_KINDS = ("similar", "better", "best", "worst", "increasing", "decreasing")
PREPROCESSING = ("none", "zscore")
CELL_FIGURES = ("weight_histograms", "embedding", "learning_curves", "confusion_matrix",
                "misclassified")


class ExperimentError(ValueError):
    """An experiment file, name, axis, value or protocol that cannot be run; the message says
    which file and which entry."""


def folder():
    """The packaged experiments: ``mnist_estimators/pipelines/experiments``."""
    from .. import pipelines

    return Path(pipelines.__file__).parent / "experiments"


def available():
    """Name -> path of every packaged experiment."""
    out = {}
    for path in sorted(folder().glob("*.toml")):
        with open(path, "rb") as f:
            out[tomllib.load(f).get("name", path.stem)] = path
    return out


def load(name_or_path):
    """The experiment called ``name_or_path`` (packaged), or read from that ``.toml`` file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ExperimentError(f"{path}: no such experiment file")
    else:
        known = available()
        if str(name_or_path) not in known:
            raise ExperimentError(f"Unknown experiment {name_or_path!r}; choose one of "
                                  f"{sorted(known)} or give a .toml file")
        path = known[str(name_or_path)]
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(f"{path}: not valid TOML ({exc})") from exc
    return Experiment.from_dict(data, path)


@dataclass(frozen=True)
class Axis:
    param: str | None         # None: each value is a dict of parameters
    values: tuple
    labels: tuple

    def params(self, i):
        value = self.values[i]
        return dict(value) if self.param is None else {self.param: value}


@dataclass(frozen=True)
class Cell:
    """One fit: the estimator's parameters (base, protocol, axis values) and its seed."""
    experiment: str
    protocol: str
    labels: tuple             # one label per axis
    params: dict = field(hash=False)
    seed: int = 0

    @property
    def value(self):
        return " · ".join(self.labels)

    @property
    def name(self):
        """The run's name: the grid's row and the seed, ``batch_size=32 · seed 3``."""
        return f"{self.value} · seed {self.seed}"

    @property
    def id(self):
        """Stable across runs and machines: the experiment, protocol, parameters and seed."""
        key = json.dumps([self.experiment, self.protocol, _plain(self.params), self.seed],
                         sort_keys=True, default=str)
        return hashlib.sha1(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Experiment:
    name: str
    path: Path
    source: str
    title: str
    estimator: str
    preprocessing: str
    base: dict
    axes: tuple
    seeds: int
    baseline: str | None
    protocols: dict
    seed_reported: dict
    claims: tuple
    description: str = ""
    cell_figures: tuple = ()
    embedding: str = "tsne"

    @classmethod
    def from_dict(cls, data, path=Path("<dict>")):
        where = str(path)

        def need(key, kind):
            if key not in data:
                raise ExperimentError(f"{where}: missing `{key}`")
            if not isinstance(data[key], kind):
                raise ExperimentError(f"{where}: `{key}` must be {kind.__name__}, "
                                      f"got {data[key]!r}")
            return data[key]

        name = need("name", str)
        estimator = need("estimator", str)
        if estimator not in ESTIMATORS:
            raise ExperimentError(f"{where}: estimator {estimator!r} is not one of "
                                  f"{sorted(ESTIMATORS)}")
        pre = data.get("preprocessing", "none")
        if pre not in PREPROCESSING:
            raise ExperimentError(f"{where}: preprocessing {pre!r} is not one of {list(PREPROCESSING)}")
        axes = []
        for i, ax in enumerate(need("axes", list)):
            values = ax.get("values")
            if not isinstance(values, list) or not values:
                raise ExperimentError(f"{where}: axes[{i}] needs a non-empty `values` list")
            param = ax.get("param")
            if param is None and not all(isinstance(v, dict) for v in values):
                raise ExperimentError(f"{where}: axes[{i}] has no `param`, so each value must be "
                                      "a table of parameters")
            labels = ax.get("labels") or [_label(param, v) for v in values]
            if len(labels) != len(values):
                raise ExperimentError(f"{where}: axes[{i}] has {len(values)} values but "
                                      f"{len(labels)} labels")
            axes.append(Axis(param, tuple(_freeze(v) for v in values), tuple(map(str, labels))))
        if not 1 <= len(axes) <= 2:
            raise ExperimentError(f"{where}: one or two axes, got {len(axes)}")
        protocols = need("protocols", dict)
        for p, spec in protocols.items():
            if p not in PROTOCOLS:
                raise ExperimentError(f"{where}: protocol {p!r} is not one of {list(PROTOCOLS)}")
            extra = set(spec) - {"params", "train_size", "test_size", "note"}
            if extra:
                raise ExperimentError(f"{where}: protocols.{p} has unknown keys {sorted(extra)}")
        claims = tuple(data.get("claims", []))
        for c in claims:
            if c.get("kind") not in CLAIM_KINDS:
                raise ExperimentError(f"{where}: claim {c.get('text', c)!r} has kind "
                                      f"{c.get('kind')!r}, not one of {list(CLAIM_KINDS)}")
        cell_figures = tuple(data.get("cell_figures", ()))
        unknown = sorted(set(cell_figures) - set(CELL_FIGURES))
        if unknown:
            raise ExperimentError(f"{where}: cell_figures {unknown} are not among {list(CELL_FIGURES)}")
        embedding = data.get("embedding", "tsne")
        if embedding not in ("pca", "tsne"):
            raise ExperimentError(f"{where}: embedding must be \"pca\" or \"tsne\", got {embedding!r}")
        exp = cls(name=name, path=Path(path), source=str(data.get("source", "ours")),
                  title=str(data.get("title", name)), estimator=estimator, preprocessing=pre,
                  base=dict(data.get("base", {})), axes=tuple(axes),
                  seeds=int(data.get("seeds", 5)), baseline=data.get("baseline"),
                  protocols=protocols, seed_reported=dict(data.get("seed_reported", {})),
                  claims=claims, description=str(data.get("description", "")).strip(),
                  cell_figures=cell_figures, embedding=embedding)
        exp.check()
        return exp

    # -- checks
    def labels(self):
        """Every value's label, in grid order (the product of the axes)."""
        return [" · ".join(ls) for ls in itertools.product(*(ax.labels for ax in self.axes))]

    def check(self):
        """Parameters the estimator does not have, and labels the file refers to but the axes
        do not define, are errors here, before any training."""
        valid = set(self.estimator_class()().get_params())
        where = str(self.path)
        sources = [("base", self.base)] + [
            (f"protocols.{p}.params", spec.get("params", {})) for p, spec in self.protocols.items()]
        for i, ax in enumerate(self.axes):
            sources += [(f"axes[{i}] value {label!r}", ax.params(j))
                        for j, label in enumerate(ax.labels)]
        for what, params in sources:
            unknown = sorted(set(params) - valid)
            if unknown:
                raise ExperimentError(
                    f"{where}: {what} sets {unknown}, which {ESTIMATORS[self.estimator]} does "
                    "not have (its parameters: see get_params())")
        labels = set(self.labels())
        refs = [("baseline", self.baseline)] if self.baseline else []
        refs += [("seed_reported", k) for k in self.seed_reported]
        for c in self.claims:
            refs += [(f"claim {c.get('text', '')!r}", c[k]) for k in ("a", "b") if k in c]
        for what, label in refs:
            if label not in labels:
                raise ExperimentError(f"{where}: {what} names {label!r}, which is not one of "
                                      f"the values {sorted(labels)}")

    def estimator_class(self):
        from .. import estimators

        return getattr(estimators, ESTIMATORS[self.estimator])

    def protocol(self, protocol):
        if protocol not in self.protocols:
            raise ExperimentError(f"{self.path}: experiment {self.name!r} has no protocol "
                                  f"{protocol!r}; it has {sorted(self.protocols)}")
        return self.protocols[protocol]

    def cells(self, protocol, n_seeds=None):
        """Every (value, seed) cell of ``protocol``, values in grid order, seeds 0..n-1."""
        spec = self.protocol(protocol)
        n_seeds = self.seeds if n_seeds is None else int(n_seeds)
        if n_seeds < 1:
            raise ExperimentError(f"--seeds must be at least 1, got {n_seeds}")
        out = []
        for combo in itertools.product(*(range(len(ax.values)) for ax in self.axes)):
            params = {**self.base, **spec.get("params", {})}
            for ax, i in zip(self.axes, combo):
                params.update(ax.params(i))
            labels = tuple(ax.labels[i] for ax, i in zip(self.axes, combo))
            out += [Cell(self.name, protocol, labels, _thaw(params), seed)
                    for seed in range(n_seeds)]
        return out

    def build(self, cell):
        """The cell's unfitted pipeline (or estimator), seeded by the cell."""
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        est = self.estimator_class()(**{**cell.params, "random_state": cell.seed})
        if self.preprocessing == "zscore":
            # uint8 pixels -> per-pixel z-scores (seed 002); the estimator then sees floats
            return make_pipeline(StandardScaler(), est)
        return est


def _label(param, value):
    if isinstance(value, dict):
        return " ".join(f"{k}={_short(v)}" for k, v in value.items())
    return f"{param}={_short(value)}"


def _short(v):
    if isinstance(v, (list, tuple)):
        return "-".join(map(str, v))
    return f"{v:g}" if isinstance(v, float) else str(v)


def _freeze(value):
    """TOML lists become tuples (hashable, and what ``hidden_sizes`` expects)."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


def _thaw(params):
    """Parameters as the estimator takes them: lists as tuples, and the string "None" as None
    (TOML has no null, and ``lr_schedule=None`` is how a constant rate is asked for)."""
    out = {}
    for k, v in params.items():
        if isinstance(v, list):
            v = tuple(_freeze(x) for x in v)
        out[k] = None if v == "None" else v
    return out


def _plain(params):
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
