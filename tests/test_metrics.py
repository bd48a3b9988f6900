"""Metrics: a hand-worked example, scikit-learn as the oracle, streaming = one-shot, and errors."""
import numpy as np
import pytest

from fastconv import metrics as M

# ---- a 3-class example worked by hand --------------------------------------------------------
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 0, 1, 2, 1, 1, 0, 2, 2, 1])
# Confusion matrix (rows true, columns predicted):
#   true 0 -> predicted 0, 0, 1, 2 : [2, 1, 1]
#   true 1 -> predicted 1, 1, 0    : [1, 2, 0]
#   true 2 -> predicted 2, 2, 1    : [0, 1, 2]
CM = [[2, 1, 1], [1, 2, 0], [0, 1, 2]]
# tp = [2, 2, 2]; predicted per class (column sums) = [3, 4, 3]; support (row sums) = [4, 3, 3]
# precision = tp / predicted = [2/3, 2/4, 2/3]
# recall    = tp / support   = [2/4, 2/3, 2/3]
# f1        = 2 tp / (predicted + support) = [4/7, 4/7, 4/6]
PRECISION = [2 / 3, 1 / 2, 2 / 3]
RECALL = [1 / 2, 2 / 3, 2 / 3]
F1 = [4 / 7, 4 / 7, 2 / 3]
# accuracy = 6 correct / 10 = 0.6, which is also every micro average
# macro precision = (2/3 + 1/2 + 2/3) / 3 = 11/18;  macro recall = (1/2 + 2/3 + 2/3) / 3 = 11/18
# macro F1 = (4/7 + 4/7 + 2/3) / 3 = 38/63
# weighted precision = (4 * 2/3 + 3 * 1/2 + 3 * 2/3) / 10 = 37/60
# weighted recall = (4 * 1/2 + 3 * 2/3 + 3 * 2/3) / 10 = 0.6;  weighted F1 = (4 * 4/7 + 3 * 4/7 + 3 * 2/3) / 10 = 0.6


def test_hand_worked_confusion_matrix_and_scores():
    np.testing.assert_array_equal(M.confusion_matrix(Y_TRUE, Y_PRED), CM)
    assert M.confusion_matrix(Y_TRUE, Y_PRED).dtype == np.int64
    assert M.accuracy(Y_TRUE, Y_PRED) == pytest.approx(0.6)
    np.testing.assert_allclose(M.precision(Y_TRUE, Y_PRED, average=None), PRECISION)
    np.testing.assert_allclose(M.recall(Y_TRUE, Y_PRED, average=None), RECALL)
    np.testing.assert_allclose(M.f1_score(Y_TRUE, Y_PRED, average=None), F1)
    assert M.precision(Y_TRUE, Y_PRED) == pytest.approx(11 / 18)
    assert M.recall(Y_TRUE, Y_PRED, average="macro") == pytest.approx(11 / 18)
    assert M.f1_score(Y_TRUE, Y_PRED) == pytest.approx(38 / 63)
    assert M.precision(Y_TRUE, Y_PRED, average="weighted") == pytest.approx(37 / 60)
    assert M.recall(Y_TRUE, Y_PRED, average="weighted") == pytest.approx(0.6)
    assert M.f1_score(Y_TRUE, Y_PRED, average="weighted") == pytest.approx(0.6)
    for fn in (M.precision, M.recall, M.f1_score):
        assert fn(Y_TRUE, Y_PRED, average="micro") == pytest.approx(0.6)
        assert isinstance(fn(Y_TRUE, Y_PRED), float)


def test_one_hot_and_probability_rows_are_argmaxed():
    onehot_true = np.eye(3)[Y_TRUE]
    probs = np.full((10, 3), 0.1) + 0.7 * np.eye(3)[Y_PRED]
    np.testing.assert_array_equal(M.confusion_matrix(onehot_true, probs), CM)
    assert M.f1_score(onehot_true, probs) == pytest.approx(38 / 63)
    assert M.accuracy(Y_TRUE, probs) == pytest.approx(0.6)
    # a class that is never predicted and never true still gets a row when the width says so
    np.testing.assert_array_equal(M.confusion_matrix(Y_TRUE, np.eye(4)[Y_PRED]), np.pad(CM, ((0, 1), (0, 1))))


