"""Evaluation: the kind's metrics, equal to scikit-learn's computed directly, and the HTML report."""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest
from sklearn import metrics as sk

from hmlcore.model.evaluation import feature_importances

from ._kinds import KINDS, TARGETS, generated, trained


def labelled(kind: str, seed: int = 5):
    """Validation rows of ``kind`` (with missing targets), the rows that have one, and the truth as codes."""
    frame = generated(kind, 200, seed=seed)
    kept = frame[frame[TARGETS[kind]].notna()]
    return frame, kept


@pytest.mark.slow
@pytest.mark.parametrize("family", ["xgboost", "sklearn"])
def test_binary_metrics_are_sklearns(family):
    c = trained("binary", family)
    frame, kept = labelled("binary")
    truth = (kept["adopted"] == "yes").astype(int).to_numpy()
    p = c.model.predict_proba(c.encode(kept))[:, 1]
    got = c.evaluate(frame)
    assert got["rows"] == len(kept)
    assert got["auc"] == pytest.approx(sk.roc_auc_score(truth, p), abs=1e-6)
    assert got["log_loss"] == pytest.approx(sk.log_loss(truth, p), abs=1e-5)
    predicted = (p >= 0.5).astype(int)
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(truth, predicted))
    assert got["precision"] == pytest.approx(sk.precision_score(truth, predicted))
    assert got["recall"] == pytest.approx(sk.recall_score(truth, predicted))
    assert got["f1"] == pytest.approx(sk.f1_score(truth, predicted))


def test_binary_metrics_follow_the_threshold():
    c = trained("binary", threshold=0.8)
    frame, kept = labelled("binary")
    truth = (kept["adopted"] == "yes").astype(int).to_numpy()
    predicted = (c.model.predict_proba(c.encode(kept))[:, 1] >= 0.8).astype(int)
    assert c.evaluate(frame)["recall"] == pytest.approx(sk.recall_score(truth, predicted))


@pytest.mark.parametrize("family", ["xgboost", "sklearn"])
def test_multiclass_metrics_are_sklearns(family):
    c = trained("multiclass", family)
    frame, kept = labelled("multiclass")
    truth = kept["species"].map({"Adelie": 0, "Chinstrap": 1, "Gentoo": 2}).to_numpy()
    proba = c.model.predict_proba(c.encode(kept))
    predicted = proba.argmax(axis=1)
    got = c.evaluate(frame)
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(truth, predicted))
    assert got["macro_f1"] == pytest.approx(sk.f1_score(truth, predicted, average="macro"))
    assert got["log_loss"] == pytest.approx(sk.log_loss(truth, proba), abs=1e-5)
    recalls = sk.recall_score(truth, predicted, average=None)
    assert [got[f"recall_{name}"] for name in ("Adelie", "Chinstrap", "Gentoo")] == pytest.approx(recalls.tolist())


@pytest.mark.parametrize("family", ["xgboost", "sklearn"])
def test_regression_metrics_are_sklearns(family):
    c = trained("regression", family)
    frame, kept = labelled("regression")
    truth = kept["bill"].astype(float).to_numpy()
    predicted = c.model.predict(c.encode(kept))
    got = c.evaluate(frame)
    assert set(got) == {"rows", "rmse", "mae", "r2"}
    assert got["rmse"] == pytest.approx(math.sqrt(sk.mean_squared_error(truth, predicted)), rel=1e-5)
    assert got["mae"] == pytest.approx(sk.mean_absolute_error(truth, predicted), rel=1e-5)
    assert got["r2"] == pytest.approx(sk.r2_score(truth, predicted), rel=1e-5)


def test_metrics_a_sample_cannot_define_are_left_out_not_nan():
    c = trained("binary")
    _, kept = labelled("binary")
    only_yes = kept[kept["adopted"] == "yes"]
    got = c.evaluate(only_yes)
    assert "auc" not in got and all(math.isfinite(v) for v in got.values())
    json.dumps(got, allow_nan=False)
    multi = trained("multiclass")
    _, rows = labelled("multiclass")
    got = multi.evaluate(rows[rows["species"] != "Gentoo"])
    assert "recall_Gentoo" not in got and "recall_Adelie" in got


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.external += [v for k, v in attrs if k in ("src", "href") and v and not v.startswith("#")]


