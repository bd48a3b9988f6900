"""Classification metrics: one-shot functions and streaming Metric objects for model.compile(metrics=[...]).

Labels may be class ids (N,) or one-hot / probability / logit rows (N, C), argmax-ed along the last
axis; a single column (N, 1) is binary, class 1 above 0.5. Everything is computed from the
confusion matrix (rows = true class, columns = predicted class).

Zero division gives 0, as scikit-learn's zero_division default (without its warning). The macro
average, like scikit-learn's when no labels= is given, is over the classes that occur in y_true or
y_pred; a class that occurs in neither is left out rather than counted as 0.
"""
from __future__ import annotations

import numpy as np

from ._checks import _describe, check_int
from .data.labels import class_ids

AVERAGES = ("macro", "micro", "weighted", None)


# ---- shared plumbing ---------------------------------------------------------------------------
def _implied_classes(y) -> int | None:
    """Classes implied by the width of 2-D labels (one column = binary = 2 classes)."""
    return max(y.shape[1], 2) if y.ndim == 2 else None


def _prepare(y_true, y_pred, num_classes=None):
    """-> (true ids, predicted ids, number of classes), everything checked."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    t, p = class_ids(y_true, "y_true"), class_ids(y_pred, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"y_true and y_pred must have the same number of samples, got {len(t)} and {len(p)}")
    implied = {name: (y.shape[1], _implied_classes(y)) for name, y in (("y_true", y_true), ("y_pred", y_pred))
               if y.ndim == 2}
    if num_classes is not None:
        k = check_int(num_classes, "num_classes", 1)
        for name, (cols, classes) in implied.items():
            if classes != k:
                what = "1 column (binary, 2 classes)" if cols == 1 else f"{cols} columns"
                raise ValueError(f"{name} must have {k} columns for num_classes={k}, got {what}")
        source = f"num_classes={k}"
    elif implied:
        if len({c for _, c in implied.values()}) > 1:
            raise ValueError(f"y_true and y_pred must have the same number of columns, got "
                             f"{y_true.shape[1]} and {y_pred.shape[1]}")
        name, (_, k) = next(iter(implied.items()))
        source = f"{name} has {k} classes"
    else:
        k = int(max(t.max(initial=-1), p.max(initial=-1))) + 1
        source = "inferred"
    for name, ids in (("y_true", t), ("y_pred", p)):
        if ids.size and ids.max() >= k:
            raise ValueError(f"{name} must hold class ids in [0, {k}) ({source}), got the id {int(ids.max())}")
    return t, p, k


def _confusion(t, p, k) -> np.ndarray:
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def _div(num, den):
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def _per_class(cm: np.ndarray) -> dict:
    tp = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    return {"precision": _div(tp, predicted), "recall": _div(tp, support),
            "f1": _div(2 * tp, predicted + support),  # = 2tp / (2tp + fp + fn), defined where p + r is 0
            "support": support, "present": (support + predicted) > 0}


def _check_average(average):
    if not (average is None or (isinstance(average, str) and average in AVERAGES)):
        raise ValueError(f"average must be 'macro', 'micro', 'weighted' or None, got {average!r}")
    return average


def _score(cm: np.ndarray, which: str, average):
    stats = _per_class(cm)
    values = stats[which]
    if average is None:
        return values
    if average == "micro":
        # pooled over classes; for single-label classification precision = recall = F1 = accuracy
        return float(_div(np.trace(cm), cm.sum()))
    if average == "weighted":
        return float(_div(np.sum(values * stats["support"]), stats["support"].sum()))
    present = stats["present"]
    return float(values[present].mean()) if present.any() else 0.0


# ---- one-shot functions ------------------------------------------------------------------------
def accuracy(y_true, y_pred) -> float:
    """Fraction of samples whose predicted class is the true one (0.0 when there are none)."""
    t, p, _ = _prepare(y_true, y_pred)
    return float(np.mean(t == p)) if len(t) else 0.0


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """int64 (num_classes, num_classes): entry [i, j] counts samples of true class i predicted as j."""
    return _confusion(*_prepare(y_true, y_pred, num_classes))


def precision(y_true, y_pred, average="macro", num_classes: int | None = None):
    """tp / (tp + fp); average None gives the per-class array."""
    return _score(confusion_matrix(y_true, y_pred, num_classes), "precision", _check_average(average))


def recall(y_true, y_pred, average="macro", num_classes: int | None = None):
    """tp / (tp + fn); average None gives the per-class array."""
    return _score(confusion_matrix(y_true, y_pred, num_classes), "recall", _check_average(average))


def f1_score(y_true, y_pred, average="macro", num_classes: int | None = None):
    """Harmonic mean of precision and recall; average None gives the per-class array."""
    return _score(confusion_matrix(y_true, y_pred, num_classes), "f1", _check_average(average))


def _report_classes(y_true, y_pred, class_names):
    if class_names is None:
        cm = confusion_matrix(y_true, y_pred)
        names = [str(i) for i in range(len(cm))]
    else:
        if isinstance(class_names, str) or not hasattr(class_names, "__len__"):
            raise TypeError(f"class_names must be a list of names, got {_describe(class_names)}")
        names = [str(c) for c in class_names]
        if not names:
            raise ValueError("class_names must name at least one class, got an empty list")
        cm = confusion_matrix(y_true, y_pred, num_classes=len(names))
    return cm, names


def classification_report_dict(y_true, y_pred, class_names=None) -> dict:
    """scikit-learn's output_dict layout: {class: {precision, recall, f1-score, support}, 'accuracy',
    'macro avg', 'weighted avg'}. Classes that occur in neither y_true nor y_pred are left out."""
    cm, names = _report_classes(y_true, y_pred, class_names)
    stats = _per_class(cm)
    report = {}
    for i in np.flatnonzero(stats["present"]):
        report[names[i]] = {"precision": float(stats["precision"][i]), "recall": float(stats["recall"][i]),
                            "f1-score": float(stats["f1"][i]), "support": int(stats["support"][i])}
    total = int(cm.sum())
    report["accuracy"] = float(_div(np.trace(cm), total))
    for label, average in (("macro avg", "macro"), ("weighted avg", "weighted")):
        report[label] = {"precision": _score(cm, "precision", average), "recall": _score(cm, "recall", average),
                         "f1-score": _score(cm, "f1", average), "support": total}
    return report


def classification_report(y_true, y_pred, class_names=None, digits: int = 2) -> str:
    """A text table like scikit-learn's: per-class precision, recall, F1 and support, then accuracy,
    macro and weighted averages."""
    digits = check_int(digits, "digits", 0)
    report = classification_report_dict(y_true, y_pred, class_names)
    rows = [k for k in report if k not in ("accuracy", "macro avg", "weighted avg")]
    width = max([len(r) for r in rows] + [len("weighted avg"), digits])
    col = max(9, digits + 3)

    def line(label, cells):
        return f"{label:>{width}} " + "".join(f" {c:>{col}}" for c in cells)

    def num(v):
        return f"{v:.{digits}f}"

    lines = [line("", ["precision", "recall", "f1-score", "support"]), ""]
    for r in rows + [None, "macro avg", "weighted avg"]:
        if r is None:  # the accuracy line sits between the classes and the averages, as scikit-learn's
            lines += ["", line("accuracy", ["", "", num(report["accuracy"]), report["macro avg"]["support"]])]
            continue
        e = report[r]
        lines.append(line(r, [num(e["precision"]), num(e["recall"]), num(e["f1-score"]), e["support"]]))
    return "\n".join(lines) + "\n"


# ---- streaming metrics -------------------------------------------------------------------------
class Metric:
    """A value accumulated over batches: reset(), update(y_true, y_pred) per batch, result() at the end.

    y_true and y_pred take the same forms as the functions above (the model passes class ids and
    its output rows). Calling the metric updates it and returns the running result.
    """

    default_name = "metric"

    def __init__(self, name: str | None = None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, got {_describe(name)}")
        self.name = name or self.default_name
        self.reset()

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, y_true, y_pred) -> None:
        raise NotImplementedError

    def result(self) -> float:
        raise NotImplementedError

    def __call__(self, y_true, y_pred):
        self.update(y_true, y_pred)
        return self.result()

    def get_config(self) -> dict:
        return {"name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Accuracy(Metric):
    """Fraction of samples classified correctly, over every batch since reset()."""

    default_name = "accuracy"

    def reset(self) -> None:
        self.correct = 0
        self.total = 0

    def update(self, y_true, y_pred) -> None:
        t, p, _ = _prepare(y_true, y_pred)
        self.correct += int(np.sum(t == p))
        self.total += len(t)

    def result(self) -> float:
        return self.correct / self.total if self.total else 0.0


class _ConfusionMetric(Metric):
    """Accumulates a confusion matrix; num_classes None takes it from y_pred's columns (or the ids seen)."""

    _which = ""

    def __init__(self, average="macro", num_classes: int | None = None, name: str | None = None):
        self.average = _check_average(average)
        self.num_classes = None if num_classes is None else check_int(num_classes, "num_classes", 1)
        super().__init__(name)

    def reset(self) -> None:
        k = self.num_classes or 0
        self.confusion = np.zeros((k, k), np.int64)

    def update(self, y_true, y_pred) -> None:
        t, p, k = _prepare(y_true, y_pred, self.num_classes)
        have = len(self.confusion)
        if k > have:  # inferred class count grew (ids seen for the first time): pad with zeros
            self.confusion = np.pad(self.confusion, ((0, k - have), (0, k - have)))
        self.confusion += _confusion(t, p, len(self.confusion))

    def result(self):
        """A float; the per-class array when average is None."""
        return _score(self.confusion, self._which, self.average)

    def get_config(self) -> dict:
        return {"average": self.average, "num_classes": self.num_classes, "name": self.name}


class Precision(_ConfusionMetric):
    default_name = "precision"
    _which = "precision"


class Recall(_ConfusionMetric):
    default_name = "recall"
    _which = "recall"


class F1Score(_ConfusionMetric):
    default_name = "f1_score"
    _which = "f1"


METRICS = {"accuracy": Accuracy, "acc": Accuracy, "precision": Precision, "recall": Recall,
           "f1": F1Score, "f1_score": F1Score}


def get_metric(identifier) -> Metric:
    """A Metric from a name ('accuracy'/'acc', 'precision', 'recall', 'f1'/'f1_score', any case), a Metric
    class, or a Metric instance (returned as is). A metric made from a name is named by it, lower-cased,
    so metrics=['f1'] logs 'f1' and 'val_f1'."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if not isinstance(identifier, str):
        raise TypeError(f"metric must be a name or a Metric, got {_describe(identifier)}")
    key = identifier.strip().lower()
    if key not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)} or a Metric instance, got {identifier!r}")
    return METRICS[key](name=key)