def test_zero_division_is_zero_and_absent_classes_leave_the_macro_average():
    # class 2 is never predicted: precision 0/0 -> 0; class 1 is never true nor predicted (num_classes=3 row)
    y_true, y_pred = [0, 0, 2, 2], [0, 2, 0, 0]
    # cm = [[1, 0, 1], [0, 0, 0], [2, 0, 0]]: class 0 precision 1/3, recall 1/2; class 2 precision 0/1, recall 0/2
    np.testing.assert_allclose(M.precision(y_true, y_pred, average=None), [1 / 3, 0, 0])
    np.testing.assert_allclose(M.f1_score(y_true, y_pred, average=None), [2 / 5, 0, 0])
    assert M.precision(y_true, y_pred) == pytest.approx((1 / 3 + 0) / 2)  # over classes 0 and 2 only
    assert M.precision([0, 1], [0, 0], average=None)[1] == 0.0  # never predicted: 0/0
    assert M.recall([0, 0], [0, 1], average=None)[1] == 0.0  # never true: 0/0
    assert M.f1_score([], [], num_classes=2) == 0.0 and M.accuracy([], []) == 0.0


def test_binary_single_column_is_thresholded_at_one_half():
    y_true = np.array([[1], [0], [1], [0]])
    y_pred = np.array([[0.9], [0.2], [0.4], [0.7]])
    np.testing.assert_array_equal(M.confusion_matrix(y_true, y_pred), [[1, 1], [1, 1]])
    np.testing.assert_array_equal(M.confusion_matrix([1, 0, 1, 0], y_pred), [[1, 1], [1, 1]])


def test_classification_report_by_hand():
    text = M.classification_report(Y_TRUE, Y_PRED, class_names=["cat", "dog", "eel"])
    lines = text.splitlines()
    assert lines[0].split() == ["precision", "recall", "f1-score", "support"]
    assert lines[2].split() == ["cat", "0.67", "0.50", "0.57", "4"]
    assert lines[3].split() == ["dog", "0.50", "0.67", "0.57", "3"]
    assert lines[4].split() == ["eel", "0.67", "0.67", "0.67", "3"]
    assert lines[6].split() == ["accuracy", "0.60", "10"]
    assert lines[7].split() == ["macro", "avg", "0.61", "0.61", "0.60", "10"]
    assert lines[8].split() == ["weighted", "avg", "0.62", "0.60", "0.60", "10"]
    report = M.classification_report_dict(Y_TRUE, Y_PRED)
    assert list(report) == ["0", "1", "2", "accuracy", "macro avg", "weighted avg"]
    assert report["1"] == {"precision": 0.5, "recall": pytest.approx(2 / 3), "f1-score": pytest.approx(4 / 7), "support": 3}
    assert report["macro avg"]["f1-score"] == pytest.approx(38 / 63) and report["accuracy"] == pytest.approx(0.6)
    assert "0.6000" in M.classification_report(Y_TRUE, Y_PRED, digits=4)


# ---- scikit-learn as the oracle ---------------------------------------------------------------
def _random_case(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 7))
    n = int(rng.integers(1, 60))
    y_true = rng.integers(0, k, n)
    # predictions from a subset of the classes, so some classes are never predicted
    allowed = rng.choice(k, size=int(rng.integers(1, k + 1)), replace=False)
    y_pred = np.where(rng.random(n) < 0.5, y_true, rng.choice(allowed, n))
    return y_true, y_pred