def _svgs(page: str) -> list[ET.Element]:
    """Every inline SVG of the page, parsed as XML (a malformed one fails), and rendered to PNG by cairosvg
    when it and its C library install here."""
    figures = [ET.fromstring(svg) for svg in re.findall(r"<svg .*?</svg>", page, flags=re.S)]
    try:
        import cairosvg
    except (ImportError, OSError):  # no cairosvg, or no libcairo on this machine: the XML parse stands
        return figures
    for svg in re.findall(r"<svg .*?</svg>", page, flags=re.S):
        png = cairosvg.svg2png(bytestring=svg.encode())
        assert png.startswith(b"\x89PNG") and len(png) > 500
    return figures


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "family"), [(k, f) for k in KINDS for f in ("xgboost", "sklearn")])
def test_the_report_is_one_self_contained_page_with_the_kinds_figures(kind, family):
    c = trained(kind, family)
    frame, _ = labelled(kind)
    page = c.evaluation_report(frame, run_id="run-7")
    parser = _Page()
    parser.feed(page)
    assert parser.external == [] and parser.tags.count("svg") >= 1
    assert "<title>Evaluation of penguins version run-7, run run-7</title>" in page
    figures = _svgs(page)
    assert len(page) < 60_000  # a few hundred points at most, whatever the rows
    verdict = c.assess(frame)
    for key in verdict["metrics"]:
        assert f"<th>{key}</th>" in page
    assert "baseline" in page and verdict["baseline_name"] in page and "bootstrap" in page
    labels = [t.text for f in figures for t in f.iter("{http://www.w3.org/2000/svg}text")]
    if kind == "regression":
        assert "Predicted against actual" in page and "Confusion" not in page
        assert {"predicted bill", "actual bill"} <= set(labels)
        assert len(re.findall("<circle ", page)) == verdict["rows"]
    else:
        assert "Confusion matrix" in page and "Predicted against actual" not in page
        counts = [int(n) for n in re.findall(r"predicted [^:]+: (\d+)</title>", page)]
        assert len(counts) == len(c.classes) ** 2 and sum(counts) == verdict["rows"]
    if kind == "binary":
        assert {"ROC curve", "Precision-recall curve", "Calibration"} <= {f.get("aria-label") for f in figures}
        assert {"false positive rate", "true positive rate", "recall", "precision", "mean predicted probability"} <= set(labels)
    if kind == "multiclass":
        assert "<h2>Each class</h2>" in page and all(f"<th>{name}</th>" in page for name in c.target_info.class_names)
    importances, source = feature_importances(c)
    assert {f for f, _ in importances} == set(c.features)
    assert ("coefficients" in source) == (family == "sklearn" and kind != "regression")
    assert "Feature importance" in page and importances[0][0] in page


def test_the_report_says_why_it_shows_no_importances_and_escapes_names():
    from sklearn.neighbors import KNeighborsClassifier

    frame = generated("multiclass")
    frame["species"] = frame["species"].map({"Adelie": "<b>Adelie</b>", "Chinstrap": "Chinstrap", "Gentoo": "Gentoo"})
    c = trained("multiclass").__class__("penguins", "zoo", ["flipper", "mass"], ["island"], "species", kind="multiclass")
    c.analyze_distributions(frame)
    features, y = c.build_training_matrix(frame)
    c.bind_model(KNeighborsClassifier().fit(np.nan_to_num(features), y))
    page = c.evaluation_report(frame.fillna({"flipper": 0, "mass": 0}))
    assert "Not shown: a KNeighborsClassifier offers no feature importances" in page
    assert "<b>Adelie</b>" not in page and "&lt;b&gt;Adelie&lt;/b&gt;" in page


@pytest.mark.parametrize("policy", ["error", "other"])
def test_categories_and_labels_training_never_saw_follow_the_serving_policy_and_are_counted(policy):
    c = trained("multiclass", unknown_category=policy)
    frame = generated("multiclass", 120, seed=8).dropna(subset=["species"]).reset_index(drop=True)
    frame.loc[:4, "island"] = "Atlantis"  # a category only validation holds
    frame.loc[5:6, "species"] = "Emperor"  # a label only validation holds
    verdict = c.assess(frame, resamples=20)
    assert verdict["unknown_categories"] == {"island": 5}
    left = {"label never seen in training": 2, **({"category never seen in training": 5} if policy == "error" else {})}
    assert verdict["left_out"] == left
    assert verdict["rows"] == len(frame) - sum(left.values())
    assert c.evaluate(frame)["rows"] == verdict["rows"]
    page = c.evaluation_report(frame, verdict=verdict)
    assert "5 rows hold a island category training never saw" in page