@pytest.mark.parametrize("seed", range(40))
def test_matches_scikit_learn(seed):
    sk = pytest.importorskip("sklearn.metrics")
    y_true, y_pred = _random_case(seed)
    labels = np.union1d(y_true, y_pred)  # scikit-learn reports the classes that occur
    k = int(labels.max()) + 1
    np.testing.assert_array_equal(M.confusion_matrix(y_true, y_pred),
                                  sk.confusion_matrix(y_true, y_pred, labels=np.arange(k)))
    assert M.accuracy(y_true, y_pred) == pytest.approx(sk.accuracy_score(y_true, y_pred))
    for ours, theirs in ((M.precision, sk.precision_score), (M.recall, sk.recall_score), (M.f1_score, sk.f1_score)):
        for average in ("macro", "micro", "weighted"):
            assert ours(y_true, y_pred, average=average) == pytest.approx(
                theirs(y_true, y_pred, average=average, zero_division=0), abs=1e-12), (ours.__name__, average)
        np.testing.assert_allclose(ours(y_true, y_pred, average=None)[labels],
                                   theirs(y_true, y_pred, average=None, zero_division=0), atol=1e-12)
    ours = M.classification_report_dict(y_true, y_pred)
    theirs = sk.classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        if isinstance(value, dict):
            assert ours[key] == {k: pytest.approx(v, abs=1e-12) for k, v in value.items()}, key
        else:
            assert ours[key] == pytest.approx(value)


def test_report_text_matches_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics")
    for seed in range(5):
        y_true, y_pred = _random_case(seed + 100)
        k = int(max(y_true.max(), y_pred.max())) + 1
        y_true, y_pred = np.concatenate([y_true, np.arange(k)]), np.concatenate([y_pred, np.arange(k)])  # all occur
        names = [f"class {i}" for i in range(k)]
        for digits in (2, 4):
            assert M.classification_report(y_true, y_pred, class_names=names, digits=digits) == \
                sk.classification_report(y_true, y_pred, target_names=names, digits=digits, zero_division=0)


# ---- streaming metrics -----------------------------------------------------------------------
def _batches(seed, k=4, n=90):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, n)
    logits = rng.standard_normal((n, k)) + 2.0 * np.eye(k)[y_true]
    cuts = np.sort(rng.choice(np.arange(1, n), 5, replace=False))
    return y_true, logits, np.split(np.arange(n), cuts)


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_streaming_equals_one_shot(average):
    y_true, logits, parts = _batches(0)
    pairs = ((M.Precision, M.precision), (M.Recall, M.recall), (M.F1Score, M.f1_score))
    for cls, fn in pairs:
        metric = cls(average=average)
        for idx in parts:
            metric.update(y_true[idx], logits[idx])
        assert metric.result() == pytest.approx(fn(y_true, logits, average=average))
        assert metric.confusion.shape == (4, 4)  # inferred from y_pred's last dimension
    acc = M.Accuracy()
    for idx in parts:
        acc.update(np.eye(4)[y_true[idx]], logits[idx])
    assert acc.result() == pytest.approx(M.accuracy(y_true, logits))


def test_streaming_reset_per_class_and_growing_ids():
    metric = M.F1Score(average=None)
    metric.update([0, 1], [0, 1])
    metric.update([3, 3, 1], [3, 2, 1])  # ids seen for the first time: the matrix grows
    np.testing.assert_allclose(metric.result(), M.f1_score([0, 1, 3, 3, 1], [0, 1, 3, 2, 1], average=None))
    metric.reset()
    assert metric.result().shape == (0,)
    fixed = M.Recall(num_classes=5)
    assert fixed.result() == 0.0 and fixed.confusion.shape == (5, 5)
    fixed.update([4], [4])
    assert fixed.result() == 1.0
    # calling = update + result; class 4 recall 1/2, class 0 (predicted, never true) recall 0: macro 1/4
    assert fixed(np.array([4]), np.array([0])) == 0.25
    assert M.Accuracy().result() == 0.0


def test_get_metric_names_instances_and_classes():
    assert isinstance(M.get_metric("accuracy"), M.Accuracy) and M.get_metric("ACC").name == "acc"
    assert isinstance(M.get_metric("precision"), M.Precision)
    assert isinstance(M.get_metric(" Recall "), M.Recall)
    f1 = M.get_metric("f1")
    assert isinstance(f1, M.F1Score) and f1.name == "f1" and M.get_metric("f1_score").name == "f1_score"
    assert M.get_metric("f1") is not f1  # a fresh metric each time
    custom = M.Precision(average="weighted", num_classes=3, name="wp")
    assert M.get_metric(custom) is custom
    assert repr(custom) == "Precision(average='weighted', num_classes=3, name='wp')"
    assert M.F1Score().name == "f1_score" and isinstance(M.get_metric(M.Recall), M.Recall)


# ---- errors -----------------------------------------------------------------------------------
ERRORS = [
    ("length", lambda: M.accuracy([0, 1, 2], [0, 1]), ValueError, r"y_true and y_pred must have the same number of samples, got 3 and 2"),
    ("out of range", lambda: M.confusion_matrix([0, 3], [0, 1], num_classes=3), ValueError, r"y_true must hold class ids in \[0, 3\) \(num_classes=3\), got the id 3"),
    ("pred beyond width", lambda: M.precision([0, 5], np.eye(3)[[0, 1]]), ValueError, r"y_true must hold class ids in \[0, 3\) \(y_pred has 3 classes\), got the id 5"),
    ("width vs num_classes", lambda: M.recall([0, 1], np.eye(4)[[0, 1]], num_classes=3), ValueError, r"y_pred must have 3 columns for num_classes=3, got 4"),
    ("widths differ", lambda: M.f1_score(np.eye(3)[[0, 1]], np.eye(4)[[0, 1]]), ValueError, r"y_true and y_pred must have the same number of columns, got 3 and 4"),
    ("rank", lambda: M.accuracy(np.zeros((2, 2, 2)), [0, 1]), ValueError, r"y_true must be a rank-1 array of class ids or a rank-2 array of one-hot rows, got array of shape \(2, 2, 2\)"),
    ("scalar", lambda: M.accuracy([0], 1), ValueError, r"y_pred must be a rank-1 array"),
    ("negative", lambda: M.accuracy([0, -1], [0, 1]), ValueError, r"y_true must hold class ids >= 0, got the negative id -1"),
    ("fractional", lambda: M.accuracy([0, 1], [0.5, 1.0]), ValueError, r"y_pred must hold integer class ids, got the non-integer value 0.5"),
    ("strings", lambda: M.accuracy(["a"], [0]), TypeError, r"y_true must hold integer class ids, got array of shape \(1,\) and dtype <U1"),
    ("average", lambda: M.precision([0], [0], average="samples"), ValueError, r"average must be 'macro', 'micro', 'weighted' or None, got 'samples'"),
    ("num_classes", lambda: M.confusion_matrix([0], [0], num_classes=0), ValueError, r"num_classes must be >= 1, got 0"),
    ("class_names short", lambda: M.classification_report([0, 2], [0, 1], class_names=["a", "b"]), ValueError, r"y_true must hold class ids in \[0, 2\) \(num_classes=2\), got the id 2"),
    ("class_names str", lambda: M.classification_report([0], [0], class_names="ab"), TypeError, r"class_names must be a list of names, got str 'ab'"),
    ("unknown metric", lambda: M.get_metric("auc9"), ValueError, r"metric must be one of \['acc', 'accuracy', 'f1', 'f1_score', 'precision', 'recall'\] or a Metric instance, got 'auc9'"),
    ("metric type", lambda: M.get_metric(3), TypeError, r"metric must be a name or a Metric, got int 3"),
    ("metric average", lambda: M.F1Score(average="binary"), ValueError, r"average must be .* got 'binary'"),
    ("metric name", lambda: M.Accuracy(name=5), TypeError, r"name must be a str, got int 5"),
    ("stream range", lambda: M.Precision(num_classes=2).update([0, 2], [0, 1]), ValueError, r"y_true must hold class ids in \[0, 2\) \(num_classes=2\), got the id 2"),
    ("stream length", lambda: M.Accuracy().update([0, 1], [[0.2, 0.8]]), ValueError, r"got 2 and 1"),
]


@pytest.mark.parametrize("name,call,exc,message", ERRORS, ids=[c[0] for c in ERRORS])
def test_errors_name_the_argument(name, call, exc, message):
    with pytest.raises(exc, match=message):
        call()
